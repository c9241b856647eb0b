"""strace's record of a program's system calls, as data: which bpf() commands it ran with which
arguments, and what the kernel returned. Enough to print a short, stable excerpt of a long trace."""
from __future__ import annotations

import re
from dataclasses import dataclass

# "PID  name(args) = result"; with -f every line starts with the PID.
CALL = re.compile(r"^(?:(?P<pid>\d+)\s+)?(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>.+)$")
UNFINISHED = re.compile(r"^(?:(?P<pid>\d+)\s+)?(?P<head>\w+\(.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^(?:(?P<pid>\d+)\s+)?<\.\.\. \w+ resumed>(?P<tail>.*)$")
COMMENT = re.compile(r"\s*/\*.*?\*/")
ADDRESS = re.compile(r"\b0x[0-9a-f]{6,}\b")

# The fields worth reading in each bpf() command; the rest are zeros, NULLs and addresses.
BPF_FIELDS = {
    "BPF_BTF_LOAD": ("btf_size",),
    "BPF_MAP_CREATE": ("map_type", "map_name", "key_size", "value_size", "max_entries", "btf_fd"),
    "BPF_PROG_LOAD": ("prog_type", "prog_name", "license", "insn_cnt", "prog_btf_fd"),
    "BPF_OBJ_PIN": ("pathname", "bpf_fd"),
    "BPF_OBJ_GET": ("pathname",),
}
PERF_FIELDS = ("type", "config", "config1")


def split_top(text: str, sep: str = ",") -> list[str]:
    """`text` split at `sep` outside quotes, braces, brackets and parentheses, each part stripped."""
    parts, depth, quoted, escaped, start = [], 0, False, False, 0
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    return parts + [tail] if tail or parts else parts


@dataclass(frozen=True)
class Call:
    """One system call as strace printed it."""

    pid: int | None
    name: str
    args: tuple[str, ...]
    result: str

    @property
    def fd(self) -> int | None:
        """The file descriptor (or other non-negative number) the call returned; None if it failed."""
        return int(self.result.split()[0]) if re.fullmatch(r"\d+", self.result.split()[0]) else None

    def fields(self) -> dict[str, str]:
        """The top-level `key=value` pairs of the call's first struct argument (bpf's attr, perf's attr)."""
        struct = next((a for a in self.args if a.startswith("{")), "{}")
        pairs = (p.partition("=") for p in split_top(COMMENT.sub("", struct[1:-1])))
        return {k: v for k, sep, v in pairs if sep}

    def brief(self) -> str:
        """The call with only its telling arguments, addresses elided: stable from one run to the next."""
        if self.name == "bpf":
            command = self.args[0] if self.args else "?"
            fields = self.fields()
            keep = BPF_FIELDS.get(command) or [k for k in fields if k.endswith("fd")]
            shown = [command] + [f"{k}={fields[k]}" for k in keep if k in fields]
        elif self.name == "perf_event_open":
            fields = self.fields()
            shown = [f"{k}={fields[k]}" for k in PERF_FIELDS if k in fields] + list(self.args[1:])
        else:
            shown = list(self.args)
        return ADDRESS.sub("0x…", f"{self.name}({', '.join(shown)}) = {self.result}")


def parse_strace(text: str) -> list[Call]:
    """The calls in strace output (`strace -f -o FILE ...`); signals and exits are skipped, and a call
    another thread interrupted (`<unfinished ...>` then `<... resumed>`) is put back together."""
    calls, pending = [], {}
    for line in text.splitlines():
        line = line.rstrip()
        if m := UNFINISHED.match(line):
            pending[m["pid"]] = m["head"]
            continue
        if (m := RESUMED.match(line)) and m["pid"] in pending:
            line = f"{m['pid'] or ''} {pending.pop(m['pid'])}{m['tail']}".strip()
        if m := CALL.match(line):
            calls.append(Call(int(m["pid"]) if m["pid"] else None, m["name"],
                              tuple(split_top(m["args"])), m["result"].strip()))
    return calls
