"""Chapter 11's self-check judges a latency histogram by what the kernel held: it passes an
fentry/fexit answer, and fails near misses (no UID filter, one end only, a rescaled latency, a
fixed bucket that is no latency at all, printing without BPF, the unfinished template) with a hint that
says what to do."""
from __future__ import annotations

import time

from ebpf_lab.course import CHECKS, solution

from .verdicts import PRINTS_ONLY, fails, passes

FENTRY_FEXIT = '''
from bcc import BPF
from time import sleep
b = BPF(text="""
BPF_HASH(began, u32, u64);
BPF_HISTOGRAM(latency, u64);
KFUNC_PROBE(do_sys_openat2, int dfd, const char *filename) {
    if (bpf_get_current_uid_gid() >> 32 != 1001)  // alice's group is 1001 too
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    began.update(&tid, &now);
    return 0;
}
KRETFUNC_PROBE(do_sys_openat2, int dfd, const char *filename, void *how, long ret) {
    u32 tid = bpf_get_current_pid_tgid();
    u64 *t = began.lookup(&tid);
    if (!t)
        return 0;
    latency.increment(bpf_log2l(bpf_ktime_get_ns() - *t));
    began.delete(&tid);
    return 0;
}
""")
while True:
    sleep(1)
    b["latency"].print_log2_hist("ns")
'''

# The reference with one change each, as a learner might get it wrong.
REFERENCE = solution("histogram")
NO_FILTER = REFERENCE.replace("if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != 1001)\n        return 0;", "")
MICROSECONDS = REFERENCE.replace("bpf_log2l(bpf_ktime_get_ns() - *began)",
                                 "bpf_log2l((bpf_ktime_get_ns() - *began) / 1000)")
ENTRY_ONLY = REFERENCE.replace("TRACEPOINT_PROBE(syscalls, sys_exit_openat)", "int never_attached(void *ctx)")
TEMPLATE = REFERENCE.replace("dist.increment(bpf_log2l(bpf_ktime_get_ns() - *began));", "TODO")
# Alice's calls counted at their exit, each in the same bucket: a histogram of nothing.
FIXED_BUCKET = REFERENCE.replace("dist.increment(bpf_log2l(bpf_ktime_get_ns() - *began));", "dist.increment(15);")


def test_mutations_changed_the_reference():
    assert len({REFERENCE, NO_FILTER, MICROSECONDS, ENTRY_ONLY, TEMPLATE, FIXED_BUCKET}) == 6


def test_fentry_fexit_answer_passes(lab, clean_kernel):
    before = lab.prog_ids()
    passes(CHECKS["histogram"](lab, FENTRY_FEXIT))
    # The kernel frees a program behind a trampoline only after an RCU grace period: seconds under emulation.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(
            p["id"] not in before and p.get("name") == "do_sys_openat2" for p in lab.bpftool("prog", "show") or []):
        time.sleep(1)


def test_counting_everyone_fails_with_the_uid_filter_hint(lab, clean_kernel):
    fails(CHECKS["histogram"](lab, NO_FILTER), "== 1001")


def test_a_rescaled_latency_fails_with_the_nanoseconds_hint(lab, clean_kernel):
    fails(CHECKS["histogram"](lab, MICROSECONDS), "without dividing")


def test_a_fixed_bucket_is_caught_by_the_slow_open(lab, clean_kernel):
    fails(CHECKS["histogram"](lab, FIXED_BUCKET), "its new samples went to bucket(s) 15")


def test_one_end_only_fails_with_the_both_ends_hint(lab, clean_kernel):
    fails(CHECKS["histogram"](lab, ENTRY_ONLY), "needs both ends")


def test_printing_a_histogram_without_bpf_fails(lab, clean_kernel):
    text = "     ns : count\n 32768 -> 65535 : 93"
    fails(CHECKS["histogram"](lab, PRINTS_ONLY.format(text=text)), "no BPF program")


def test_the_template_is_unfinished(lab):
    fails(CHECKS["histogram"](lab, TEMPLATE), "replace the TODO")
