# Chapter 7 exercise: count execve per UID in a map pinned at /sys/fs/bpf/ch07_counts, so that
# the count carries on from one run of the program to the next.
from time import sleep

from bcc import BPF

# BPF_TABLE_PINNED opens the map pinned at the path if there is one; if not, it creates the map and
# pins it there. Either way the pin keeps the map, and its counts, after this program ends.
b = BPF(text="""
BPF_TABLE_PINNED("hash", u32, u64, counts, 1024, "/sys/fs/bpf/ch07_counts");
int count_exec(void *ctx) {
    u32 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;  // the low 32 bits are the UID
    counts.increment(uid);
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="count_exec")
while True:
    sleep(1)
    print(" ".join(f"{k.value}: {v.value}" for k, v in sorted(b["counts"].items(), key=lambda kv: kv[0].value)))
