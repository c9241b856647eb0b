"""Self-check for chapter 10: a latency histogram of alice's openat calls.

The answer runs while alice runs cat a few times; the check then reads the answer's histogram map
in the kernel and compares its number of samples with the openat calls those runs make, counted
with strace in the VM (not hard-coded: they depend on the C library and the locale)."""
from __future__ import annotations

from ..lab import Lab
from ..widgets.histogram import log2_range
from .observe import KernelView, observe
from .verdict import Verdict, no_bpf, unfinished

RUNS = 3
COMMAND = "/bin/cat /etc/hostname"
# A latency in nanoseconds: an openat takes microseconds, far less than a second, even under emulation.
LOWEST_BUCKET, HIGHEST_BUCKET = 9, 31  # from 256 ns to 2.1 s (bucket n: 2^(n-1) .. 2^n - 1 ns)


def openat_calls_per_run(lab: Lab) -> int:
    """How many openat calls one run of COMMAND makes, in the environment the load gives alice."""
    # strace writes to stderr, the command's own output is dropped.
    out = lab.sh(f"cd / && env -i LANG=C.UTF-8 PATH=/usr/bin:/bin strace -qq -e trace=openat {COMMAND} 2>&1 >/dev/null")
    return sum(1 for line in out.splitlines() if line.startswith("openat("))


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


def _histograms(kernel: KernelView, progs: list[dict]) -> list[dict[int, int]]:
    """Maps the programs use that look like a log2 histogram: small integer keys, counts as values."""
    found = []
    for m in kernel.maps_used_by(progs, "array", "hash"):
        counts = {k: v for k, v in m["entries"].items() if v}  # an array holds all its buckets, most of them 0
        if counts and all(0 <= k < 64 for k in counts) and m.get("max_entries", 0) <= 64:
            found.append(counts)
    return found


def check_histogram_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: a BPF_HISTOGRAM of log2(nanoseconds) of each of alice's openat calls."""
    if (todo := unfinished(answer)) is not None:
        return todo
    obs = observe(lab, answer, [f"alice:{RUNS}:{COMMAND}"])
    if obs.failure:
        return Verdict(False, obs.failure)
    if (verdict := no_bpf(obs.kernel, "time openat between sys_enter_openat and sys_exit_openat")) is not None:
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
    hists = _histograms(obs.kernel, starts + ends)
    if not hists:
        return Verdict(False, "no histogram in the kernel holds any sample: declare BPF_HISTOGRAM(dist) and, at "
                              "the exit, dist.increment(bpf_log2l(now - start))")
    dist = max(hists, key=lambda h: sum(h.values()))
    samples = sum(dist.values())
    expected = RUNS * openat_calls_per_run(lab)
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
    lo_ns, hi_ns = log2_range(low)[0], log2_range(high)[1]
    return Verdict(True, f"your histogram holds {samples} samples for alice's {expected} openat calls, from "
                         f"{_human(lo_ns)} to {_human(hi_ns)} (buckets {low}..{high})")


def _human(ns: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if ns >= size:
            return f"{ns / size:.3g} {unit}"
    return f"{ns} ns"
