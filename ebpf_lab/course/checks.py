"""Self-checks for the chapter exercises.

Each check runs the learner's program in the VM under a load chosen to tell a right answer
from a near miss, and judges what the kernel held while it ran: which programs were loaded,
where they were attached, which maps they used and what those maps contained. What the
program printed only counts on top of that, so printing the expected text from Python passes
nothing.
"""
from __future__ import annotations

import re

from ..errors import BpftoolError, ProgramFailed
from ..lab import Lab
from .observe import KernelView, Observation, observe
from .verdict import Verdict, no_bpf, unfinished

ALICE, BOB = 1001, 1002


def _on_openat(kernel: KernelView, *types: str) -> tuple[list[dict], Verdict | None]:
    """The answer's programs of `types` attached to openat (its kprobe or its syscall tracepoint)."""
    hooked = [(p, where) for p, where in kernel.attached() if p["type"] in types]
    on_openat = [p for p, where in hooked if "openat" in where and "openat2" not in where]
    if on_openat:
        return on_openat, None
    if hooked:
        places = ", ".join(sorted({where for _, where in hooked}))
        hint = " (program starts, not file opens)" if "execve" in places else ""
        return [], Verdict(False, f"your program is attached to {places}{hint}: attach it to openat, e.g. "
                                  "b.attach_kprobe(event=b.get_syscall_fnname(\"openat\"), fn_name=...)")
    loaded = ", ".join(f"{p.get('name', '?')} ({p['type']})" for p in kernel.progs)
    return [], Verdict(False, f"your program {loaded} was loaded but attached nowhere: attach it with "
                              "b.attach_kprobe(...) or use TRACEPOINT_PROBE")


def _prepare(lab: Lab, answer: str, workload: list[str]) -> tuple[Observation | None, Verdict | None]:
    if (todo := unfinished(answer)) is not None:
        return None, todo
    obs = observe(lab, answer, workload)
    if obs.failure:
        return obs, Verdict(False, obs.failure)
    return obs, None


def _openat_answer(lab: Lab, answer: str, workload: list[str],
                   missing: str) -> tuple[Observation | None, list[dict], Verdict | None]:
    """Run an answer that should hook openat; its observation and its programs on openat, or a verdict."""
    obs, verdict = _prepare(lab, answer, workload)
    if verdict is None:
        verdict = no_bpf(obs.kernel, missing)
    if verdict is not None:
        return obs, [], verdict
    progs, verdict = _on_openat(obs.kernel, "kprobe", "tracepoint")
    return obs, progs, verdict


def _trace_lines(obs: Observation, text: str) -> int:
    return sum(text in line.text for line in list(obs.run.lines))


def check_setup(lab: Lab) -> Verdict:
    info = lab.info()
    problems = [name for name, ok in (
        ("a 5.8+ kernel (ring buffers)", tuple(map(int, re.findall(r"\d+", info["kernel"])[:2])) >= (5, 8)),
        ("bcc", info["bcc"] != "?"), ("bpftool", info["bpftool"].startswith("bpftool")),
        ("clang", "clang" in info["clang"])) if not ok]
    if problems:
        return Verdict(False, "the lab VM lacks " + ", ".join(problems) + "; rebuild it: ebpf-lab vm build --force")
    return Verdict(True, f"{info['target']} VM, kernel {info['kernel']}, bcc {info['bcc']}")


