"""Bytecode, JIT code and bpftool, read from the VM's kernel."""
from __future__ import annotations

import time

import pytest

from ebpf_lab.errors import BpftoolError
from ebpf_lab.inspect import Bpftool, annotate, decode, disassemble_x86
from tests.programs import HELLO_LOADED, XDP_HELLO


@pytest.fixture
def loaded_hello(lab, clean_kernel):
    run = lab.start(HELLO_LOADED)
    deadline = time.time() + 60
    while not run.records and not run.done and time.time() < deadline:
        time.sleep(0.1)
    assert run.records, list(run.lines)
    [prog] = [p for p in lab.bpftool("prog", "list") if p.get("name") == "hello"]
    yield prog, bytes.fromhex(run.records[0].payload)
    run.interrupt()


def test_decoding_agrees_with_bpftool_xlated(lab, loaded_hello):
    prog, _ = loaded_hello
    image = lab.prog_image(prog["id"])
    ours = decode(image.xlated)
    theirs = lab.bpftool("prog", "dump", "xlated", "id", prog["id"], "opcodes")
    assert len(ours) == len(theirs)
    for insn, entry in zip(ours, theirs):
        assert insn.code == int(entry["opcodes"]["code"], 16), entry
        assert insn.dst == int(entry["opcodes"]["dst_reg"], 16) and insn.src == int(entry["opcodes"]["src_reg"], 16)
        if insn.kind == "call":
            # bpftool: "(85) call bpf_trace_printk#-61712"
            assert entry["disasm"].split(") ", 1)[1] == insn.text(image.calls)
    assert [i.kind for i in ours][-2:] == ["alu", "exit"]


def test_dump_func_bytecode_names_helpers(lab, loaded_hello):
    _, bytecode = loaded_hello
    insns = decode(bytecode)
    calls = [i.text(lab.helper_names()) for i in insns if i.kind == "call"]
    assert calls == ["call bpf_trace_printk#6"]
    assert insns[-1].kind == "exit" and annotate(insns)[-1].startswith("the program's return value is r0")
    assert {i.opcode_class for i in insns} <= {"LD", "LDX", "ST", "STX", "ALU", "JMP", "JMP32", "ALU64"}


def test_jit_image_disassembles_as_x86(lab, loaded_hello):
    prog, _ = loaded_hello
    image = lab.prog_image(prog["id"])
    assert len(image.jited) == prog["bytes_jited"] and image.tag == prog["tag"]
    x86 = disassemble_x86(image.jited)
    texts = [t for _, t in x86]
    # The epilogue returns; the kernel may pad after it with int3 (a speculation barrier).
    assert texts[2] == "push rbp" and "ret" in texts[-2:], texts
    assert any(t.startswith("call") for t in texts)  # the helper call survives JIT


def test_xdp_program_built_loaded_pinned_attached_and_removed(lab, clean_kernel):
    tool = Bpftool(lab)
    obj = tool.compile(XDP_HELLO, "hello_xdp")
    pin = "/sys/fs/bpf/ebpf_lab_test_xdp"
    with tool.pinned(obj, pin) as prog:
        assert prog["type"] == "xdp" and prog["name"] == "hello"
        maps = {m["name"] for m in tool("map", "list") if m["id"] in prog["map_ids"]}
        assert {n.rsplit(".", 1)[1] for n in maps} == {"data", "bss", "rodata"}, maps
        rodata = next(m for m in tool("map", "list") if m["id"] in prog["map_ids"] and m["name"].endswith(".rodata"))
        dumped = tool("map", "dump", "id", rodata["id"])
        assert "Hello World %d" in str(dumped)
        with tool.dummy_device("labxdp0") as dev, tool.xdp_attached(prog["id"], dev):
            [entry] = tool("net", "list")
            assert {"devname": dev, "id": prog["id"]}.items() <= entry["xdp"][0].items()
        assert tool("net", "list")[0]["xdp"] == []
    assert not lab.sh(f"ls {pin}", check=False)
    assert "labxdp0" not in lab.sh("ip -o link")


def test_errors_name_the_fix(lab):
    with pytest.raises(BpftoolError, match=r"no BPF program with id 999999 — list loaded programs"):
        lab.prog_image(999999)
    with pytest.raises(BpftoolError, match=r"no BPF program with that id.*lab.bpftool\('prog', 'list'\)"):
        lab.bpftool("prog", "show", "id", 999999)
    with pytest.raises(BpftoolError, match="nothing is pinned there"):
        lab.bpftool("prog", "show", "pinned", "/sys/fs/bpf/does-not-exist")
    with pytest.raises(BpftoolError, match="not under /sys/fs/bpf"):
        Bpftool(lab).unpin("/etc/passwd")
    with pytest.raises(BpftoolError, match="clang could not compile broken.bpf.c"):
        Bpftool(lab).compile("int x(", "broken")
