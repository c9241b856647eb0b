"""Chapter 1's exercise: a kprobe on openat that prints "open!" with bpf_trace_printk.

Judged by the kernel: a program of the answer attached to openat, whose bytecode calls bpf_trace_printk,
and "open!" lines that the kernel printed in alice's cat processes, read from the check's own trace
instance. What the answer prints itself, or reads from trace_pipe, counts for nothing."""
from __future__ import annotations

from ...lab import Lab
from ..evidence import PrintkRecorder, helpers_called, printed_by
from ..observe import Session
from ..openat import on_openat
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "kprobes"
RUNS = 3
WORKLOAD = [f"alice:{RUNS}:/bin/cat /etc/hostname"]


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    with PrintkRecorder(lab) as printk, Session(lab, answer, WORKLOAD) as session:
        obs = session.observation
        if (verdict := not_judgeable(obs, "attach a kprobe with b.attach_kprobe")) is not None:
            return verdict
        progs, verdict = on_openat(obs.kernel, "kprobe", "tracepoint")
        if verdict is not None:
            return verdict
        calls = set().union(*(helpers_called(lab, p["id"]) for p in progs))
        printed = printed_by(printk.lines(), session.workload_pids(), "open!")
    return judge(progs[0]["type"], obs.kernel.hooked(progs[0])[0], calls, printed)


def judge(kind: str, where: str, calls: set[str], printed: int) -> Verdict:
    """`calls`: the kernel functions the answer's program on openat calls; `printed`: "open!" lines the
    kernel printed in alice's cat processes."""
    if "bpf_trace_printk" not in calls:
        return Verdict(False, f"your {kind} program on {where} never calls bpf_trace_printk, so the kernel printed "
                              "nothing (lines printed from Python do not count): call bpf_trace_printk(\"open!\") "
                              "in the BPF program")
    if printed < RUNS:
        return Verdict(False, f"your {kind} program on {where} calls bpf_trace_printk, but the kernel printed "
                              f"{printed} 'open!' line(s) in alice's {RUNS} cat processes: print exactly \"open!\" "
                              "on every call, before any early return")
    return Verdict(True, f"a {kind} program on {where} made the kernel print 'open!' {printed} times in alice's "
                         f"{RUNS} runs of cat (each opens several files)")
