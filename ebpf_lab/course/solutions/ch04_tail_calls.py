# Chapter 4 exercise: dispatch sys_enter by syscall number; only openat prints, every other slot is a no-op.
import ctypes as ct

from bcc import BPF
from labtools import syscall_numbers

NR = syscall_numbers("openat")  # derived from this kernel's headers: numbers differ per architecture
b = BPF(text="""
BPF_PROG_ARRAY(syscall, 500);
int hello(struct bpf_raw_tracepoint_args *ctx) {
    int opcode = ctx->args[1];
    syscall.call(ctx, opcode);
    bpf_trace_printk("Another syscall: %d", opcode);
    return 0;
}
int on_openat(void *ctx) {
    bpf_trace_printk("openat!");
    return 0;
}
int ignore_opcode(void *ctx) {
    return 0;
}
""")
ignore = b.load_func("ignore_opcode", BPF.RAW_TRACEPOINT)
openat = b.load_func("on_openat", BPF.RAW_TRACEPOINT)
table = b.get_table("syscall")
for i in range(len(table)):
    table[ct.c_int(i)] = ct.c_int(openat.fd if i == NR["openat"] else ignore.fd)
# Attach only once the array is full: a syscall meeting an empty slot falls through to "Another syscall".
b.attach_raw_tracepoint(tp="sys_enter", fn_name="hello")
b.trace_print()
