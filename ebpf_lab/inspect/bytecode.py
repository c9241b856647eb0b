"""Decode eBPF bytecode (`struct bpf_insn` records) with capstone and say what each instruction does.

capstone names the instruction; the raw fields (dst, src, off, imm) are read from the
record itself, because capstone prints negative offsets as unsigned and helper calls as
bare numbers.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from capstone import CS_ARCH_BPF, CS_MODE_BPF_EXTENDED, Cs

INSN_SIZE = 8
# The kernel's eight opcode classes: the low three bits of `code`.
OPCODE_CLASSES = ["LD", "LDX", "ST", "STX", "ALU", "JMP", "JMP32", "ALU64"]
BPF_CALL, BPF_EXIT = 0x80, 0x90
REGISTER_ROLES = {
    0: "return value, and a helper's result",
    1: "context at entry; 1st helper argument",
    2: "2nd helper argument", 3: "3rd helper argument", 4: "4th helper argument", 5: "5th helper argument",
    6: "callee-saved", 7: "callee-saved", 8: "callee-saved", 9: "callee-saved",
    10: "frame pointer (read-only)",
}


@dataclass
class Insn:
    index: int
    raw: bytes  # 8 bytes, or 16 for the wide `lddw`
    code: int
    dst: int
    src: int
    off: int
    imm: int
    mnemonic: str
    operands: str

    @property
    def opcode_class(self) -> str:
        return OPCODE_CLASSES[self.code & 0x07]

    @property
    def kind(self) -> str:
        """What it does, in the book's terms: load, store, alu, jump, call or exit."""
        cls = self.opcode_class
        if cls in ("LD", "LDX"):
            return "load"
        if cls in ("ST", "STX"):
            return "store"
        if cls in ("ALU", "ALU64"):
            return "alu"
        op = self.code & 0xF0
        if cls == "JMP" and op == BPF_CALL:
            return "call"
        if cls == "JMP" and op == BPF_EXIT:
            return "exit"
        return "jump"

    def registers(self) -> list[int]:
        return sorted({int(r) for r in re.findall(r"\br(\d+)\b", self.operands)})

    def text(self, helpers: dict[int, str] | None = None) -> str:
        """Readable assembly, with signed offsets and helper names."""
        if self.kind == "call" and self.src == 0:
            name = (helpers or {}).get(self.imm)
            return f"call {name}#{self.imm}" if name else f"call #{self.imm}"
        ops = re.sub(r"\+0x([0-9a-f]+)\]", lambda m: _signed_offset(int(m.group(1), 16)), self.operands)
        if self.imm < 0 and self.opcode_class != "LD":
            ops = re.sub(rf"\b{hex(self.imm & 0xFFFFFFFF)}\b", str(self.imm), ops)
        return f"{self.mnemonic} {ops}".strip()

    def roles(self) -> str:
        if self.kind == "call":
            return "arguments in r1-r5, result in r0"
        if self.kind == "exit":
            return "returns r0"
        notes = []
        for r in self.registers():
            if r in (1, 10, 0):
                notes.append(f"r{r}: {REGISTER_ROLES[r]}")
        return "; ".join(notes)


def _signed_offset(raw: int) -> str:
    off = raw - 0x10000 if raw >= 0x8000 else raw
    return f"{off:+d}]"


def _fields(raw: bytes) -> tuple[int, int, int, int, int]:
    code, regs, off, imm = struct.unpack("<BBhi", raw[:8])
    return code, regs & 0x0F, regs >> 4, off, imm


def decode(bytecode: bytes) -> list[Insn]:
    """Instructions of a program, from `BPF.dump_func` bytes or a loaded program's xlated image."""
    if len(bytecode) % INSN_SIZE:
        raise ValueError(f"eBPF bytecode is a multiple of 8 bytes; got {len(bytecode)}")
    md = Cs(CS_ARCH_BPF, CS_MODE_BPF_EXTENDED)
    insns: list[Insn] = []
    pos = 0
    while pos < len(bytecode):
        code, dst, src, off, imm = _fields(bytecode[pos:pos + 8])
        found = next(md.disasm(bytecode[pos:pos + 16], pos), None)
        size = found.size if found else INSN_SIZE
        mnemonic, operands = (found.mnemonic, found.op_str) if found else (f".byte 0x{code:02x}", "")
        insns.append(Insn(pos // INSN_SIZE, bytecode[pos:pos + size], code, dst, src, off, imm, mnemonic, operands))
        pos += size
    return insns


HELPER_DEF = re.compile(r"^static .*\(\*(bpf_\w+)\)\(.*\) = \(void \*\) (\d+);", re.M)


def helper_names_from_header(text: str) -> dict[int, str]:
    """Helper id -> name from libbpf's bpf_helper_defs.h (in the VM: /usr/include/bpf/bpf_helper_defs.h)."""
    return {int(num): name for name, num in HELPER_DEF.findall(text)}
