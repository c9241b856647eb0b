"""Self-checks for the chapter exercises.

Each check runs the learner's program in the VM with a known load and judges what the
kernel reported, so an answer passes only if it really works there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ProgramFailed
from ..lab import Lab


@dataclass
class Verdict:
    passed: bool
    message: str

    def __repr__(self) -> str:
        return ("PASS: " if self.passed else "NOT YET: ") + self.message

    def __bool__(self) -> bool:
        return self.passed


TODO = "TODO"


def _unfinished(text: str, variable: str) -> Verdict | None:
    if TODO in text:
        return Verdict(False, f"replace the TODO parts of `{variable}` with your code, then run this cell again")
    return None


def _run_answer(lab: Lab, answer: str, **kwargs) -> tuple[Verdict | None, object]:
    if (unfinished := _unfinished(answer, "answer")) is not None:
        return unfinished, None
    # The trace buffer is global: lines left unread by earlier programs must not count for this answer.
    lab.sh("echo > /sys/kernel/tracing/trace")
    try:
        return None, lab.run(answer, echo=False, **kwargs)
    except ProgramFailed as e:
        return Verdict(False, f"your program failed in the VM: {e}"), None


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
    verdict, run = _run_answer(lab, answer, timeout=8, workload=["alice:3:/bin/cat /etc/hostname"])
    if verdict is not None:
        return verdict
    opens = sum("open!" in line.text for line in run.lines)
    # Each `cat` opens several files (ld.so.cache, libc, locale, its argument); it execs only once.
    if opens >= 3 * 3:
        return Verdict(True, f"your kprobe fired on {opens} openat calls during alice's 3 cats")
    if run.status not in (0, 130):
        return Verdict(False, f"the program exited with status {run.status}; it should keep tracing until stopped")
    if opens:
        return Verdict(False, f"saw {opens} 'open!' lines for 3 cat runs, about one per program start: is the "
                              "kprobe on execve? attach it to b.get_syscall_fnname(\"openat\")")
    return Verdict(False, "saw no 'open!' lines: attach with b.get_syscall_fnname(\"openat\") "
                          "and keep printing with b.trace_print()")


def check_map_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: count openat calls per UID in a BPF_HASH and print 'UID count' lines."""
    verdict, run = _run_answer(lab, answer, timeout=9, workload=["alice:4:/bin/cat /etc/hostname", "bob:2:/bin/cat /etc/hostname"])
    if verdict is not None:
        return verdict
    counts: dict[int, int] = {}
    for line in run.lines:
        for uid, n in re.findall(r"(\d+)\D+?(\d+)", line.text):
            counts[int(uid)] = int(n)
    alice, bob = counts.get(1001, 0), counts.get(1002, 0)
    # Each `cat` opens a few files (libc, locale, the file itself), so counts exceed the runs.
    if alice >= 4 and bob >= 2 and alice > bob:
        return Verdict(True, f"alice (1001) opened {alice} files, bob (1002) {bob}")
    return Verdict(False, f"expected 1001 >= 4 and 1002 >= 2 opens, saw {counts or 'no UID counts'}: key the "
                          "map by bpf_get_current_uid_gid() & 0xFFFFFFFF and print 'UID: count' pairs")


