# Chapter 10 exercise: count the calls of work() in /tmp/ch10_exercise/worker, per argument, with a uprobe.
from time import sleep

from bcc import BPF

b = BPF(text="""
#include <uapi/linux/ptrace.h>
BPF_HASH(calls, u64, u64);  // work's argument -> how many calls
int on_work(struct pt_regs *ctx) {
    u64 n = PT_REGS_PARM1(ctx);  // the first argument, from the saved registers (rdi on x86-64)
    calls.increment(n);
    return 0;
}
""")
# A uprobe is attached to a file and an offset in it: bcc finds work's offset from the symbol table.
b.attach_uprobe(name="/tmp/ch10_exercise/worker", sym="work", fn_name="on_work")
while True:
    sleep(1)
    print({k.value: v.value for k, v in b["calls"].items()})
