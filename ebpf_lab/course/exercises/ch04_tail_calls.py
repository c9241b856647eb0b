"""Chapter 4's exercise: tail calls from raw sys_enter into a program that prints "openat!" for openat only.

Judged by the kernel: a raw tracepoint program on sys_enter whose program array holds a program of its own
in openat's slot (this kernel's number, from its headers) and another one in every other slot; that
program's bytecode calls bpf_trace_printk; and the kernel printed "openat!" in alice's cat processes, and
no "Another syscall" line anywhere (read from the check's own trace instance, not the answer's output)."""
from __future__ import annotations

from dataclasses import dataclass

from ...lab import Lab
from ..evidence import PrintkRecorder, helpers_called, printed_by
from ..observe import Session
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "tailcalls"
RUNS = 3
WORKLOAD = [f"alice:{RUNS}:/bin/cat /etc/hostname"]
MIN_SLOTS = 300  # every syscall of the lab's kernel has a number below this many


@dataclass(frozen=True)
class Dispatch:
    """What the kernel held: the program array's slots (syscall number -> program id), openat's number,
    the kernel functions openat's program calls, and the lines the kernel printed."""

    slots: dict[int, int]
    nr_openat: int
    openat_calls: set[str]
    openat_printed: int       # "openat!" in alice's cat processes
    fell_through: int         # "Another syscall", by anyone


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    with PrintkRecorder(lab) as printk, Session(lab, answer, WORKLOAD) as session:
        obs = session.observation
        if (verdict := not_judgeable(obs, "attach a raw tracepoint program to sys_enter")) is not None:
            return verdict
        dispatchers = [p for p, where in obs.kernel.attached() if p["type"] == "raw_tracepoint" and where == "sys_enter"]
        if not dispatchers:
            return Verdict(False, "no raw tracepoint program on sys_enter: b.attach_raw_tracepoint(tp=\"sys_enter\", ...)")
        arrays = obs.kernel.maps_used_by(dispatchers[:1], "prog_array")
        if not arrays or not arrays[0]["entries"]:
            return Verdict(False, "the program array your dispatcher calls into is empty: store program fds in it "
                                  "with table[ct.c_int(i)] = ct.c_int(fn.fd)")
        slots = arrays[0]["entries"]
        nr_openat = lab.syscall_numbers("openat")["openat"]
        calls = helpers_called(lab, slots[nr_openat]) if nr_openat in slots else set()
        lines = printk.lines()
    return judge(Dispatch(slots, nr_openat, calls, printed_by(lines, session.workload_pids(), "openat!"),
                          sum("Another syscall" in line.text for line in lines)))


def judge(d: Dispatch) -> Verdict:
    if d.nr_openat not in d.slots:
        return Verdict(False, f"slot {d.nr_openat} (openat on this kernel) is empty; filled: {sorted(d.slots)[:8]}: "
                              "derive the number with syscall_numbers(\"openat\"), don't hard-code it")
    others = {prog for nr, prog in d.slots.items() if nr != d.nr_openat}
    if d.slots[d.nr_openat] in others:
        return Verdict(False, "openat's slot holds the same program as other syscalls: give it its own")
    if d.fell_through or len(d.slots) < MIN_SLOTS:
        return Verdict(False, f"{len(d.slots)} slots filled; the kernel printed 'Another syscall' {d.fell_through} "
                              "times: fill every other slot with the ignore program, and attach only once the "
                              "array is full")
    if "bpf_trace_printk" not in d.openat_calls:
        return Verdict(False, "the program in openat's slot never calls bpf_trace_printk: print \"openat!\" from it")
    if d.openat_printed < RUNS:
        return Verdict(False, f"the kernel printed 'openat!' {d.openat_printed} time(s) in alice's {RUNS} cat "
                              "processes, which open several files each: print exactly \"openat!\" from openat's program")
    return Verdict(True, f"{len(d.slots)} slots filled, openat's ({d.nr_openat}) with its own program: the kernel "
                         f"printed 'openat!' {d.openat_printed} times in alice's {RUNS} runs of cat through your tail "
                         "call, and no syscall fell through")
