"""Chapter 10's exercise: a uprobe on a function of a program, counting its calls per argument.

The check builds WORKER in the VM: its `work(n)` is called once per number on its command line. alice
runs it with numbers the check draws at random for this try (a few values, each a random number of
times), so no answer can know the counts in advance. The kernel decides: a uprobe (or uretprobe) of
the answer attached to WORKER, and a hash map of the answer holding, for each number, how many times
work was called with it."""
from __future__ import annotations

import random
from dataclasses import dataclass

from ...lab import Lab
from ..observe import Session
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "uprobes"
WORKER = "/tmp/ch10_exercise/worker"
WORKER_C = r"""
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noinline)) long work(long n) {
    for (long i = 0; i < n; i++)
        syscall(SYS_getpid);
    return n;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        work(atol(argv[i]));
    return 0;
}
"""


@dataclass(frozen=True)
class Probes:
    """The calls alice's run made ({argument: calls}), the answer's user-space probes as (kind, file), and
    the entries of the hash maps its programs use."""

    expected: dict[int, int]
    uprobes: list[tuple[str, str]]
    maps: list[dict[int, int]]


def draw(rng: random.Random) -> dict[int, int]:
    """Three different arguments, each called 2 to 6 times."""
    return {n: rng.randint(2, 6) for n in rng.sample(range(2, 60), 3)}


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    lab.sh(f"mkdir -p {WORKER.rsplit('/', 1)[0]} && cat > {WORKER}.c && clang -O2 -o {WORKER} {WORKER}.c "
           f"&& chmod 755 {WORKER}", input=WORKER_C.encode())
    expected = draw(random.Random())
    calls = [n for n, times in expected.items() for _ in range(times)]
    random.shuffle(calls)
    with Session(lab, answer, [f"alice:1:{WORKER} {' '.join(map(str, calls))}"]) as session:
        obs = session.observation
        if (verdict := not_judgeable(obs, f"attach a uprobe to work in {WORKER}")) is not None:
            return verdict
        ids = {p["id"] for p in obs.kernel.progs}
        uprobes = [(h.get("fd_type", ""), h.get("filename", "")) for h in obs.kernel.hooks
                   if h.get("prog_id") in ids and h.get("fd_type") in ("uprobe", "uretprobe")]
        maps = [m["entries"] for m in obs.kernel.maps_used_by(obs.kernel.progs, "hash", "lru_hash")]
    return judge(Probes(expected, uprobes, maps))


def judge(p: Probes) -> Verdict:
    on_worker = [kind for kind, filename in p.uprobes if filename == WORKER]
    if not on_worker:
        where = ", ".join(f"{kind} on {filename}" for kind, filename in p.uprobes)
        return Verdict(False, f"no uprobe of yours is on {WORKER}" + (f" (yours: {where})" if where else "")
                              + f": b.attach_uprobe(name=\"{WORKER}\", sym=\"work\", fn_name=...)")
    shown = ", ".join(f"work({n}) {c} times" for n, c in sorted(p.expected.items()))
    if any(entries == p.expected for entries in p.maps):
        return Verdict(True, f"your {on_worker[0]} on {WORKER} counted what alice's run did ({shown}), number for "
                             "number, in your hash map")
    if not p.maps:
        return Verdict(False, "your program uses no hash map: count in one, e.g. BPF_HASH(calls, u64, u64) and "
                              "calls.increment(n)")
    closest = max(p.maps, key=lambda e: len(set(e) & set(p.expected)))
    if set(closest) != set(p.expected):
        return Verdict(False, f"alice's run called {shown}; your map's keys were {sorted(closest)[:6]}: key it by "
                              "work's argument, PT_REGS_PARM1(ctx), one entry per number")
    return Verdict(False, f"alice's run called {shown}; your map said "
                          f"{', '.join(f'{n}: {closest[n]}' for n in sorted(closest))}: add exactly 1 per call")
