"""Reading CO-RE relocations from a BPF object, and judging chapter 9's records, without a VM."""
from __future__ import annotations

import struct

import pytest

from ebpf_lab.inspect.btf_ext import ObjectFormatError, core_relocations, elf_sections

STRINGS = b"\0int\0task_struct\0pid\0real_parent\0kprobe/x\0" + b"0:1\0" + b"0\0"


def _off(name: bytes) -> int:
    return STRINGS.index(b"\0" + name + b"\0") + 1


def _btf() -> bytes:
    types = (struct.pack("<IIII", _off(b"int"), 1 << 24, 4, 32)                      # [1] int
             + struct.pack("<III", _off(b"task_struct"), 4 << 24 | 2, 16)            # [2] struct, 2 members
             + struct.pack("<III", _off(b"pid"), 1, 0)
             + struct.pack("<III", _off(b"real_parent"), 3, 64)
             + struct.pack("<III", 0, 2 << 24, 2))                                   # [3] pointer to [2]
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(STRINGS)) + types + STRINGS


def _btf_ext() -> bytes:
    relos = (struct.pack("<I", 16) + struct.pack("<II", _off(b"kprobe/x"), 2)
             + struct.pack("<IIII", 3 * 8, 2, _off(b"0:1"), 0)     # byte offset of task_struct.real_parent
             + struct.pack("<IIII", 5 * 8, 2, STRINGS.index(b"\x000\0") + 1, 9))  # sizeof(struct task_struct)
    return struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, 0, 0, 0, 0, len(relos)) + relos


def _elf(sections: dict[str, bytes]) -> bytes:
    """A minimal 64-bit little-endian ELF holding `sections` (and its section name table)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    body, headers, pos = b"", [b"\0" * 64], 64
    for name, data in [*sections.items(), (".shstrtab", names)]:
        headers.append(struct.pack("<IIQQQQIIQQ", names.index(b"\0" + name.encode() + b"\0") + 1, 1, 0, 0,
                                   pos + len(body), len(data), 0, 0, 1, 0))
        body += data
    shoff = 64 + len(body)
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 1, 247, 1, 0, 0, shoff, 0, 64, 0,
                                                                0, 64, len(headers), len(headers) - 1))
    return header + body + b"".join(headers)


def test_relocations_name_the_field_and_the_instruction():
    relos = core_relocations(_elf({".BTF": _btf(), ".BTF.ext": _btf_ext()}))
    assert [(r.section, r.insn, r.kind, r.type_name, r.field) for r in relos] == [
        ("kprobe/x", 3, "byte_off", "struct task_struct", "task_struct.real_parent"),
        ("kprobe/x", 5, "type_size", "struct task_struct", "task_struct")]
    assert str(relos[0]) == "insn 3: byte_off task_struct.real_parent (access 0:1)"


def test_an_object_without_core_relocations_has_none():
    assert core_relocations(_elf({".BTF": _btf()})) == []


def test_sections_are_found_by_name():
    assert elf_sections(_elf({".BTF": _btf(), "license": b"GPL\0"}))["license"] == b"GPL\0"


@pytest.mark.parametrize("data, hint", [(b"not an elf at all" * 4, "ELF"), (None, "clang -g")])
def test_what_is_not_a_bpf_object_with_btf_says_so(data, hint):
    with pytest.raises(ObjectFormatError, match=hint):
        core_relocations(data if data is not None else _elf({"license": b"GPL\0"}))
