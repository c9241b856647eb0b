# Chapter 11 exercise: the latency of alice's openat calls, as a log2 histogram of nanoseconds,
# timed between the syscall's two tracepoints; user space prints the histogram every second.
from time import sleep

from bcc import BPF

b = BPF(text="""
BPF_HASH(start, u64, u64);  // thread (pid_tgid) -> when its openat began
BPF_HISTOGRAM(dist);        // bucket log2(ns) -> calls

TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != 1001)
        return 0;
    u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
    start.update(&id, &now);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat) {
    u64 id = bpf_get_current_pid_tgid();
    u64 *began = start.lookup(&id);
    if (began == 0)
        return 0;  // its entry was not alice's, or came before we attached
    dist.increment(bpf_log2l(bpf_ktime_get_ns() - *began));
    start.delete(&id);
    return 0;
}
""")
while True:
    sleep(1)
    b["dist"].print_log2_hist("ns")
