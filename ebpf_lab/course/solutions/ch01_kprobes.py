# Chapter 1 exercise: print "open!" every time any process calls openat.
from bcc import BPF

b = BPF(text="""
int on_open(void *ctx) {
    bpf_trace_printk("open!");
    return 0;
}
""")
# The kernel function behind the syscall has an architecture prefix (__x64_sys_openat on x86-64).
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="on_open")
b.trace_print()
