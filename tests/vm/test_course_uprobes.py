"""Chapter 10's self-check: a uprobe counting the calls of work() per argument in a program the check builds,
with numbers drawn afresh for every try. It passes a uretprobe keyed by the return value
(work returns its argument), and fails near misses and answers that print without a probe."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, solution
from ebpf_lab.course.exercises.ch10_program_types import WORKER

from .verdicts import PRINTS_ONLY, fails, passes

RETURN_VALUE = '''
from time import sleep
from bcc import BPF
b = BPF(text="""
#include <uapi/linux/ptrace.h>
BPF_HASH(by_result, long, u32);
int on_return(struct pt_regs *ctx) {
    long n = PT_REGS_RC(ctx);
    u32 one = 1, *seen = by_result.lookup(&n);
    if (seen)
        __sync_fetch_and_add(seen, 1);
    else
        by_result.update(&n, &one);
    return 0;
}
""")
b.attach_uretprobe(name="/tmp/ch10_exercise/worker", sym="work", fn_name="on_return")
while True:
    sleep(1)
'''


def test_a_uretprobe_passes(lab, clean_kernel):
    passes(CHECKS["uprobes"](lab, RETURN_VALUE))


def test_near_misses_and_printing_fail_with_their_hints(lab, clean_kernel):
    reference = solution("uprobes")
    fails(CHECKS["uprobes"](lab, reference.replace('sym="work"', 'sym="main"')), "key it by work's argument",
          "add exactly 1 per call")
    one_key = reference.replace("u64 n = PT_REGS_PARM1(ctx);", "u64 n = 0;")
    assert one_key != reference
    fails(CHECKS["uprobes"](lab, one_key), "key it by work's argument")
    fails(CHECKS["uprobes"](lab, reference.replace(WORKER, "/bin/true").replace('sym="work"', 'sym="main"')),
          "no uprobe of yours is on", "failed in the VM")
    fails(CHECKS["uprobes"](lab, PRINTS_ONLY.format(text="{7: 3, 19: 5, 42: 2}")), "no BPF program was loaded")
