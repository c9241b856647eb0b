"""Watch the kernel while a learner's program runs: which BPF programs it loaded, where they are
attached, which maps they use and what those maps hold. Self-checks judge this, not the output.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import BpftoolError, ProgramFailed
from ..lab import Lab
from ..runner import protocol
from ..runner.run import Run

# Far beyond a slow compile under software emulation; the check stops the run as soon as it has looked.
DEADLINE = 600.0
# How long a program that loaded BPF but attached nothing is given before it is judged as it is
# (a program fills its tables between loading and attaching: seconds, even under emulation).
NO_ATTACH_GRACE = 30.0


@dataclass
class KernelView:
    """What the kernel held while the program ran, limited to the objects this run created."""

    progs: list[dict] = field(default_factory=list)     # bpftool prog show entries
    hooks: list[dict] = field(default_factory=list)     # bpftool perf list / link list entries of those progs
    maps: dict[int, dict] = field(default_factory=dict)  # id -> bpftool map show entry, with "entries" dumped

    def maps_used_by(self, progs: list[dict], *types: str) -> list[dict]:
        """The maps (of `types`, or all) that any of `progs` uses."""
        ids = {m for p in progs for m in p.get("map_ids", [])}
        return [m for m in self.maps.values() if m["id"] in ids and (not types or m.get("type") in types)]

    def hooked(self, prog: dict) -> list[str]:
        """Where `prog` is attached: kprobe function names, tracepoint names, XDP devices."""
        where = []
        for h in self.hooks:
            if h.get("prog_id") == prog.get("id"):
                where.append(h.get("func") or h.get("tracepoint") or h.get("tp_name") or h.get("devname")
                             or h.get("type", "?"))
        return where

    def attached(self) -> list[tuple[dict, str]]:
        return [(p, where) for p in self.progs for where in self.hooked(p)]


@dataclass
class Observation:
    run: Run | None
    kernel: KernelView
    failure: str | None = None  # why the program could not be judged (it failed, never ran, ...)


def _int(hex_bytes: list[str]) -> int:
    return int.from_bytes(bytes(int(b, 16) for b in hex_bytes), "little")


def map_entries(lab: Lab, map_id: int) -> dict[int, int]:
    """A map's entries as integers (little-endian keys and values), read by bpftool from the kernel."""
    entries = {}
    for e in lab.bpftool("map", "dump", "id", map_id) or []:
        if isinstance(e.get("key"), list) and isinstance(e.get("value"), list):
            entries[_int(e["key"])] = _int(e["value"])
    return entries


def kernel_view(lab: Lab, before: set[int]) -> KernelView:
    """The programs loaded since `before` (a set of prog ids), their attachments and maps."""
    view = KernelView(progs=[p for p in lab.bpftool("prog", "show") or [] if p["id"] not in before])
    ids = {p["id"] for p in view.progs}
    view.hooks = [h for h in (lab.bpftool("perf", "list") or []) + (lab.bpftool("link", "list") or [])
                  if h.get("prog_id") in ids]
    map_ids = {m for p in view.progs for m in p.get("map_ids", [])}
    for m in lab.bpftool("map", "show") or []:
        if m["id"] in map_ids:
            dumpable = m.get("type") in ("hash", "array", "percpu_hash", "lru_hash", "prog_array")
            try:
                entries = map_entries(lab, m["id"]) if dumpable else {}
            except BpftoolError:
                continue  # freed between the listing and the dump: it belonged to a program that has ended
            view.maps[m["id"]] = {**m, "entries": entries}
    return view


class Session:
    """A learner's answer running in the VM while a check acts and looks, then stopped.

    `with Session(lab, answer, workload) as session:` starts the answer, waits until its probes are attached
    and `workload` (run by the runner, inside the run) is done, and keeps the Observation of that moment in
    `session.observation`; the check may then run more load (`evidence.run_as`) and look again (`look()`).
    The answer is stopped on the way out; an answer that failed or could not be judged has
    `observation.failure` set, and the check should return it."""

    def __init__(self, lab: Lab, answer: str, workload: list[str], deadline: float = DEADLINE) -> None:
        self.lab, self.answer, self.workload, self.deadline = lab, answer, workload, deadline

    def __enter__(self) -> "Session":
        self.lab.clear_trace_buffer()  # lines left by earlier programs must not count for this answer
        self.before = self.lab.prog_ids()
        self.run = run = self.lab.start(self.answer, timeout=self.deadline, workload=self.workload)
        running_since: list[float] = []

        def ready(r: Run) -> bool:
            events = list(r.events)
            if sum(e.get("kind") == protocol.WORKLOAD for e in events) >= len(self.workload):
                return True
            # The load starts once a probe is attached; a program that only loaded one never gets it.
            if not running_since and any(e.get("kind") == protocol.RUNNING for e in events):
                running_since.append(time.monotonic())
            return (bool(running_since) and not any(e.get("kind") == protocol.ATTACHED for e in events)
                    and time.monotonic() - running_since[0] > NO_ATTACH_GRACE)

        try:
            finished = run.wait_for(ready, self.deadline)
            view = self.look()
            self.observation = Observation(run, view, self._failure(finished, view))
        except BaseException:
            run.stop()
            raise
        return self

    def look(self) -> KernelView:
        """What the kernel holds now of what the answer created."""
        return kernel_view(self.lab, self.before)

    def workload_pids(self) -> set[int]:
        """The pids the runner's workload ran as."""
        return {pid for e in list(self.run.events) if e.get("kind") == protocol.WORKLOAD for pid in e.get("pids", [])}

    def _failure(self, finished: bool, view: KernelView) -> str | None:
        if self.run.done:
            try:
                self.run.raise_for_status()
            except ProgramFailed as e:
                return f"your program failed in the VM: {e}"
            if not finished:
                return "your program ended before the load ran: keep it running (e.g. b.trace_print() or a polling loop)"
        if not finished and not view.progs:
            return "your program could not be judged: the load did not run in time"
        return None

    def __exit__(self, *exc: object) -> None:
        self.run.stop()
        if self.observation.failure is None:
            try:
                self.run.raise_for_status()
            except ProgramFailed as e:  # it failed while the check looked: what it said is the verdict
                self.observation.failure = f"your program failed in the VM: {e}"


def observe(lab: Lab, answer: str, workload: list[str], deadline: float = DEADLINE) -> Observation:
    """Run `answer` with `workload`; once the workload is done, look at the kernel, then stop the run."""
    with Session(lab, answer, workload, deadline) as session:
        pass
    return session.observation
