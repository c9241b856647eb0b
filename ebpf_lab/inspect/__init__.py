"""Look inside BPF programs: bytecode, JIT machine code, and bpftool's view of the kernel."""
from .bpftool import Bpftool
from .bytecode import Insn, annotate, decode, helper_names_from_header
from .jit import ProgImage, disassemble_x86, side_by_side

__all__ = ["Bpftool", "Insn", "ProgImage", "annotate", "decode", "disassemble_x86", "helper_names_from_header", "side_by_side"]
