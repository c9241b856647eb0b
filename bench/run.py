"""How fast the lab answers, measured in one run: `python bench/run.py [--skip-cold]`.

Prints each measurement and writes bench/RESULTS.md. Ratios compare the lab's path
(ebpf_lab over ssh) with the same work done directly in the VM.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebpf_lab.lab import Lab  # noqa: E402
from ebpf_lab.vm.backend import select_backend  # noqa: E402

HELLO_FIRST_LINE = r'''
from bcc import BPF
b = BPF(text=r"""
int hello(void *ctx) {
    bpf_trace_printk("Hello, World!");
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="hello")
import subprocess
subprocess.run(["/bin/true"])
while True:
    task, pid, cpu, flags, ts, msg = b.trace_fields()
    if b"Hello, World!" in msg:
        print("Hello, World!", flush=True)
        break
'''

# Events from alice's openat calls, sent by a BPF program through a perf or ring buffer. The program
# runs one load phase after another (a command as alice each) and reports, per phase, what arrived,
# what was lost (perf: lost_cb; ring: submissions that found the buffer full) and how long it took.
# Both consumers do what any consumer does: take each event out of the buffer (bcc's event()) and
# keep what they read (the pid, or with WHOLE the whole event); the one in the VM keeps it in a
# list, the host's keeps it by emit(), which sends it to the host.
EVENTS = r'''
from bcc import BPF
import ctypes as ct, subprocess, time
KIND, TO_HOST, PAGES, PAD, PHASES, WHOLE = "__KIND__", __TO_HOST__, __PAGES__, __PAD__, __PHASES__, __WHOLE__
decl = f"BPF_RINGBUF_OUTPUT(events, {PAGES});" if KIND == "ring" else "BPF_PERF_OUTPUT(events);"
submit = ("if (events.ringbuf_output(&e, sizeof(e), 0) < 0) drops.increment(0);" if KIND == "ring"
          else "events.perf_submit(args, &e, sizeof(e));")
b = BPF(text=decl + r"""
BPF_ARRAY(drops, u64, 1);
struct ev { u32 pid; u32 pad[PAD]; };
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != 1001)
        return 0;
    struct ev e = {};
    e.pid = bpf_get_current_pid_tgid() >> 32;
    """ + submit + """
    return 0;
}
""", cflags=[f"-DPAD={PAD}"])
got = lost = 0
kept = []
def on_event(*args):
    global got
    got += 1
    event = b["events"].event(args[1])
    value = event if WHOLE else event.pid
    if TO_HOST:
        emit("ev", value)
    else:
        kept.append(bytes(value) if WHOLE else value)
def on_lost(n):
    global lost
    lost += n
if KIND == "ring":
    b["events"].open_ring_buffer(on_event)
    poll = lambda: b.ring_buffer_poll(timeout=20)
else:
    b["events"].open_perf_buffer(on_event, page_cnt=PAGES, lost_cb=on_lost)
    poll = lambda: b.perf_buffer_poll(timeout=20)
for label, command in PHASES:
    got = lost = 0
    kept.clear()
    b["drops"][ct.c_int(0)] = ct.c_ulonglong(0)
    start = time.time()
    gen = subprocess.Popen(["runuser", "-u", "alice", "--", *command], stdout=subprocess.PIPE)
    while gen.poll() is None:
        poll()
    for _ in range(20):
        poll()
    elapsed = time.time() - start
    said = gen.stdout.read().decode().split()
    print(f"PHASE {label} {got} {lost + b['drops'][ct.c_int(0)].value} {elapsed:.3f} {said[0] if said else ''}",
          flush=True)