def check_ringbuf_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: send the filename of each openat by UID 1001 through a ring buffer and print it."""
    if "BPF_RINGBUF_OUTPUT" not in answer and TODO not in answer:
        return Verdict(False, "declare the ring buffer with BPF_RINGBUF_OUTPUT(name, pages)")
    verdict, run = _run_answer(lab, answer, timeout=9,
                               workload=["alice:3:/bin/cat /etc/hostname", "bob:2:/bin/cat /etc/hostname"])
    if verdict is not None:
        return verdict
    hits = sum("/etc/hostname" in line.text for line in run.lines if line.stream == "stdout")
    if hits == 3:
        return Verdict(True, "3 opens of /etc/hostname by alice arrived through your ring buffer, none by bob")
    if hits == 5:
        return Verdict(False, "bob's opens came through too: return early unless "
                              "(bpf_get_current_uid_gid() & 0xFFFFFFFF) == 1001")
    return Verdict(False, f"expected alice's 3 opens of /etc/hostname, saw {hits}: copy args->filename with "
                          "bpf_probe_read_user_str, submit with ringbuf_output, poll with ring_buffer_poll")


def check_tailcall_exercise(lab: Lab, answer: str) -> Verdict:
    """The exercise: tail-call from raw sys_enter into a program that prints 'openat!' for openat only."""
    verdict, run = _run_answer(lab, answer, timeout=10, workload=["alice:3:/bin/cat /etc/hostname"])
    if verdict is not None:
        return verdict
    hits = sum("openat!" in line.text for line in run.lines)
    others = sum("Another syscall" in line.text for line in run.lines)
    if hits >= 3 * 3 and others == 0:
        return Verdict(True, f"{hits} openat calls went through your tail call; no other syscall reached it")
    if others:
        return Verdict(False, f"{others} other syscalls printed 'Another syscall': fill every other slot "
                              "of the program array with the ignore program, and attach hello only once the "
                              "array is filled (syscalls in between find empty slots)")
    return Verdict(False, f"saw {hits} 'openat!' lines: store the openat program's fd at index NR['openat'] "
                          "(syscall numbers differ per architecture: derive them, don't hard-code)")


def check_bytecode_exercise(lab: Lab, c_text: str) -> Verdict:
    """The exercise: a function `answer` that returns 1 for root and 0 for everyone else."""
    from ..inspect.bytecode import decode

    if (unfinished := _unfinished(c_text, "c_text")) is not None:
        return unfinished
    program = ("from bcc import BPF\n"
               f"b = BPF(text={c_text!r})\n"
               "emit('bytecode', b.dump_func('answer').hex())\n")
    verdict, run = _run_answer(lab, program)
    if verdict is not None:
        return verdict
    insns = decode(bytes.fromhex(run.records[0].payload))
    helpers = lab.helper_names()
    calls = [helpers.get(i.imm) for i in insns if i.kind == "call"]
    jumps = [i for i in insns if i.kind == "jump"]
    if "bpf_get_current_uid_gid" not in calls:
        return Verdict(False, f"your bytecode calls {calls or 'no helper'}: ask for the UID with bpf_get_current_uid_gid()")
    if not jumps:
        return Verdict(False, "no jump in your bytecode: compare the UID with 0 and return different values")
    return Verdict(True, f"{len(insns)} instructions: a call to bpf_get_current_uid_gid, "
                         f"{len(jumps)} jump(s), the result in r0 at exit")


SEND_UDP = ("python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "[s.sendto(b\"x\", (\"127.0.0.1\", 9)) for _ in range({n})]'")


def xdp_globals(lab: Lab, c_text: str, packets: int = 5) -> dict:
    """Build C with clang, load and pin it, attach it to lo, send UDP packets, return its global variables.

    Everything is detached and unpinned again, whatever happens.
    """
    from ..inspect.bpftool import Bpftool

    tool = Bpftool(lab)
    obj = tool.compile(c_text, "exercise_xdp")
    with tool.pinned(obj, "/sys/fs/bpf/exercise_xdp") as prog, tool.xdp_attached(prog["id"], "lo"):
        lab.sh(SEND_UDP.format(n=packets))
        values: dict = {}
        for m in tool("map", "list"):
            if m["id"] in prog.get("map_ids", []):
                for entry in tool("map", "dump", "id", m["id"]):
                    for section in entry.get("formatted", {}).get("value", {}).values():
                        for var in section:
                            values.update(var)
        return values


def check_xdp_exercise(lab: Lab, c_text: str) -> Verdict:
    """The exercise: an XDP program that passes every packet and counts them in a global `packets`."""
    from ..errors import BpftoolError

    if (unfinished := _unfinished(c_text, "c_text")) is not None:
        return unfinished
    try:
        values = xdp_globals(lab, c_text, packets=5)
    except BpftoolError as e:
        return Verdict(False, f"{e}")
    if "packets" not in values:
        return Verdict(False, f"no global variable named packets (found {sorted(values) or 'none'})")
    if values["packets"] >= 5:
        return Verdict(True, f"packets = {values['packets']} after 5 UDP packets on lo (their ICMP replies count too)")
    return Verdict(False, f"packets = {values['packets']} after 5 UDP packets: increment it for every packet "
                          "and return XDP_PASS")
