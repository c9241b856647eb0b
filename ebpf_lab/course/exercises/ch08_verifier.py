"""Chapter 8's self-check: three functions the verifier rejected, fixed by the learner.

Each function is loaded on its own, so the verdict says which ones the verifier accepts now and,
for the others, its reason. Accepted functions are then run with BPF_PROG_TEST_RUN on inputs that
tell a real fix from a function emptied until the verifier had nothing left to object to.
"""
from __future__ import annotations

from ...errors import ProgramFailed
from ...inspect.verifier_log import reason
from ...lab import Lab
from ..verdict import Verdict

NAME = "verifier"

# (function, bcc program type): raw tracepoint programs can be test-run as any user; kprobes can't.
FUNCTIONS = [("count_calls", "RAW_TRACEPOINT"), ("count_uid", "RAW_TRACEPOINT"), ("drop_icmp", "XDP")]
ALICE = 1001
# Who runs count_uid, and how often: root, alice, the last UID that fits (2047), two that do not.
UID_RUNS = [(0, 1), (ALICE, 2), (2047, 1), (2048, 1), (70000, 1)]
EXPECTED_UID_COUNTS = {0: 1, ALICE: 2, 2047: 1}
XDP_DROP, XDP_PASS = 1, 2
# name -> ((IP protocol, EtherType, bytes kept or None), expected verdict): ICMP is dropped; UDP, a frame
# cut short inside the IPv4 header and an ARP frame whose byte 23 is 1 (where IPv4 keeps its protocol) pass.
FRAMES = {"an ICMP packet": ((1, 0x0800, None), XDP_DROP), "a UDP packet": ((17, 0x0800, None), XDP_PASS),
          "a frame cut short in its IPv4 header": ((1, 0x0800, 20), XDP_PASS),
          "an ARP frame": ((1, 0x0806, None), XDP_PASS)}

_RUNNER = """
from bcc import BPF
from bcc.libbcc import lib
from labtools import prog_test_run_as
from verifier_lab import load_with_log, ipv4_frame, xdp_test_run
b = BPF(text={c_text!r})
for name, kind in {functions!r}:
    if not lib.bpf_function_start(b.module, name.encode()):  # renamed or deleted: reported as missing
        continue
    fd, log = load_with_log(b, name, getattr(BPF, kind))
    result = {{"accepted": fd is not None, "log": log}}
    if fd is not None and name == "count_calls":
        for uid, times in [(0, 3), ({alice}, 2)]:
            for _ in range(times):
                prog_test_run_as(fd, uid)
        result["counts"] = {{k.value: v.value for k, v in b["counter_table"].items()}}
    elif fd is not None and name == "count_uid":
        for uid, times in {uid_runs!r}:
            for _ in range(times):
                prog_test_run_as(fd, uid)
        result["counts"] = {{i: n for i, n in enumerate(b["uid_counts"][0].count) if n}}
    elif fd is not None and name == "drop_icmp":
        result["returns"] = {{what: xdp_test_run(fd, ipv4_frame(proto, kind)[:cut]) for what, ((proto, kind, cut), _) in {frames!r}.items()}}
    emit(name, result)
"""


def _runner(c_text: str) -> str:
    return _RUNNER.format(c_text=c_text, functions=FUNCTIONS, alice=ALICE, uid_runs=UID_RUNS, frames=FRAMES)


def _judge_count_calls(r: dict) -> str | None:
    # Keys come back as strings (the record travelled as JSON).
    counts = {int(k): v for k, v in r["counts"].items() if int(k) in (0, ALICE)}
    if counts != {0: 3, ALICE: 2}:
        return (f"run 3 times by root and 2 times by alice, it left counter_table = {counts or 'empty'} "
                f"(expected {{0: 3, {ALICE}: 2}}): read *p only when the lookup found an entry, else start "
                "from 0, and write the new count back with counter_table.update")
    return None


def _judge_count_uid(r: dict) -> str | None:
    counts = {int(k): v for k, v in r["counts"].items()}
    if counts != EXPECTED_UID_COUNTS:
        return (f"run by UIDs 0 (once), 1001 (twice), 2047, 2048 and 70000 (once each) it left the counts "
                f"{counts or 'all zero'} (expected {EXPECTED_UID_COUNTS}): add 1 to count[uid] for every UID "
                "below 2048, and skip the others (don't fold them into the array)")
    return None


def _judge_drop_icmp(r: dict) -> str | None:
    names = {XDP_DROP: "XDP_DROP", XDP_PASS: "XDP_PASS"}
    wrong = [f"{what} got {names.get(got, got)}" for what, got in r["returns"].items()
             if got != FRAMES[what][1]]
    if wrong:
        return (", ".join(wrong) + ": drop only IPv4 packets whose protocol is ICMP; a frame too short to "
                "check passes (return XDP_PASS when the check fails, don't drop it)")
    return None


JUDGES = {"count_calls": _judge_count_calls, "count_uid": _judge_count_uid, "drop_icmp": _judge_drop_icmp}


def check(lab: Lab, answer: str) -> Verdict:
    try:
        run = lab.run(_runner(answer), echo=False)
    except ProgramFailed as e:
        return Verdict(False, f"your answer could not be tried: {e}")
    results = {r.name: r.payload for r in run.records}
    missing = [name for name, _ in FUNCTIONS if name not in results]
    if missing:
        return Verdict(False, f"no function named {', '.join(missing)} in your answer: keep the three names")
    report, ok = [], 0
    for name, _ in FUNCTIONS:
        r = results[name]
        if not r["accepted"]:
            report.append(f"{name}: still rejected by the verifier: {reason(r['log'])}")
            continue
        problem = JUDGES[name](r)
        report.append(f"{name}: accepted, but {problem}" if problem else f"{name}: accepted, and it works")
        ok += problem is None
    if ok == len(FUNCTIONS):
        return Verdict(True, "the verifier accepted all three, and run with BPF_PROG_TEST_RUN they did their job: "
                             f"counter_table {{0: 3, {ALICE}: 2}}, count[] {EXPECTED_UID_COUNTS}, ICMP dropped "
                             "and the rest passed")
    return Verdict(False, f"{ok} of 3 done.\n" + "\n".join(report))