def check_kprobe_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: a kprobe on the openat syscall that prints 'open!' with bpf_trace_printk."""
    obs, progs, verdict = _openat_answer(lab, answer, ["alice:3:/bin/cat /etc/hostname"],
                                         "attach a kprobe with b.attach_kprobe")
    if verdict is not None:
        return verdict
    opens = _trace_lines(obs, "open!")
    if opens < 3:
        return Verdict(False, f"your {progs[0]['type']} program sits on openat, but only {opens} 'open!' lines "
                              "came out while alice opened files: print with bpf_trace_printk(\"open!\") and "
                              "read the trace with b.trace_print()")
    return Verdict(True, f"a {progs[0]['type']} program on {obs.kernel.hooked(progs[0])[0]} printed 'open!' "
                         f"{opens} times while alice ran cat 3 times")


def _per_uid(entries: dict[int, int]) -> dict[int, int]:
    return {k: v for k, v in entries.items() if k in (ALICE, BOB)}


def check_map_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: count openat calls per UID in a BPF_HASH (and print the counts)."""
    # alice runs cat twice as often as bob: her count must be twice his, and several opens per run
    # (ld.so.cache, libc, locale, the file) tell file opens from program starts (one execve per run).
    obs, progs, verdict = _openat_answer(lab, answer, ["alice:4:/bin/cat /etc/hostname", "bob:2:/bin/cat /etc/hostname"],
                                         "count in a BPF_HASH from a kprobe on openat")
    if verdict is not None:
        return verdict
    hashes = obs.kernel.maps_used_by(progs, "hash", "lru_hash", "percpu_hash")
    if not hashes:
        return Verdict(False, "your program on openat uses no hash map: declare one with BPF_HASH(name) and "
                              "count with name.increment(uid)")
    entries = max(hashes, key=lambda m: len(_per_uid(m["entries"])))["entries"]
    counts = _per_uid(entries)
    if ALICE not in counts or BOB not in counts:
        combined = [k for k in entries if k & 0xFFFFFFFF in (ALICE, BOB)]
        hint = ("the keys hold the GID too: keep the UID only, bpf_get_current_uid_gid() & 0xFFFFFFFF"
                if combined else "key the map by the UID, bpf_get_current_uid_gid() & 0xFFFFFFFF")
        return Verdict(False, f"the map held no counts for UIDs {ALICE} and {BOB} "
                              f"({len(entries)} keys, e.g. {sorted(entries)[:3]}): {hint}")
    alice, bob = counts[ALICE], counts[BOB]
    if bob < 2 * 3 or not 1.5 <= alice / bob <= 2.5:
        return Verdict(False, f"the map says alice {alice}, bob {bob} for 4 and 2 runs of cat: count every "
                              "openat (several per run), once per call")
    if str(ALICE) not in obs.run.stdout:
        return Verdict(False, f"the map is right (alice {alice}, bob {bob}), but nothing was printed: "
                              "print the map's items from Python, e.g. every second")
    return Verdict(True, f"the kernel's hash map held alice (1001): {alice} and bob (1002): {bob} opens "
                         "for 4 and 2 runs of cat")


def check_ringbuf_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: send the filename of each openat by UID 1001 through a ring buffer and print it."""
    # Each user opens a file of their own, so a missing UID filter shows in the output.
    obs, progs, verdict = _openat_answer(lab, answer, ["alice:3:/bin/cat /etc/hostname", "bob:2:/bin/cat /etc/os-release"],
                                         "submit events with BPF_RINGBUF_OUTPUT from a probe on openat")
    if verdict is not None:
        return verdict
    if not obs.kernel.maps_used_by(progs, "ringbuf"):
        kinds = sorted({m["type"] for m in obs.kernel.maps_used_by(progs)})
        return Verdict(False, f"your program on openat uses {', '.join(kinds) or 'no map'}, not a ring buffer: "
                              "declare it with BPF_RINGBUF_OUTPUT(name, pages) and submit with name.ringbuf_output")
    alices = obs.run.stdout.count("/etc/hostname")
    bobs = obs.run.stdout.count("/etc/os-release")
    if bobs:
        return Verdict(False, f"bob's file came through {bobs} times too: return early unless "
                              "(bpf_get_current_uid_gid() & 0xFFFFFFFF) == 1001")
    if alices < 3:
        return Verdict(False, f"your ring buffer is in place, but alice's 3 opens of /etc/hostname printed "
                              f"{alices} times: copy args->filename with bpf_probe_read_user_str, poll with "
                              "b.ring_buffer_poll() and print each event's filename")
    return Verdict(True, f"alice's opens of /etc/hostname came through your ring buffer {alices} times, bob's none")


def check_tailcall_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: tail-call from raw sys_enter into a program that prints 'openat!' for openat only."""
    obs, verdict = _prepare(lab, answer, ["alice:3:/bin/cat /etc/hostname"])
    if verdict is not None:
        return verdict
    if (verdict := no_bpf(obs.kernel, "attach a raw tracepoint program to sys_enter")) is not None:
        return verdict
    dispatchers = [p for p, where in obs.kernel.attached() if p["type"] == "raw_tracepoint" and where == "sys_enter"]
    if not dispatchers:
        return Verdict(False, "no raw tracepoint program on sys_enter: b.attach_raw_tracepoint(tp=\"sys_enter\", ...)")
    arrays = obs.kernel.maps_used_by(dispatchers[:1], "prog_array")
    if not arrays or not arrays[0]["entries"]:
        return Verdict(False, "the program array your dispatcher calls into is empty: store program fds in it "
                              "with table[ct.c_int(i)] = ct.c_int(fn.fd)")
    slots = arrays[0]["entries"]
    nr_openat = lab.syscall_numbers("openat")["openat"]
    if nr_openat not in slots:
        return Verdict(False, f"slot {nr_openat} (openat on this kernel) is empty; filled: {sorted(slots)[:8]}: "
                              "derive the number with syscall_numbers(\"openat\"), don't hard-code it")
    others = {prog for nr, prog in slots.items() if nr != nr_openat}
    if slots[nr_openat] in others:
        return Verdict(False, "openat's slot holds the same program as other syscalls: give it its own")
    printed, fell_through = _trace_lines(obs, "openat!"), _trace_lines(obs, "Another syscall")
    if fell_through or len(slots) < 300:
        return Verdict(False, f"{len(slots)} slots filled; {fell_through} syscalls fell through to 'Another "
                              "syscall': fill every other slot with the ignore program, and attach only once "
                              "the array is full")
    if printed < 3:
        return Verdict(False, f"only {printed} 'openat!' lines while alice opened files: print from the openat "
                              "program and read the trace with b.trace_print()")
    return Verdict(True, f"{len(slots)} slots filled, openat's ({nr_openat}) with its own program: {printed} "
                         "openat calls went through your tail call, no syscall fell through")


