"""Saved notebook outputs hold only what the lab reproduces on any day and after any Debian point release.

nbval compares each cell's fresh output with the saved one once `notebooks/sanitize.cfg` has run over
both. A saved output holding a date, a time of day, or a value that moves with the kernel build passes
on the machine and the day that saved it, and fails on a fresh machine a week later. This test reads the
saved outputs as nbval compares them and fails on any such value that no sanitizer covers, naming the
notebook, the cell and the line.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import coalesce_streams, find_comment_markers, find_metadata_tags, get_sanitize_patterns

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SANITIZE = get_sanitize_patterns((NOTEBOOKS / "sanitize.cfg").read_text())
# What nbval does not compare (its skip list, plus images it only compares with nbdime).
NOT_COMPARED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}

MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
# Each: what the value is, and a pattern that finds it in a sanitized output.
VOLATILE = [
    ("a date", rf"\b({MONTHS})\s+\d{{1,2}}\b|\b(19|20)\d\d-[01]\d-[0-3]\d\b"),
    # Two-digit hours, and not part of a longer colon-separated run (a MAC address, "0:86" access strings).
    ("a time of day", r"(?<![\w:.])([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?(?![\w:])"),
    ("a long file listing (ls -l: a size and a date)", r"(?m)^[-dlcbps][rwxsStT-]{9}[.+@]?\s+\d+\s"),
    ("a kernel release", r"\b\d+\.\d+\.\d+-\d+-(cloud-)?(amd64|arm64)\b"),
    ("a kernel address", r"(?<![;(] )\b(0x)?ff[0-9a-f]{14}\b"),
    ("a helper's offset from __bpf_call_base", r"\bcall \w+#-?\d{4,}\b"),
    ("a tracepoint id", r"(?m)^ID: \d+$"),
    ("a BTF size", r"\bsize \d+B\b|\bbtf_size=\d+|/sys/kernel/btf/\w+: \d+"),
    ("a BTF type id", r"\[\d+\] (STRUCT|UNION|TYPEDEF|INT|PTR|FUNC|FUNC_PROTO|ENUM|ARRAY|CONST|VAR|DATASEC|FWD)\b"
                      r"|\btype_id=\d+|\b(candidate|relocating) \[\d+\]"),
    # Not pt_regs: the registers' layout is the architecture's, fixed.
    ("a member's offset in the kernel's BTF",
     r"\bbits_offset=\d+|@ offset \d+|\bimm \d+ -> \d+|\b(?!pt_regs\.)\w+\.\w+ \(access 0:\d+|= \d+\s+<- CO-RE"),
    ("an object file's section offsets and sizes (readelf -S)",
     r"(?m)^\s*\[\s*\d+\]\s+\S+\s+(PROGBITS|NOBITS|SYMTAB|STRTAB|RELA?|LLVM_\w+)\s+[0-9a-f]{16}\s+[0-9a-f]{6}"),
    # wc -c, du, stat -c '%s %n': numbers alone on a line, or with one name.
    ("a file's size (wc, du, stat)", r"(?m)^\s*\d{3,}(\s+\d{3,})*(\s+[\w./-]+)?\s*$|[\w-]*[./][\w./-]*:? \d{3,} bytes\b"),
]


def compared_texts(cell: nbformat.NotebookNode) -> list[str]:
    """The output texts of a code cell that nbval compares, sanitized as nbval sanitizes them."""
    markers = dict(find_comment_markers(cell.source)) | dict(find_metadata_tags(cell.metadata))
    if markers.get("skip") or markers.get("check") is False:
        return []
    texts = []
    for output in coalesce_streams(cell.get("outputs", [])):
        if output.output_type == "stream":
            texts.append(output.text)
        for mime, value in output.get("data", {}).items():
            if mime not in NOT_COMPARED and isinstance(value, str):
                texts.append(value)
    for regex, replace in SANITIZE:
        texts = [re.sub(regex, replace, text) for text in texts]
    return texts


def volatile_values(text: str) -> list[str]:
    """'kind: line' for every line of `text` holding a value of a kind known to vary."""
    found = []
    for kind, pattern in VOLATILE:
        for match in re.finditer(pattern, text):
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            found.append(f"{kind}: {text[start:end if end >= 0 else None].strip()!r}")
    return found


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_saved_outputs_hold_nothing_that_moves_with_the_day_or_the_kernel_build(path):
    nb = nbformat.read(path, as_version=4)
    problems = [f"cell {index}: {value}"
                for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
                for text in compared_texts(cell) for value in volatile_values(text)]
    assert not problems, ("saved outputs nbval compares hold values that differ on another day or kernel build; "
                          "print what does not depend on them, or sanitize them in notebooks/sanitize.cfg "
                          "(with a comment saying why):\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_no_cell_reads_a_long_listing_by_columns(path):
    """`ls -l` pads a one-digit day with a second space: fields cut by position shift on days 1-9."""
    nb = nbformat.read(path, as_version=4)
    offenders = [index for index, cell in enumerate(nb.cells)
                 if cell.cell_type == "code" and re.search(r"\bls\s+-\w*l\w*\b[^\n|]*\|\s*(cut|awk)\b", cell.source)]
    assert not offenders, f"cells {offenders} parse `ls -l` by columns: use stat -c (e.g. stat -c '%s %n' FILE)"


# The cell that failed CI on 2026-12-06, as it was saved and as it printed that day.
CHAPTER_09_SIZE_CELL = "print(build.sh(\"ls -l hello | cut -d' ' -f5,9; ldd hello | awk '/libbpf/{print $1}'\"))"


@pytest.mark.parametrize("saved", ["46040 hello\nlibbpf.so.1\n", "46040 20:02\nlibbpf.so.1\n"])
def test_the_checks_catch_the_cell_that_broke_ci(saved):
    cell = nbformat.v4.new_code_cell(CHAPTER_09_SIZE_CELL, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=saved)])
    assert volatile_values(compared_texts(cell)[0])
    assert re.search(r"\bls\s+-\w*l\w*\b[^\n|]*\|\s*(cut|awk)\b", cell.source)


@pytest.mark.parametrize("line, kind", [
    ("1: name [vmlinux]  size 4119994B", "a BTF size"),
    ("/sys/kernel/btf/vmlinux: 4120215 bytes", "a BTF size"),
    ("[192] STRUCT 'task_struct' size=9728 vlen=244", "a BTF type id"),
    ("\t'pid' type_id=74 bits_offset=19328", "a member's offset in the kernel's BTF"),
    ("  [17] .BTF              PROGBITS        0000000000000000 0726b8 006c07 00      0   0  4",
     "an object file's section offsets and sizes (readelf -S)"),
    (" 106510 2196934", "a file's size (wc, du, stat)"),
    ("710424 hello.bpf.o", "a file's size (wc, du, stat)"),
    ("4: (18) r1 = 0xff44ff5c8e8e7000       ; R1_w=map_ptr(off=0,ks=8,vs=8,imm=0)", "a kernel address"),
    ("-rwxr-xr-x 1 root root 46040 Dec  6 20:02 hello", "a long file listing (ls -l: a size and a date)"),
    ("kernel   6.1.0-57-cloud-amd64", "a kernel release"),
])
def test_each_kind_of_build_dependent_value_is_recognised(line, kind):
    assert any(found.startswith(kind) for found in volatile_values(line)), volatile_values(line)


@pytest.mark.parametrize("line", [
    " Ethernet: 02 00 00 00 00 01 02 00 00 00 00 02 08 00",
    "insn 4: byte_off pt_regs.di (access 0:14)",
    "R0_w=scalar(smax=9223372032559808512,umax=18446744069414584320,var_off=(0x0; 0xffffffff00000000))",
    "192 bytes = 24 instruction slots",
    "this kernel (x86_64): {'execve': 59, 'timer_create': 222, 'timer_delete': 226}",
    "UDP 10.11.0.2:40000 -> 10.11.0.1:7777, 47 bytes",
    "31 map types on this kernel: array, array_of_maps",
])
def test_values_that_hold_across_builds_pass(line):
    assert volatile_values(line) == []
