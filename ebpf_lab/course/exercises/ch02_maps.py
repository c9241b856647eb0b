"""Chapter 2's exercise: count openat calls per UID in a BPF_HASH, and print the counts from user space.

alice runs cat twice as often as bob. The check reads the answer's hash map in the kernel (her count
must be about twice his, and several opens per run tell file opens from program starts), then waits
for the program to print those very counts: numbers it can only know by reading the map."""
from __future__ import annotations

import re

from ...lab import Lab
from ..observe import Session
from ..openat import ALICE, BOB, on_openat
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "maps"
RUNS = {ALICE: 4, BOB: 2}
WORKLOAD = [f"alice:{RUNS[ALICE]}:/bin/cat /etc/hostname", f"bob:{RUNS[BOB]}:/bin/cat /etc/hostname"]
# A program that prints its map every second or so has printed the final counts well within this.
PRINT_SECONDS = 60


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    with Session(lab, answer, WORKLOAD) as session:
        obs = session.observation
        if (verdict := not_judgeable(obs, "count in a BPF_HASH from a kprobe on openat")) is not None:
            return verdict
        progs, verdict = on_openat(obs.kernel, "kprobe", "tracepoint")
        if verdict is not None:
            return verdict
        hashes = obs.kernel.maps_used_by(progs, "hash", "lru_hash", "percpu_hash")
        if not hashes:
            return Verdict(False, "your program on openat uses no hash map: declare one with BPF_HASH(name) and "
                                  "count with name.increment(uid)")
        entries = max(hashes, key=lambda m: len(per_uid(m["entries"])))["entries"]
        if (verdict := judge_counts(entries)) is not None:
            return verdict
        counts = per_uid(entries)
        printed = obs.run.wait_for(lambda r: printed_counts(r.stdout, counts), PRINT_SECONDS)
    return judge_printed(counts, printed)


def per_uid(entries: dict[int, int]) -> dict[int, int]:
    return {k: v for k, v in entries.items() if k in RUNS}


def judge_counts(entries: dict[int, int]) -> Verdict | None:
    """None if the map counts every openat per UID (alice's about twice bob's), else a verdict with a hint."""
    counts = per_uid(entries)
    if ALICE not in counts or BOB not in counts:
        combined = [k for k in entries if k & 0xFFFFFFFF in RUNS]
        hint = ("the keys hold the GID too: keep the UID only, bpf_get_current_uid_gid() & 0xFFFFFFFF"
                if combined else "key the map by the UID, bpf_get_current_uid_gid() & 0xFFFFFFFF")
        return Verdict(False, f"the map held no counts for UIDs {ALICE} and {BOB} "
                              f"({len(entries)} keys, e.g. {sorted(entries)[:3]}): {hint}")
    alice, bob = counts[ALICE], counts[BOB]
    if bob < 3 * RUNS[BOB] or not 1.5 <= alice / bob <= 2.5:
        return Verdict(False, f"the map says alice {alice}, bob {bob} for {RUNS[ALICE]} and {RUNS[BOB]} runs of "
                              "cat: count every openat (several per run), once per call")
    return None


def printed_counts(stdout: str, counts: dict[int, int]) -> bool:
    """Did the output give every UID's count as the map holds it, on a line of its own or not
    ("1001: 124 1002: 62", "uid=1001 opens=124")?"""
    return all(re.search(rf"\b{uid}\b[^\d\n]{{1,20}}?\b{n}\b", stdout) for uid, n in counts.items())


def judge_printed(counts: dict[int, int], printed: bool) -> Verdict:
    alice, bob = counts[ALICE], counts[BOB]
    if not printed:
        return Verdict(False, f"the map is right (alice {alice}, bob {bob}), but no line your program printed "
                              f"gave those counts: print the map's items from Python, e.g. every second, "
                              f"\"{ALICE}: {alice} {BOB}: {bob}\"")
    return Verdict(True, f"the kernel's hash map held alice ({ALICE}): {alice} and bob ({BOB}): {bob} opens "
                         f"for {RUNS[ALICE]} and {RUNS[BOB]} runs of cat, and your program printed them")