def check_bytecode_exercise(lab: Lab, c_text: str) -> Verdict:
    """The exercise: a function `answer` that returns 1 for root and 0 for everyone else.

    It is loaded (so the verifier must accept it) and run with BPF_PROG_TEST_RUN three times: by
    root, by alice, and by root with alice's group (which tells a UID test from a GID test)."""
    from ..inspect.bytecode import decode

    if (todo := unfinished(c_text)) is not None:
        return todo
    # Root in alice's group tells a UID test from a GID test (the upper 32 bits of the helper's value).
    program = ("from bcc import BPF\nfrom labtools import prog_test_run_as\n"
               f"b = BPF(text={c_text!r})\n"
               "fn = b.load_func('answer', BPF.RAW_TRACEPOINT)\n"
               "emit('returns', [prog_test_run_as(fn.fd, 0), prog_test_run_as(fn.fd, 1001), "
               "prog_test_run_as(fn.fd, 0, 1001)])\n"
               "emit('bytecode', b.dump_func('answer').hex())\n")
    lab.clear_trace_buffer()
    try:
        run = lab.run(program, echo=False)
    except ProgramFailed as e:
        return Verdict(False, f"your program failed in the VM: {e}")
    records = {r.name: r.payload for r in run.records}
    root, alice, root_in_alices_group = records["returns"]
    insns = decode(bytes.fromhex(records["bytecode"]))
    helpers = lab.helper_names()
    calls = [helpers.get(i.imm) for i in insns if i.kind == "call"]
    if (root, alice, root_in_alices_group) != (1, 0, 1):
        hint = ("" if "bpf_get_current_uid_gid" in calls
                else ": ask the kernel who is running with bpf_get_current_uid_gid()")
        if (root, alice) == (1, 0):
            hint = ": it looked at the group; the UID is the helper's lower 32 bits"
        return Verdict(False, f"run by root it returned {root}, by alice {alice}, by root in alice's group "
                              f"{root_in_alices_group} (expected 1, 0, 1){hint}")
    jumps = sum(i.kind == "jump" for i in insns)
    return Verdict(True, f"the verifier accepted your {len(insns)} instructions; run with BPF_PROG_TEST_RUN they "
                         f"returned 1 for root, 0 for alice, 1 for root in alice's group "
                         f"(calls: {', '.join(filter(None, calls)) or 'none'}; {jumps} jump(s))")


def xdp_globals(lab: Lab, c_text: str, packets: int = 5) -> tuple[dict, tuple[int, int]]:
    """Build C with clang, load and pin it, attach it to lo, send UDP packets to a listener;
    return its global variables and (sent, received). Everything is detached and unpinned again."""
    from ..inspect.bpftool import Bpftool

    tool = Bpftool(lab)
    obj = tool.compile(c_text, "exercise_xdp")
    with tool.pinned(obj, "/sys/fs/bpf/exercise_xdp") as prog, tool.xdp_attached(prog["id"], "lo"):
        sent, received = map(int, lab.guest_tool("send-receive-udp", packets).split())
        values: dict = {}
        for m in tool("map", "list"):
            if m["id"] in prog.get("map_ids", []):
                for entry in tool("map", "dump", "id", m["id"]):
                    for section in entry.get("formatted", {}).get("value", {}).values():
                        for var in section:
                            values.update(var)
        return values, (sent, received)


def check_xdp_exercise(lab: Lab, c_text: str) -> Verdict:
    """The exercise: an XDP program that passes every packet and counts them in a global `packets`."""
    if (todo := unfinished(c_text)) is not None:
        return todo
    try:
        values, (sent, received) = xdp_globals(lab, c_text, packets=5)
    except BpftoolError as e:
        return Verdict(False, f"{e}")
    if "packets" not in values:
        return Verdict(False, f"no global variable named packets (found {sorted(values) or 'none'}): declare "
                              "`int packets = 0;` outside the function and add 1 to it for every packet (the "
                              "compiler drops a global that nothing uses)")
    if received != sent:
        return Verdict(False, f"only {received} of {sent} packets arrived: return XDP_PASS for every packet")
    if values["packets"] != sent:
        return Verdict(False, f"packets = {values['packets']} after {sent} UDP packets on lo: add 1 for every "
                              "packet (atomically: __sync_fetch_and_add(&packets, 1))")
    return Verdict(True, f"packets = {values['packets']}: exactly the {sent} UDP packets sent on lo, "
                         f"and all {received} arrived")
