"""Chapter 3's exercise: the filename of every openat by alice (UID 1001) only, through a ring buffer.

Judged by the kernel, in two steps while the answer runs: alice runs cat, then bob does. The check reads
how many bytes the ring buffer's producers wrote after each step (its producer position, whoever read
them) and how often the program ran (the kernel's run counts). alice's opens must have gone through the
ring buffer, one event each; bob's opens must have run the program and put nothing in it: a UID filter
in Python, after the ring buffer, does not do. The printed filenames count on top."""
from __future__ import annotations

from dataclasses import dataclass

from ...lab import Lab
from ..evidence import RunCounts, openat_calls_per_run, ringbuf_produced, run_as
from ..observe import Session
from ..openat import on_openat
from ..verdict import Verdict, not_judgeable, unfinished

NAME = "ringbuf"
ALICE_RUNS, BOB_RUNS = 3, 2
ALICE_CMD, BOB_CMD = "/bin/cat /etc/hostname", "/bin/cat /etc/os-release"
RECORD_HEADER = 8  # bytes the kernel puts before each ring buffer record


@dataclass(frozen=True)
class Steps:
    """What the kernel counted: bytes through the ring buffer and the program's runs, after alice's step
    and after bob's; alice's openat calls; the filenames the program printed."""

    alice_bytes: int
    bob_bytes: int
    runs_after_alice: int
    runs_after_bob: int
    alice_opens: int
    alice_printed: int
    bob_printed: int


def check(lab: Lab, answer: str) -> Verdict:
    if (todo := unfinished(answer)) is not None:
        return todo
    with RunCounts(lab) as runs, Session(lab, answer, [f"alice:{ALICE_RUNS}:{ALICE_CMD}"]) as session:
        obs = session.observation
        if (verdict := not_judgeable(obs, "submit events with BPF_RINGBUF_OUTPUT from a probe on openat")) is not None:
            return verdict
        progs, verdict = on_openat(obs.kernel, "kprobe", "tracepoint")
        if verdict is not None:
            return verdict
        rings = obs.kernel.maps_used_by(progs, "ringbuf")
        if not rings:
            kinds = sorted({m["type"] for m in obs.kernel.maps_used_by(progs)})
            return Verdict(False, f"your program on openat uses {', '.join(kinds) or 'no map'}, not a ring buffer: "
                                  "declare it with BPF_RINGBUF_OUTPUT(name, pages) and submit with name.ringbuf_output")
        ring, prog = rings[0]["id"], progs[0]["id"]
        alice_bytes, runs_after_alice = ringbuf_produced(lab, ring), runs.of(prog)
        run_as(lab, "bob", BOB_RUNS, BOB_CMD)
        bob_bytes, runs_after_bob = ringbuf_produced(lab, ring), runs.of(prog)
        stdout = obs.run.stdout
    return judge(Steps(alice_bytes, bob_bytes, runs_after_alice, runs_after_bob,
                       ALICE_RUNS * openat_calls_per_run(lab, ALICE_CMD),
                       stdout.count("/etc/hostname"), stdout.count("/etc/os-release")))


def judge(s: Steps) -> Verdict:
    if s.alice_bytes == 0:
        return Verdict(False, f"nothing went through your ring buffer while alice opened files {s.alice_opens} "
                              "times: submit an event with name.ringbuf_output(&e, sizeof(e), 0) (or reserve and "
                              "submit) for each of her opens")
    per_event = s.alice_bytes / s.alice_opens
    if per_event < 2 * RECORD_HEADER:
        return Verdict(False, f"{s.alice_bytes} bytes went through your ring buffer for alice's {s.alice_opens} "
                              "openat calls, fewer than one event each: submit one for every openat of hers")
    if s.bob_bytes > s.alice_bytes:
        return Verdict(False, f"bob's opens went through your ring buffer too ({s.bob_bytes - s.alice_bytes} more "
                              "bytes once alice was done): filter in the BPF program, return early unless "
                              "(bpf_get_current_uid_gid() & 0xFFFFFFFF) == 1001 (a filter in Python comes after "
                              "the ring buffer)")
    if s.runs_after_bob <= s.runs_after_alice:
        return Verdict(False, "your program did not run at all while bob opened files: attach it to every openat "
                              "and filter by UID inside it")
    if s.bob_printed:
        return Verdict(False, f"bob's file was printed {s.bob_printed} times: print only the events your ring "
                              "buffer delivers")
    if s.alice_printed < ALICE_RUNS:
        return Verdict(False, f"your ring buffer carried alice's opens, but her /etc/hostname was printed "
                              f"{s.alice_printed} times for {ALICE_RUNS} runs: copy args->filename with "
                              "bpf_probe_read_user_str, poll with b.ring_buffer_poll() and print each event's filename")
    return Verdict(True, f"{s.alice_bytes} bytes went through your ring buffer for alice's {s.alice_opens} "
                         f"openat calls (about {per_event:.0f} per event) and none for bob's, though your program "
                         f"ran {s.runs_after_bob - s.runs_after_alice} more times meanwhile; alice's "
                         f"/etc/hostname was printed {s.alice_printed} times")
