"""A loaded program's images: the verifier's translated bytecode and the JIT's x86-64 code.

Debian's bpftool cannot dump JIT code (built without libbfd), so `labtools.prog_images` in the
VM asks the kernel directly (BPF_PROG_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD) and capstone
disassembles the bytes here.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass

from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from ..errors import BpftoolError
from .bytecode import Insn

@dataclass
class ProgImage:
    id: int
    name: str
    tag: str
    xlated: bytes
    jited: bytes
    calls: dict[int, str]  # call imm in `xlated` -> kernel function (kernels rewrite helper ids to offsets)

    @classmethod
    def fetch(cls, lab, prog_id: int) -> "ProgImage":
        """Read a loaded program's images from the VM's kernel."""
        out = json.loads(lab.guest_tool("prog-images", int(prog_id)))
        if "error" in out:
            raise BpftoolError(out["error"], "list loaded programs with: lab.bpftool('prog', 'list')")
        return cls(out["id"], out["name"], out["tag"], bytes.fromhex(out["xlated"]), bytes.fromhex(out["jited"]),
                   {int(k): v for k, v in out["calls"].items()})


def disassemble_x86(code: bytes, address: int = 0) -> list[tuple[int, str]]:
    """(offset, 'mnemonic operands') for each x86-64 instruction of a JIT image."""
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    return [(i.address, f"{i.mnemonic} {i.op_str}".strip()) for i in md.disasm(code, address)]


def side_by_side(c_source: str, insns: list[Insn], x86: list[tuple[int, str]],
                 helpers: dict[int, str] | None = None) -> str:
    """HTML: the C source, its eBPF bytecode and the x86-64 JIT code in three columns."""
    bytecode = "\n".join(f"{i.index:3}: {i.text(helpers):32} ; {i.kind}" for i in insns)
    machine = "\n".join(f"{off:4x}: {text}" for off, text in x86)
    cols = [("C source", c_source.strip()), (f"eBPF bytecode ({len(insns)} insns)", bytecode),
            (f"x86-64 JIT ({len(x86)} insns)", machine)]
    cells = "".join(f"<td style='vertical-align:top'><b>{html.escape(t)}</b><pre>{html.escape(body)}</pre></td>"
                    for t, body in cols)
    return f"<table><tr>{cells}</tr></table>"
