# Chapter 2 exercise: count openat calls per UID in a hash map; user space prints the map each second.
from time import sleep

from bcc import BPF

b = BPF(text="""
BPF_HASH(opens);
int count_open(void *ctx) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;  // the low 32 bits are the UID
    opens.increment(uid);
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="count_open")
while True:
    sleep(1)
    print(" ".join(f"{k.value}: {v.value}" for k, v in sorted(b["opens"].items(), key=lambda kv: kv[0].value)))
