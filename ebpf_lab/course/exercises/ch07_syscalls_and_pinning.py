"""Chapter 7's exercise: a second, different program picks up a pinned map and carries on counting.

The check first runs the chapter's counter itself: a kprobe on execve counting per UID into a hash map
that it pins at /sys/fs/bpf/ch07_counts, while alice runs /bin/true 3 times; then that program ends and
only the pin holds the map. The answer comes second: it must count execve per UID from the
sys_enter_execve tracepoint (another program, another kind of hook) into that very map, while alice runs
/bin/true 2 more times. The kernel decides: the answer's program is a tracepoint on sys_enter_execve, it
uses the pinned map (same map id), the map says 5 for alice, and once the answer ends the map is still
pinned and the answer's program gone."""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from ...errors import BpftoolError
from ...lab import Lab
from ..observe import KernelView, map_entries, observe
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "pinning"
PIN = "/sys/fs/bpf/ch07_counts"
ALICE = 1001
RUNS = (3, 2)  # alice's runs of /bin/true while the check's counter runs, then while the answer does
UNLOAD_DEADLINE = 60.0  # a safety net only: programs normally go within a second of their process
# The first program, the check's own: the chapter's counter, pinning its map.
FIRST = f'''
import time
from bcc import BPF
b = BPF(text="""
BPF_TABLE_PINNED("hash", u32, u64, counts, 1024, "{PIN}");
int count_exec(void *ctx) {{
    u32 uid = bpf_get_current_uid_gid();
    counts.increment(uid);
    return 0;
}}
""")
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="count_exec")
while True:
    time.sleep(1)
'''


@dataclass(frozen=True)
class Second:
    """What the kernel held around the answer's run: the pinned map's id before it and after it, the
    answer's programs (bpftool entries) and where each was attached, the map ids they used, alice's
    count in the pinned map at the end, and the answer's programs still loaded once it ended."""

    pinned_before: int
    pinned_after: int | None
    progs: list[dict]
    hooks: dict[int, list[str]]
    maps_used: set[int]
    entries: dict[int, int]
    still_loaded: set[int]


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    # A pin left by an earlier try would carry its count into this one; the check never leaves one either.
    lab.sh(f"rm -f {PIN}")
    try:
        first = observe(lab, FIRST, [f"alice:{RUNS[0]}"])
        pinned = _pinned_map(lab)
        if first.failure or pinned is None or map_entries(lab, pinned["id"]).get(ALICE) != RUNS[0]:
            raise RuntimeError(f"the check's own counter did not pin its map: {first.failure or pinned}")
        second = observe(lab, answer, [f"alice:{RUNS[1]}"])
        if (verdict := not_judgeable(second, f"count execve per UID in the map pinned at {PIN}")) is not None:
            return verdict
        after = _pinned_map(lab)
        _unpin_elsewhere(lab, second.kernel)
        return judge(Second(
            pinned["id"], after and after["id"], second.kernel.progs,
            {p["id"]: second.kernel.hooked(p) for p in second.kernel.progs},
            {m for p in second.kernel.progs for m in p.get("map_ids", [])},
            map_entries(lab, pinned["id"]) if after else {}, _still_loaded(lab, second.kernel)))
    finally:
        lab.sh(f"rm -f {PIN}")


def judge(s: Second) -> Verdict:
    on_execve = [p for p in s.progs if "sys_enter_execve" in s.hooks[p["id"]]]
    if not on_execve:
        where = ", ".join(f"{p['type']} on {', '.join(s.hooks[p['id']]) or 'nothing'}" for p in s.progs)
        return Verdict(False, f"your program is a {where}: this step asks for another program, on the "
                              "sys_enter_execve tracepoint (TRACEPOINT_PROBE(syscalls, sys_enter_execve))")
    if s.pinned_before not in s.maps_used:
        return Verdict(False, f"your program counted in a map of its own (map ids {sorted(s.maps_used) or 'none'}), "
                              f"not in the one pinned at {PIN} (id {s.pinned_before}): open that pinned map "
                              "(the same key and value types as the chapter's counter) instead of creating one")
    if s.pinned_after != s.pinned_before:
        return Verdict(False, f"after your program ended, the map pinned at {PIN} was "
                              f"{'gone' if s.pinned_after is None else f'another one (id {s.pinned_after})'}: "
                              "leave the pin as it is")
    if s.still_loaded:
        return Verdict(False, f"your program (id {min(s.still_loaded)}) was still loaded after it ended: let it go "
                              "with its process (pin nothing but the map, which is pinned already)")
    total = sum(RUNS)
    alice = s.entries.get(ALICE)
    if alice != total:
        if alice == RUNS[0]:
            hint = "your program added nothing: add 1 to the caller's UID's entry on every execve"
        elif alice is not None and alice < RUNS[0]:
            hint = "the count started again: don't clear or replace the pinned map's entries"
        elif alice is None:
            hint = f"alice's entry (key {ALICE}) is gone: key by the UID alone, bpf_get_current_uid_gid() & 0xFFFFFFFF"
        else:
            hint = "count each execve once, keyed by the UID alone"
        return Verdict(False, f"the pinned map says alice ran {alice} programs, but she ran /bin/true {RUNS[0]} "
                              f"+ {RUNS[1]} = {total} times: {hint}")
    return Verdict(True, f"your tracepoint program on sys_enter_execve counted on in map {s.pinned_before}, pinned "
                         f"at {PIN} by the chapter's kprobe counter: alice went from {RUNS[0]} to {total}, and the "
                         "map stayed pinned after your program was gone")


def _pinned_map(lab: Lab) -> dict | None:
    try:
        return lab.bpftool("map", "show", "pinned", PIN)
    except BpftoolError:
        return None


def _unpin_elsewhere(lab: Lab, kernel: KernelView) -> None:
    """Remove the pins the answer made of maps of its own (the check leaves nothing behind)."""
    for m in lab.bpftool("-f", "map", "show") or []:
        for path in m.get("pinned", []) if m["id"] in kernel.maps else []:
            if path != PIN and path.startswith("/sys/fs/bpf/"):
                lab.sh(f"rm -f {shlex.quote(path)}")


def _still_loaded(lab: Lab, kernel: KernelView) -> set[int]:
    """The answer's programs still loaded after its process ended: the kernel frees a program shortly
    after its last reference goes (deferred work, slow under emulation), so give it time. Pins of them
    elsewhere are removed: the check leaves nothing behind."""
    ids = {p["id"] for p in kernel.progs}
    deadline = time.monotonic() + UNLOAD_DEADLINE
    while (left := ids & lab.prog_ids()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for prog in lab.bpftool("-f", "prog", "show") or []:
        for path in prog.get("pinned", []) if prog["id"] in left else []:
            if path.startswith("/sys/fs/bpf/"):
                lab.sh(f"rm -f {shlex.quote(path)}")
    return left
