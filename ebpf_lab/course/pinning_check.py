"""Self-check for chapter 7's exercise: a per-UID execve counter whose map, pinned in the BPF
filesystem, outlives the program, so that a second run carries on counting where the first stopped.

The answer runs twice, alice running /bin/true 3 times, then 2 times. Between and after the runs the
check asks the kernel: is a map pinned at the path, is the first run's program gone, does the second
run's program use that same map, and does the map hold alice's 5 execs in the end."""
from __future__ import annotations

import shlex
import time

from ..errors import BpftoolError
from ..lab import Lab
from .observe import KernelView, map_entries, observe
from .verdict import Verdict, no_bpf, unfinished

PIN = "/sys/fs/bpf/ch07_counts"
ALICE = 1001
RUNS = (3, 2)  # alice's runs of /bin/true in the first and in the second run of the answer
UNLOAD_DEADLINE = 60.0  # a safety net only: programs normally go within a second of their process
DECLARE = f'BPF_TABLE_PINNED("hash", u32, u64, counts, 1024, "{PIN}")'


def check_pinning_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: count execve per UID in a map pinned at /sys/fs/bpf/ch07_counts."""
    if (todo := unfinished(answer)) is not None:
        return todo
    # A pin left by an earlier try would carry its count into this one; the check never leaves one either.
    lab.sh(f"rm -f {PIN}")
    try:
        return _judge(lab, answer)
    finally:
        lab.sh(f"rm -f {PIN}")


def _judge(lab: Lab, answer: str) -> Verdict:
    first = observe(lab, answer, [f"alice:{RUNS[0]}"])
    if first.failure:
        return Verdict(False, first.failure)
    if (verdict := no_bpf(first.kernel, f"count execve per UID in a map pinned at {PIN}")) is not None:
        return verdict
    pinned, verdict = _pinned_after_first_run(lab, first.kernel)
    if verdict is not None:
        return verdict
    if (verdict := _judge_counts(map_entries(lab, pinned["id"]), RUNS[0], "after the first run")) is not None:
        return verdict

    second = observe(lab, answer, [f"alice:{RUNS[1]}"])
    if second.failure:
        return Verdict(False, f"second run: {second.failure}")
    used = {m for p in second.kernel.progs for m in p.get("map_ids", [])}
    now = _pinned_map(lab)
    if pinned["id"] not in used or now is None or now["id"] != pinned["id"]:
        return Verdict(False, f"the second run did not use the pinned map (id {pinned['id']}; its program used "
                              f"map ids {sorted(used) or 'none'}): open the map pinned at {PIN} rather than "
                              f"creating another, which {DECLARE} does by itself when the pin exists")
    total = sum(RUNS)
    if (verdict := _judge_counts(map_entries(lab, pinned["id"]), total, "after both runs")) is not None:
        return verdict
    return Verdict(True, f"map {pinned['id']} ({pinned.get('name', '?')}) stayed pinned at {PIN} when the first "
                         f"run ended and the second run counted on in it: alice (1001) went from {RUNS[0]} to "
                         f"{total} for {RUNS[0]} + {RUNS[1]} runs of /bin/true")


def _pinned_map(lab: Lab) -> dict | None:
    try:
        return lab.bpftool("map", "show", "pinned", PIN)
    except BpftoolError:
        return None


def _pinned_after_first_run(lab: Lab, kernel: KernelView) -> tuple[dict | None, Verdict | None]:
    """The map pinned at PIN once the first run has ended, or a verdict saying what is wrong."""
    pinned = _pinned_map(lab)
    if pinned is None:
        if lab.sh(f"test -e {PIN} && echo yes", check=False).strip():
            return None, Verdict(False, f"what is pinned at {PIN} is not a map (a program?): pin the map, "
                                        f"e.g. declare it with {DECLARE}")
        elsewhere = _unpin_elsewhere(lab, kernel)
        if elsewhere:
            return None, Verdict(False, f"your map was pinned at {', '.join(elsewhere)}, not at {PIN} (the check "
                                        f"removed that pin): use exactly that path")
        held = [m["entries"].get(ALICE) for m in kernel.maps.values() if ALICE in m["entries"]]
        during = f" (while it ran, your map held alice: {held[0]})" if held else ""
        return None, Verdict(False, f"nothing was pinned at {PIN} once your program ended{during}: the map "
                                    f"died with the program, so a second run would count from 0 again; "
                                    f"declare it with {DECLARE}")
    still_loaded = _still_loaded(lab, {p["id"] for p in kernel.progs})
    if still_loaded:
        return None, Verdict(False, f"your program (id {min(still_loaded)}) was still loaded after the first run "
                                    "ended: pin the map only, and let the program go with its process")
    return pinned, None


def _still_loaded(lab: Lab, prog_ids: set[int]) -> set[int]:
    """Which of `prog_ids` are loaded after their process ended: the kernel frees a program shortly
    after its last reference goes (deferred work, slow under emulation), so give it time."""
    deadline = time.monotonic() + UNLOAD_DEADLINE
    while (left := prog_ids & lab.prog_ids()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _unpin_elsewhere(lab: Lab, kernel: KernelView) -> list[str]:
    """Remove the pins of the answer's maps that are not at PIN (the learner's path was wrong); their paths."""
    paths = sorted(path for m in lab.bpftool("-f", "map", "show") or [] if m["id"] in kernel.maps
                   for path in m.get("pinned", []))
    for path in paths:
        if path.startswith("/sys/fs/bpf/"):
            lab.sh(f"rm -f {shlex.quote(path)}")
    return paths


def _judge_counts(entries: dict[int, int], runs: int, when: str) -> Verdict | None:
    """None if alice's entry counts her `runs` execs; otherwise a verdict with a hint."""
    if ALICE not in entries:
        if any(k & 0xFFFFFFFF == ALICE for k in entries):
            hint = "the keys hold the GID too: keep the UID only, bpf_get_current_uid_gid() & 0xFFFFFFFF"
        elif len(entries) == 1:
            hint = "every exec went to the same key: key the map by the UID"
        else:
            hint = "key the map by the UID, bpf_get_current_uid_gid() & 0xFFFFFFFF"
        return Verdict(False, f"{when}, the pinned map held no entry for alice, UID {ALICE} "
                              f"({len(entries)} keys, e.g. {sorted(entries)[:3]}): {hint}")
    alice = entries[ALICE]
    if alice == runs:
        return None
    if alice == runs - RUNS[0]:
        hint = "the count started again from 0: keep the pinned map's entries, don't clear or replace them"
    elif alice > runs:
        hint = "count execve, once per call (an openat counter counts several calls per program start)"
    else:
        hint = "count every execve, from a kprobe on execve or the sys_enter_execve tracepoint"
    return Verdict(False, f"{when}, the pinned map says alice ran {alice} programs, but she ran /bin/true "
                          f"{runs} times: {hint}")
