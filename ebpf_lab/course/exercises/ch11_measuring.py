"""Chapter 11's exercise: a latency histogram of alice's openat calls.

The answer runs while alice runs cat a few times: the check reads the answer's histogram map in the kernel
and compares its number of samples with the openat calls those runs make, counted with strace in the VM
(not hard-coded: they depend on the C library and the locale). Then it makes one of alice's opens slow by a
known amount (cat opening a FIFO waits for a writer, who comes SLOW_SECONDS after cat is seen waiting):
that sample must land in the bucket of its latency. A histogram that counts anything else, or the same
made-up value every time, does not follow it."""
from __future__ import annotations

import json
from dataclasses import dataclass

from ...lab import Lab
from ...widgets.histogram import log2_range
from ..evidence import openat_calls_per_run
from ..observe import KernelView, Session, map_entries
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "histogram"

RUNS = 3
COMMAND = "/bin/cat /etc/hostname"
# A latency in nanoseconds: an openat takes microseconds, far less than a second, even under emulation.
LOWEST_BUCKET, HIGHEST_BUCKET = 9, 31  # from 256 ns to 2.1 s (bucket n: 2^(n-1) .. 2^n - 1 ns)
SLOW_SECONDS = 0.4  # bucket 29 (268 to 537 ms): well inside it, whatever the machine adds

def _ends(kernel: KernelView) -> tuple[list[dict], list[dict]]:
    """The answer's programs at the start and at the end of openat (tracepoints, k(ret)probes, fentry/fexit)."""
    starts, ends = [], []
    for h in kernel.hooks:
        prog = next((p for p in kernel.progs if p["id"] == h.get("prog_id")), None)
        where = h.get("tracepoint") or h.get("func") or ""
        kind = h.get("fd_type") or h.get("attach_type") or ""
        if prog is None:
            continue
        if kind == "trace_fexit" or (kind == "kretprobe" and "openat" in where) or where == "sys_exit_openat":
            ends.append(prog)
        elif kind == "trace_fentry" or (kind == "kprobe" and "openat" in where) or where == "sys_enter_openat":
            starts.append(prog)
    return starts, ends


def histograms(kernel: KernelView, progs: list[dict]) -> dict[int, dict[int, int]]:
    """Maps the programs use that look like a log2 histogram (small integer keys, counts as values): map id ->
    its non-zero buckets."""
    found = {}
    for m in kernel.maps_used_by(progs, "array", "hash"):
        counts = buckets(m["entries"])
        if counts and all(0 <= k < 64 for k in counts) and m.get("max_entries", 0) <= 64:
            found[m["id"]] = counts
    return found


def buckets(entries: dict[int, int]) -> dict[int, int]:
    return {k: v for k, v in entries.items() if v}  # an array holds all its buckets, most of them 0


@dataclass(frozen=True)
class Histogram:
    """The answer's histogram after alice's runs of cat, and after her one slow open; the openat calls those
    runs made; how long the slow open waited, measured in the VM."""

    after_runs: dict[int, int]
    after_slow_open: dict[int, int]
    expected: int
    slow_seconds: float


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    with Session(lab, answer, [f"alice:{RUNS}:{COMMAND}"]) as session:
        obs = session.observation
        if (verdict := not_judgeable(obs, "time openat between sys_enter_openat and sys_exit_openat")) is not None:
            return verdict
        starts, ends = _ends(obs.kernel)
        if not starts and not ends:
            places = ", ".join(sorted({w for _, w in obs.kernel.attached()})) or "nowhere"
            return Verdict(False, f"your programs are attached to {places}: time openat with TRACEPOINT_PROBE(syscalls, "
                                  "sys_enter_openat) and TRACEPOINT_PROBE(syscalls, sys_exit_openat)")
        if not ends:
            return Verdict(False, "a program sees openat begin, none sees it end: a latency needs both ends, add "
                                  "TRACEPOINT_PROBE(syscalls, sys_exit_openat) and take the difference of "
                                  "bpf_ktime_get_ns() there")
        hists = histograms(obs.kernel, starts + ends)
        if not hists:
            return Verdict(False, "no histogram in the kernel holds any sample: declare BPF_HISTOGRAM(dist) and, at "
                                  "the exit, dist.increment(bpf_log2l(now - start))")
        dist = max(hists, key=lambda m: sum(hists[m].values()))
        slow = json.loads(lab.guest_tool("slow-open", "alice", SLOW_SECONDS))
        after_slow_open = buckets(map_entries(lab, dist))
    return judge(Histogram(hists[dist], after_slow_open, RUNS * openat_calls_per_run(lab, COMMAND), slow["blocked"]))


def judge(h: Histogram) -> Verdict:
    dist, expected = h.after_runs, h.expected
    samples = sum(dist.values())
    if samples < expected:
        return Verdict(False, f"{samples} samples for alice's {expected} openat calls ({RUNS} runs of cat): "
                              "remember each call's start by thread, start.update(&id, &now) with "
                              "id = bpf_get_current_pid_tgid(), and add a sample at every exit that finds its start")
    if samples > 2 * expected + 2:
        return Verdict(False, f"{samples} samples, but alice's {RUNS} runs of cat made {expected} openat calls: the "
                              "others are other users' (root's bpftool, sshd): keep only calls where "
                              "(bpf_get_current_uid_gid() & 0xFFFFFFFF) == 1001")
    low, high = min(dist), max(dist)
    if low < LOWEST_BUCKET:
        return Verdict(False, f"samples down in bucket {low} (under {log2_range(LOWEST_BUCKET)[0]} ns): an openat takes "
                              "microseconds; store the log2 of the difference in nanoseconds, without dividing it")
    if high > HIGHEST_BUCKET:
        return Verdict(False, f"samples up in bucket {high} (over 2 seconds): take bpf_log2l of the difference "
                              "now - start, not of a timestamp")
    slow_ns = int(h.slow_seconds * 1e9)
    slow_bucket = slow_ns.bit_length()  # bpf_log2l's bucket: 2^(n-1) <= ns < 2^n
    new = {b: n - dist.get(b, 0) for b, n in h.after_slow_open.items() if n > dist.get(b, 0)}
    landed = sum(n for b, n in new.items() if slow_bucket <= b <= slow_bucket + 1)
    if not landed:
        where = (f"its new samples went to bucket(s) {', '.join(map(str, sorted(new)))}" if new
                 else "it added no sample")
        return Verdict(False, f"one of alice's opens then waited {h.slow_seconds:.2f} s (bucket {slow_bucket}, "
                              f"{_human(log2_range(slow_bucket)[0])} to {_human(log2_range(slow_bucket)[1])}), but "
                              f"{where}: each sample must be bpf_log2l(the call's own exit time - its start time) "
                              "in nanoseconds")
    lo_ns, hi_ns = log2_range(low)[0], log2_range(high)[1]
    return Verdict(True, f"your histogram holds {samples} samples for alice's {expected} openat calls, from "
                         f"{_human(lo_ns)} to {_human(hi_ns)} (buckets {low}..{high}); the open that waited "
                         f"{h.slow_seconds:.2f} s landed in bucket {slow_bucket}")


def _human(ns: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if ns >= size:
            return f"{ns / size:.3g} {unit}"
    return f"{ns} ns"
