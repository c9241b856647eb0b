# Chapter 7 exercise: a second program, on the sys_enter_execve tracepoint, counts on in the map that the
# chapter's kprobe counter pinned at /sys/fs/bpf/ch07_counts.
from time import sleep

from bcc import BPF

# BPF_TABLE_PINNED opens the map pinned at the path when there is one (its key and value types must be
# the pinned map's: u32 and u64); only when the path is free would it create and pin a new one.
b = BPF(text="""
BPF_TABLE_PINNED("hash", u32, u64, counts, 1024, "/sys/fs/bpf/ch07_counts");
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 uid = bpf_get_current_uid_gid();  // the low 32 bits are the UID
    counts.increment(uid);
    return 0;
}
""")
while True:
    sleep(1)
    print(" ".join(f"{k.value}: {v.value}" for k, v in sorted(b["counts"].items(), key=lambda kv: kv[0].value)))
