"""A loaded program's images: the verifier's translated bytecode and the JIT's x86-64 code.

Debian's bpftool cannot dump JIT code (built without libbfd), so a small script in the VM
asks the kernel directly (BPF_PROG_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD) and capstone
disassembles the bytes here.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass

from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from ..errors import BpftoolError
from .bytecode import Insn

# Runs in the VM as root; prints the program's info as JSON.
GUEST_PROG_INFO = r'''
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_bpf, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 321, 13, 15

def bpf(cmd, attr):
    r = libc.syscall(SYS_bpf, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r

class Info(ctypes.Structure):  # struct bpf_prog_info, the fields we need (uapi order)
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16)]

class GetFd(ctypes.Structure):
    _fields_ = [("prog_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]

class GetInfo(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]

try:
    fd = bpf(PROG_GET_FD_BY_ID, GetFd(prog_id=int(sys.argv[1])))
except OSError:
    print(json.dumps({"error": f"no BPF program with id {sys.argv[1]}"}))
    sys.exit(0)
info = Info()
bpf(OBJ_GET_INFO_BY_FD, GetInfo(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)))
jited = ctypes.create_string_buffer(info.jited_prog_len)
xlated = ctypes.create_string_buffer(info.xlated_prog_len)
again = Info(jited_prog_len=info.jited_prog_len, xlated_prog_len=info.xlated_prog_len,
             jited_prog_insns=ctypes.addressof(jited), xlated_prog_insns=ctypes.addressof(xlated))
bpf(OBJ_GET_INFO_BY_FD, GetInfo(bpf_fd=fd, info_len=ctypes.sizeof(again), info=ctypes.addressof(again)))
# After loading, a helper call's imm is an offset from __bpf_call_base: name the targets via kallsyms.
raw = xlated.raw
offsets = {int.from_bytes(raw[i + 4:i + 8], "little", signed=True)
           for i in range(0, len(raw), 8) if raw[i] == 0x85 and raw[i + 1] >> 4 == 0}
symbols, base = {}, None
with open("/proc/kallsyms") as f:
    for line in f:
        addr, _, name = line.split()[:3]
        symbols.setdefault(int(addr, 16), name)
        if name == "__bpf_call_base":
            base = int(addr, 16)
calls = {str(o): symbols.get(base + o, "?") for o in offsets} if base else {}
print(json.dumps({"id": info.id, "name": info.name.decode(), "tag": bytes(info.tag).hex(),
                  "xlated": raw.hex(), "jited": jited.raw.hex(), "calls": calls}))
'''


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
        out = json.loads(lab.sh(f"python3 - {int(prog_id)}", input=GUEST_PROG_INFO.encode()))
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
