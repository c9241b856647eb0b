"""Self-check of chapter 9's exercise: a CO-RE program that records the parent pid of every execve.

The answer is compiled once with clang against the VM's vmlinux.h, like any libbpf tool. The check
reads the CO-RE relocations clang put in the object (a portable program has some), then a generic
libbpf loader in the VM loads it, attaches it, starts /bin/true 3 times as alice from a process
whose pid it knows, and reads the ring buffers and maps the kernel filled. The parent pid must be there.
"""
from __future__ import annotations

import json
import re
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...errors import BpftoolError
from ...inspect.btf_ext import CoreRelo
from ...inspect.libbpf_build import LibbpfBuild
from ...lab import Lab
from ..verdict import Verdict, unfinished

NAME = "core"

WORKDIR = "/tmp/ch09_check"  # plus a suffix per check: two checks may run at once
LOADER = Path(__file__).resolve().parents[2] / "runner" / "guest" / "libbpf_loader.py"
RUNS = 3
DIRECT_READ = re.compile(r"invalid mem access|R\d+ invalid|type=scalar expected|unknown func bpf_probe_read#")


def _words(hex_bytes: str) -> list[int]:
    """The u32 values at every 4-byte boundary: where a C struct keeps its u32 and int fields."""
    raw = bytes.fromhex(hex_bytes)
    return [v for (v,) in struct.iter_unpack("<I", raw[:len(raw) // 4 * 4])]


@dataclass(frozen=True)
class Records:
    """Where the parent pid turned up in what the answer recorded (a description, None if nowhere) and how
    often; and how many records held the children's own pids, or the parent's parent's pid, instead."""

    where: str | None
    hits: int
    own: int
    grandparent: int


def judge_records(report: dict) -> Records:
    """Look for the parent's pid (and the pids an answer may have recorded instead) in the u32 words of every
    ring buffer record and map entry the loader read."""
    parent, children, grandparent = report["parent"], set(report["children"]), report.get("grandparent")
    own = older = 0
    for name, records in report["ringbufs"].items():
        hits = sum(parent in _words(r) for r in records)
        if hits >= RUNS:
            return Records(f"your ring buffer '{name}' held it in {hits} records", hits, 0, 0)
        own += sum(bool(children & set(_words(r))) for r in records)
        older += sum(grandparent in _words(r) for r in records)
    for name, entries in report["maps"].items():
        if any(parent in _words(k) for k in entries):
            return Records(f"your map '{name}' has it as a key", 1, 0, 0)
        hits = sum(parent in _words(v) for v in entries.values())
        if hits >= RUNS:
            return Records(f"your map '{name}' holds it in {hits} values", hits, 0, 0)
        own += sum(bool(children & set(_words(k) + _words(v))) for k, v in entries.items())
        older += sum(grandparent in _words(k) + _words(v) for k, v in entries.items())
    return Records(None, 0, own, older)


def missing_parent_hint(found: Records, parent: int, grandparent: int | None) -> str:
    """What the records held instead of the parent's pid, said as it is."""
    if found.grandparent:
        also = ", next to the /bin/true processes' own pids" if found.own else ""
        return (f"{found.grandparent} record(s) held {grandparent}, the parent's own parent{also}, and none the "
                f"parent ({parent}): one real_parent step is enough, BPF_CORE_READ(task, real_parent, tgid)")
    if found.own:
        return (f"your records held the pids of the {RUNS} /bin/true processes themselves, and none their "
                f"parent's ({parent}): read task->real_parent->tgid with BPF_CORE_READ")
    return (f"alice started /bin/true {RUNS} times from process {parent}, and no record held that parent pid "
            "as a u32: record BPF_CORE_READ(task, real_parent, tgid) for every execve")


def _load_and_run(lab: Lab, obj: str) -> tuple[dict, str]:
    proc = lab.ssh.run(f"python3 - {obj} alice {RUNS} /bin/true", input=LOADER.read_bytes(), check=False,
                       timeout=600)
    log = proc.stderr.decode(errors="replace")
    try:
        return json.loads(proc.stdout), log
    except ValueError:
        return {"error": f"the loader stopped (exit {proc.returncode}): {log.strip()[-800:]}"}, log


def _field_relos(relos: list[CoreRelo]) -> list[CoreRelo]:
    return [r for r in relos if r.kind == "byte_off"]


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    build = LibbpfBuild(lab, f"{WORKDIR}_{uuid.uuid4().hex[:8]}")
    try:
        try:
            obj = build.compile_bpf(answer, "core")
        except BpftoolError as e:
            errors = [line for line in e.message.splitlines() if "error:" in line]
            return Verdict(False, "clang could not compile your program: " + "; ".join(errors[:3] or [e.message[-400:]])
                           + " (it is built with #include \"vmlinux.h\", bpf_helpers.h and bpf_core_read.h)")
        relos = _field_relos(build.relocations("core.bpf.o"))
        if not relos:
            return Verdict(False, "your object has no CO-RE relocation, so it only works on a kernel whose struct "
                                  "layout it was written for: read the parent through BPF_CORE_READ(task, "
                                  "real_parent, tgid) with the types of vmlinux.h, not a fixed offset or your own "
                                  "struct")
        report, log = _load_and_run(lab, obj)
    finally:
        build.clean()
    if report.get("error"):
        if (refused := DIRECT_READ.search(log)) is not None:
            return Verdict(False, "the verifier refused your program: it dereferences a kernel pointer directly "
                                  "(bcc rewrites task->real_parent->tgid into safe reads for you; libbpf does not). "
                                  "Read it with BPF_CORE_READ(task, real_parent, tgid). Verifier: "
                                  + _line_of(log, refused))
        return Verdict(False, f"{report['error']}: {_last_lines(log)}")
    attached = [p for p in report["programs"] if p["attached"]]
    if not attached:
        sections = ", ".join(p["section"] for p in report["programs"]) or "none"
        return Verdict(False, f"libbpf attached none of your programs (sections: {sections}): put the function in "
                              "SEC(\"tracepoint/syscalls/sys_enter_execve\") so libbpf knows where it goes")
    if not report["ringbufs"] and not report["maps"]:
        return Verdict(False, "your program has no ring buffer or hash map to record into: declare one in "
                              "SEC(\".maps\") (BPF_MAP_TYPE_RINGBUF or BPF_MAP_TYPE_HASH)")
    found = judge_records(report)
    if found.where is None:
        return Verdict(False, missing_parent_hint(found, report["parent"], report.get("grandparent")))
    fields = ", ".join(sorted({r.field for r in relos}))
    return Verdict(True, f"{len(relos)} CO-RE field relocation(s) ({fields}) fixed by libbpf at load; alice's "
                         f"{RUNS} /bin/true had parent pid {report['parent']}, and {found.where}")


def _line_of(log: str, match: re.Match) -> str:
    start = log.rfind("\n", 0, match.start()) + 1
    end = log.find("\n", match.end())
    return log[start:end if end >= 0 else len(log)].strip()


def _last_lines(log: str, n: int = 3) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip() and not line.startswith("libbpf: -- ")]
    return " | ".join(lines[-n:])