'''

# Opens /etc/hostname at a given rate (0: as fast as it can) for 2 s and prints how many opens it made.
PACER = ("import time,sys\nrate=float(sys.argv[1]) or float('inf'); end=time.time()+2; n=0; t0=time.time()\n"
         "while time.time()<end:\n    open('/etc/hostname').close(); n+=1\n"
         "    ahead=n/rate-(time.time()-t0)\n    time.sleep(ahead) if ahead>0 else None\n"
         "print(n)")


STREAM = "for i in range({n}):\n    emit('n', i)\n"

READING = """How to read it: both event consumers take each event out of the buffer (bcc's `event()`) and keep
what they read; the one in the VM keeps it in a list, the host's sends it with `emit()`. Under software
emulation (tcg) one host thread runs both of the VM's CPUs in turn, so everything the host path adds in
the VM (emit's batching, the supervisor) is taken from the consumer's and the
event source's CPU time. The embedded VM sends a run's frames over its data channel (a virtio-serial port:
no network stack, no ssh encryption), and the program writes its records to that port itself, whole
events uncompressed; what the host path still adds in the VM is emit() in the consumer (a copy and a
queue per event) and the batch's writes to the port. The loss rows use one-page buffers, which
overflow whenever the consumer pauses for ~10 ms, as it does now and then under software emulation
whichever consumer it is: per paced rate (and the pacer's top speed, "max", 3,000-4,000 opens/s;
each row says what it made), the median share lost and in how many sweeps anything was lost. The
loss onset is the lowest rate at which any sweep lost events: below the in-VM consumer's onset,
the host's must lose nothing."""


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def direct_ssh(lab, source: str) -> tuple[float, str]:
    """The same program started with plain ssh in the VM (no ebpf_lab runner)."""
    argv = lab.ssh.argv("python3 -u -")
    t = time.perf_counter()
    proc = subprocess.run(argv, input=source.encode(), capture_output=True)
    return time.perf_counter() - t, proc.stdout.decode()


def cold_and_warm(results: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ebpf-lab-bench-") as cache:
        env = {**os.environ, "EBPF_LAB_CACHE": cache, "EBPF_LAB_TARGET": "embedded"}

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "ebpf_lab", *args], env=env, capture_output=True, text=True)

        build, _ = timed(lambda: cli("vm", "build"))
        boot, _ = timed(lambda: cli("vm", "up"))
        prog = Path(cache) / "hello.py"
        prog.write_text(HELLO_FIRST_LINE)
        first, out = timed(lambda: cli("run", str(prog), "--timeout", "120"))
        cli("vm", "down")
        ups = []
        for _ in range(3):
            ups.append(timed(lambda: cli("vm", "up"))[0])
            cli("vm", "down")
        results.append(f"| cold start: fresh cache → first Hello on the host | {build + boot + first:.1f} s "
                       f"(image build {build:.1f} s, boot {boot:.1f} s, first hello {first:.1f} s) |")
        results.append(f"| warm start: `ebpf-lab vm up` to ssh ready (median of 3) | {statistics.median(ups):.1f} s "
                       f"({', '.join(f'{u:.1f}' for u in ups)}) |")


def per_run_overhead(lab, results: list[str]) -> None:
    ours, theirs, firsts = [], [], []
    for _ in range(3):
        t, _ = direct_ssh(lab, HELLO_FIRST_LINE)
        theirs.append(t)
        t0 = time.perf_counter()
        run = lab.run(HELLO_FIRST_LINE, echo=False)
        ours.append(time.perf_counter() - t0)
        firsts.append(run.first_output_at - run.started_at)
    o, d = statistics.median(ours), statistics.median(theirs)
    results.append(f"| per run: hello via `Lab.run` vs plain `ssh … python3 -` (median of 3) | {o:.2f} s vs {d:.2f} s "
                   f"= **{o / d:.3f}×** |")
    results.append(f"| time to first event on the host (median) | {statistics.median(firsts):.2f} s from start |")


def event_phases(lab, kind: str, to_host: bool, pages: int, event_bytes: int,
                 phases: list[tuple[str, list[str]]], whole: bool = False):
    """Run EVENTS; returns the run and, per phase, (label, received, lost, seconds, what the command printed)."""
    source = (EVENTS.replace("__KIND__", kind).replace("__TO_HOST__", str(to_host)).replace("__PAGES__", str(pages))
              .replace("__PAD__", str(event_bytes // 4 - 1)).replace("__PHASES__", repr(phases))
              .replace("__WHOLE__", str(whole)))
    run = lab.run(source, echo=False, timeout=900)
    rows = [(l.text.split() + [""])[1:6] for l in run.lines if l.text.startswith("PHASE")]
    return run, [(label, int(got), int(lost), float(t), said) for label, got, lost, t, said in rows]


def throughput(lab, results: list[str], n: int, repeats: int = 5) -> None:
    """Per case, `repeats` pairs of runs (in the VM, then on the host, back to back, so both meet the
    same machine): the medians. One pair alone swings by 15% under software emulation, and the
    median of three pairs by ~10% from one bench run to the next."""
    opener = ["sh", "-c", f"for i in $(seq {n}); do : < /etc/hostname; done"]
    cases = [(kind, 8, False, "events, the pid of each") for kind in ("ring", "perf")]
    cases += [(kind, size, True, f"{size}-byte events, whole") for size in (64, 256) for kind in ("ring", "perf")]
    for kind, size, whole, what in cases:
        rates, lost, received = {False: [], True: []}, {False: [], True: []}, []
        for _ in range(repeats):
            for to_host in (False, True):
                run, [(_, got, dropped, elapsed, _)] = event_phases(lab, kind, to_host, 256, size, [("all", opener)],
                                                                    whole)
                host_got = run.record_count if to_host else got
                rates[to_host].append(host_got / elapsed)
                lost[to_host].append(dropped)
                if to_host:
                    received.append(host_got)
                    link = run.link
        vm_rate, host_rate = statistics.median(rates[False]), statistics.median(rates[True])
        results.append(f"| {kind} buffer: {n} {what}, consumer in the VM vs on the host ({link}), median of "
                       f"{repeats} | {vm_rate:,.0f}/s vs {host_rate:,.0f}/s = **{host_rate / vm_rate:.2f}×**; "
                       f"lost {_spread(lost[False])} vs {_spread(lost[True])}; host received {_spread(received)} |")


def _spread(values: list[int]) -> str:
    """The median, and the range when the runs differ."""
    low, mid, high = min(values), int(statistics.median(values)), max(values)
    return f"{mid}" if low == high else f"{mid} ({low}–{high})"


def loss_onset(lab, results: list[str], repeats: int = 8) -> None:
    """Per paced rate, the share of events lost (median of `repeats` sweeps) and how many sweeps lost
    any: the first lossy rate alone is too coarse to tell two consumers apart under software emulation,
    where a consumer at its limit loses in some sweeps and not in others (hence eight of them)."""
    rates = (1000, 2000, 3000, 0)  # 0: the pacer's top speed
    phases = [(str(rate), ["python3", "-c", PACER, str(rate)]) for rate in rates]
    for kind, buffer in (("perf", "1 page per CPU"), ("ring", "1 page")):
        shares, lossy, achieved, onset = {}, {}, {}, {}
        for to_host in (False, True):
            sweeps = [event_phases(lab, kind, to_host, 1, 64, phases)[1] for _ in range(repeats)]
            # A sweep's phase i: (label, received, lost, seconds, opens the pacer made in its 2 s).
            by_rate = list(zip(*sweeps))
            shares[to_host] = [statistics.median(lost / max(1, got + lost) for _, got, lost, _, _ in phase)
                               for phase in by_rate]
            lossy[to_host] = [sum(1 for _, _, lost, _, _ in phase if lost) for phase in by_rate]
            achieved[to_host] = [statistics.median(int(opens or 0) / 2 for *_, opens in phase) for phase in by_rate]
            onset[to_host] = next((i for i, n in enumerate(lossy[to_host]) if n), len(rates))
        cells = " / ".join(f"{vm:.2%} ({lv}/{repeats}) vs {host:.2%} ({lh}/{repeats})" for vm, host, lv, lh
                           in zip(shares[False], shares[True], lossy[False], lossy[True]))
        paced = " / ".join(("max " if not rate else "") + f"{min(a, b):,.0f}"
                           for rate, a, b in zip(rates, achieved[False], achieved[True]))
        name = [f"{rate or 'max'}" for rate in rates] + ["none up to max"]
        below = "loses nothing" if onset[True] >= onset[False] else "**loses**"
        results.append(f"| events lost ({kind} buffer, {buffer}, 64-byte events), median of {repeats} (sweeps "
                       f"that lost any), at {paced} opens/s: consumer in the VM vs on the host | {cells}; loss "
                       f"onset {name[onset[False]]} vs {name[onset[True]]}: below the VM's onset the host {below} |")


def memory(lab, results: list[str], n: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, run = timed(lambda: lab.run(STREAM.format(n=n), echo=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results.append(f"| host memory while streaming {n:,} records | peak RSS {peak / 1024:.0f} MiB "
                   f"(+{(peak - before) / 1024:.0f} MiB), {run.record_count / t:,.0f} records/s, "
                   f"{len(run.records):,} kept in memory, all in the log |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-cold", action="store_true", help="skip the image build and boot timings")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--stream", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["overhead", "throughput", "loss", "memory"],
                    help="run one measurement and print it (RESULTS.md holds only whole runs)")
    args = ap.parse_args()
    backend = select_backend()
    backend.up()
    lab = Lab(backend.target())
    results: list[str] = []
    steps = {"overhead": lambda: per_run_overhead(lab, results), "throughput": lambda: throughput(lab, results, args.events),
             "loss": lambda: loss_onset(lab, results), "memory": lambda: memory(lab, results, args.stream)}
    if args.only:
        steps = {args.only: steps[args.only]}
    elif not args.skip_cold:
        steps = {"cold": lambda: cold_and_warm(results), **steps}
    for step in steps.values():
        n = len(results)
        step()
        print("\n".join(results[n:]), flush=True)
    if args.only:
        return
    machine = backend.describe()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    text = "\n".join([
        "# Benchmark results", "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, {cpu}, "
        f"Linux {platform.release()}; lab machine: {machine}. Command: `python bench/run.py`.", "",
        READING, "", "| what | result |", "| --- | --- |", *results, ""])
    Path(__file__).with_name("RESULTS.md").write_text(text)
    print(f"\nwritten {Path(__file__).with_name('RESULTS.md')}")


if __name__ == "__main__":
    main()
