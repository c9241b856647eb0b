"""Evidence a self-check gathers from the kernel itself, beyond the programs, hooks and maps of observe.py.

- what BPF programs printed with bpf_trace_printk, and which task the kernel printed it for: a private ftrace
  instance with the bpf_trace_printk event on keeps the check's own copy, however the answer reads the
  trace pipe (a line read there is gone for every other reader);
- which helpers a program calls: its translated bytecode, as the kernel holds it;
- how often each program ran: the kernel's run counts, on while the check runs (kernel.bpf_stats_enabled);
- how much went through a ring buffer: its producer position, whoever consumed what.

None of it can be faked by printing from Python, which is the point.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ..lab import Lab

TRACEFS = "/sys/kernel/tracing"
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
_PRINTK = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\]\s+\S+\s+\d+\.\d+:\s+"
                     r"bpf_trace_printk:\s?(?P<text>.*)$")


@dataclass(frozen=True)
class PrintkLine:
    comm: str
    pid: int
    text: str


def parse_printk(trace: str) -> list[PrintkLine]:
    """The bpf_trace_printk lines of an ftrace buffer's text (`trace` file), with the task each was printed in."""
    lines = []
    for line in trace.splitlines():
        found = _PRINTK.match(line)
        if found:
            lines.append(PrintkLine(found["comm"], int(found["pid"]), found["text"]))
    return lines


class PrintkRecorder:
    """While inside, the kernel copies every bpf_trace_printk line into a trace instance of the check's own."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.path = f"{TRACEFS}/instances/ebpf-lab-check-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> "PrintkRecorder":
        self.lab.sh(f"mkdir {self.path} && echo 1 > {self.path}/events/bpf_trace/bpf_trace_printk/enable")
        return self

    def lines(self) -> list[PrintkLine]:
        return parse_printk(self.lab.sh(f"cat {self.path}/trace"))

    def __exit__(self, *exc: object) -> None:
        self.lab.sh(f"echo 0 > {self.path}/events/bpf_trace/bpf_trace_printk/enable; rmdir {self.path}", check=False)


def printed_by(lines: list[PrintkLine], pids: set[int], text: str) -> int:
    """How many lines holding `text` the kernel printed in one of the tasks `pids`."""
    return sum(line.pid in pids and text in line.text for line in lines)


class RunCounts:
    """While inside, the kernel counts every BPF program's runs (bpftool's run_cnt); the setting is put
    back as it was."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def __enter__(self) -> "RunCounts":
        self._was = self.lab.sh(f"cat {STATS_SYSCTL}").strip()
        self.lab.sh(f"echo 1 > {STATS_SYSCTL}")
        return self

    def of(self, prog_id: int) -> int:
        shown = self.lab.bpftool("prog", "show", "id", prog_id) or {}
        return int(shown.get("run_cnt", 0))

    def __exit__(self, *exc: object) -> None:
        self.lab.sh(f"echo {self._was or 0} > {STATS_SYSCTL}", check=False)


def helpers_called(lab: Lab, prog_id: int) -> set[str]:
    """The kernel functions a loaded program's bytecode calls (bpf_trace_printk, bpf_map_lookup_elem, ...)."""
    return set(lab.prog_image(prog_id).calls.values())


def ringbuf_produced(lab: Lab, map_id: int) -> int:
    """Bytes written into a ring buffer map since it was created (records and their 8-byte headers)."""
    _, producer = map(int, lab.guest_tool("ringbuf-positions", map_id).split())
    return producer


def openat_calls_per_run(lab: Lab, command: str) -> int:
    """How many openat calls one run of `command` makes, in the environment a lab user's load has: counted
    with strace in the VM, not hard-coded (it depends on the C library and the locale)."""
    out = lab.sh(f"cd / && env -i LANG=C.UTF-8 PATH=/usr/bin:/bin strace -qq -e trace=openat {command} 2>&1 >/dev/null")
    return sum(1 for line in out.splitlines() if line.startswith("openat("))


def run_as(lab: Lab, user: str, count: int, command: str) -> list[int]:
    """Run `command` (words) `count` times as a lab user, outside any run; the pids it ran as."""
    import json

    return json.loads(lab.guest_tool("run-as", user, count, *command.split()))
