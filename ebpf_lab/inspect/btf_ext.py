"""The CO-RE relocations of a BPF object file: what clang recorded in `.BTF.ext` for libbpf to fix at load.

clang compiles a field access on a type marked `preserve_access_index` (every type in a bpftool-made
vmlinux.h) to an instruction holding the offset it saw, plus a record: "instruction N uses field F of
type T". libbpf reads those records, finds T and F in the running kernel's BTF, and rewrites the
instruction with the kernel's offset. This module reads the records back, as bpftool 7.1 can't show them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

BTF_MAGIC = 0xEB9F
# Relocation kinds (enum bpf_core_relo_kind in include/uapi/linux/bpf.h).
KINDS = ["byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64", "local_type_id",
         "target_type_id", "type_exists", "type_size", "enumval_exists", "enumval_value", "type_matches"]
# BTF kind -> bytes that follow its 12-byte header: a fixed part, and a part per member (vlen).
_TRAILER = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0), 15: (0, 12),
            17: (4, 0), 19: (0, 12)}
_STRUCT, _UNION, _ARRAY = 4, 5, 3
_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type_tag: look through them


class ObjectFormatError(ValueError):
    """The bytes are not a BPF object with BTF, or it is damaged."""


@dataclass(frozen=True)
class CoreRelo:
    section: str   # the program's ELF section, e.g. tracepoint/syscalls/sys_enter_execve
    insn: int      # index of the instruction libbpf patches
    kind: str      # what it patches in: byte_off (a field's offset), field_exists, type_size, ...
    type_name: str  # the root type, e.g. "struct task_struct"
    access: str    # clang's access string: "0:86" is member 86 of element 0
    field: str     # the access spelled out, e.g. "task_struct.real_parent"

    def __str__(self) -> str:
        return f"insn {self.insn}: {self.kind} {self.field} (access {self.access})"


@dataclass
class _Type:
    kind: int
    name: str
    ref: int  # the type it refers to (pointers, modifiers, arrays' elements)
    members: list[tuple[str, int]]  # structs and unions: (name, type id)


def elf_sections(elf: bytes) -> dict[str, bytes]:
    """Section name -> contents of a little-endian 64-bit ELF file (what clang -target bpf writes)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ObjectFormatError("not a 64-bit little-endian ELF file: give the .o file clang wrote")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx]
    strtab = elf[names[4]:names[4] + names[5]]
    sections = {}
    for name_off, sh_type, _flags, _addr, offset, size in headers:
        name = strtab[name_off:strtab.index(b"\0", name_off)].decode()
        sections[name] = b"" if sh_type == 8 else elf[offset:offset + size]  # SHT_NOBITS holds nothing
    return sections


def _btf(data: bytes) -> tuple[list[_Type | None], bytes]:
    """BTF types (index = type id; id 0 is void) and the string table."""
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != BTF_MAGIC:
        raise ObjectFormatError("the .BTF section is damaged (bad magic)")
    strings = data[hdr_len + str_off:hdr_len + str_off + str_len]

    def name(off: int) -> str:
        return strings[off:strings.index(b"\0", off)].decode()

    types: list[_Type | None] = [None]
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    while pos < end:
        name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        pos += 12
        fixed, per_member = _TRAILER.get(kind, (0, 0))
        members = []
        if kind in (_STRUCT, _UNION):
            members = [(name(m_name), m_type) for m_name, m_type, _ in
                       (struct.unpack_from("<III", data, pos + 12 * i) for i in range(vlen))]
        ref = struct.unpack_from("<I", data, pos)[0] if kind == _ARRAY else size_or_type
        types.append(_Type(kind, name(name_off), ref, members))
        pos += fixed + per_member * vlen
    return types, strings


def _resolve(types: list[_Type | None], type_id: int) -> _Type | None:
    t = types[type_id] if type_id < len(types) else None
    while t is not None and t.kind in _MODIFIERS:
        t = types[t.ref]
    return t


def _spell(types: list[_Type | None], root: int, access: str, kind: str) -> tuple[str, str]:
    """("struct task_struct", "task_struct.real_parent") for root task_struct and access "0:86"."""
    t = _resolve(types, root)
    if t is None:
        return "?", access
    type_name = f"{'union' if t.kind == _UNION else 'struct' if t.kind == _STRUCT else 'type'} {t.name}".strip()
    if not kind.startswith(("byte", "field", "signed", "lshift", "rshift")):
        return type_name, t.name
    steps = [int(i) for i in access.split(":")]
    text = t.name + (f"[{steps[0]}]" if steps[0] else "")
    for index in steps[1:]:
        if t is not None and t.kind in (_STRUCT, _UNION) and index < len(t.members):
            member, member_type = t.members[index]
            text += f".{member}" if member else f".<anon {index}>"
            t = _resolve(types, member_type)
        else:
            text += f"[{index}]"
            t = _resolve(types, t.ref) if t is not None else None
    return type_name, text


def core_relocations(elf: bytes) -> list[CoreRelo]:
    """The CO-RE relocations recorded in a BPF object file, in file order ([] if it has none)."""
    sections = elf_sections(elf)
    if ".BTF" not in sections:
        raise ObjectFormatError("the object has no .BTF section: compile with clang -g")
    ext = sections.get(".BTF.ext")
    if not ext:
        return []
    types, strings = _btf(sections[".BTF"])
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", ext)
    if magic != BTF_MAGIC:
        raise ObjectFormatError("the .BTF.ext section is damaged (bad magic)")
    if hdr_len < 32:  # a header without the CO-RE part: an old compiler, no relocations
        return []
    core_off, core_len = struct.unpack_from("<II", ext, 24)
    if core_len == 0:
        return []

    def name(off: int) -> str:
        return strings[off:strings.index(b"\0", off)].decode()

    pos = hdr_len + core_off
    end = pos + core_len
    record_size, = struct.unpack_from("<I", ext, pos)
    pos += 4
    relos = []
    while pos < end:
        sec_name_off, count = struct.unpack_from("<II", ext, pos)
        pos += 8
        for i in range(count):
            insn_off, type_id, access_off, kind = struct.unpack_from("<IIII", ext, pos + i * record_size)
            kind_name = KINDS[kind] if kind < len(KINDS) else str(kind)
            access = name(access_off)
            type_name, field = _spell(types, type_id, access, kind_name)
            relos.append(CoreRelo(name(sec_name_off), insn_off // 8, kind_name, type_name, access, field))
        pos += count * record_size
    return relos
