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
BPF_CALL, BPF_EXIT, BPF_MOV = 0x80, 0x90, 0xB0
BPF_X = 0x08  # source operand is a register (else the immediate)
# The calling convention: what each register is *for*. What it holds at a given instruction is annotate()'s job.
REGISTER_ROLES = {
    0: "a helper's result; the program's return value at exit",
    1: "the context at entry; a helper's 1st argument",
    2: "a helper's 2nd argument", 3: "a helper's 3rd argument", 4: "a helper's 4th argument",
    5: "a helper's 5th argument",
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

    @property
    def book_kind(self) -> str:
        """The book's four kinds: load (a value into a register, `mov` included), store, arithmetic, jump
        (`call` and `exit` included). The encoding disagrees on `mov`: it is an ALU opcode there."""
        cls = self.opcode_class
        if cls in ("LD", "LDX") or (cls in ("ALU", "ALU64") and self.code & 0xF0 == BPF_MOV):
            return "load"
        if cls in ("ST", "STX"):
            return "store"
        if cls in ("ALU", "ALU64"):
            return "arithmetic"
        return "jump"

    def reads(self) -> set[int]:
        """Registers whose value this instruction uses (a call's arguments are not listed)."""
        cls, uses_src = self.opcode_class, bool(self.code & BPF_X)
        if cls in ("ALU", "ALU64"):
            return ({self.src} if uses_src else set()) | (set() if self.code & 0xF0 == BPF_MOV else {self.dst})
        if cls == "LDX":
            return {self.src}
        if cls == "ST":
            return {self.dst}
        if cls == "STX":
            return {self.dst, self.src}
        if self.kind == "exit":
            return {0}
        if self.kind == "jump":
            return {self.dst} | ({self.src} if uses_src else set())
        return set()

    def writes(self) -> set[int]:
        if self.opcode_class in ("LD", "LDX", "ALU", "ALU64"):
            return {self.dst}
        return {0, 1, 2, 3, 4, 5} if self.kind == "call" else set()


def annotate(insns: list[Insn], helpers: dict[int, str] | None = None) -> list[str]:
    """What the registers of each instruction mean *at that instruction*: the context in r1 until
    something overwrites it, a helper's arguments in r1-r5 just before its call, its result in r0 after."""
    helpers = helpers or {}
    notes: list[str] = []
    ctx_in_r1, r0_from = True, None
    for n, insn in enumerate(insns):
        said = []
        name = helpers.get(insn.imm, f"helper #{insn.imm}")
        if insn.kind == "call":
            said.append(f"calls {name}: its arguments are r1-r5, its result comes back in r0")
        elif insn.kind == "exit":
            said.append("the program's return value is r0" + (f" ({r0_from}'s result)" if r0_from else ""))
        else:
            for r in sorted(insn.reads()):
                if r == 1 and ctx_in_r1:
                    said.append("r1 holds the context")
                elif r == 0 and r0_from:
                    said.append(f"r0 holds {r0_from}'s result")
                elif r == 10:
                    said.append("r10 is the frame pointer (the stack)")
            nxt = next((i for i in insns[n + 1:] if i.kind in ("call", "jump", "exit")), None)
            for r in sorted(insn.writes()):
                if 1 <= r <= 5 and nxt is not None and nxt.kind == "call":
                    said.append(f"r{r} becomes argument {r} of {helpers.get(nxt.imm, f'helper #{nxt.imm}')}")
        if insn.kind == "call":
            ctx_in_r1, r0_from = False, name
        else:
            ctx_in_r1 = ctx_in_r1 and 1 not in insn.writes()
            r0_from = None if 0 in insn.writes() else r0_from
        notes.append("; ".join(said))
    return notes


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
