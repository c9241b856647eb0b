"""BCC programs the tests run in the VM: the notes' own code, verbatim where possible."""

HELLO = r'''#!/bin/python
from bcc import BPF

program = r"""
int hello(void *ctx){
  bpf_trace_printk("Hello, World!");
  return 0;
}
"""
b = BPF(text=program)
syscall = b.get_syscall_fnname("execve")
b.attach_kprobe(event=syscall, fn_name="hello")

b.trace_print()
'''

HASH_MAP = r'''#!/usr/bin/python3
from bcc import BPF
from time import sleep
program = r"""
BPF_HASH(counter_table);
int hello(void *ctx){
    u64 uid;
    u64 counter = 0;
    u64 *p;

    uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    p = counter_table.lookup(&uid);
    if (p != 0){
        counter = *p;
    }
    counter++;
    counter_table.update(&uid, &counter);
    return 0;
}
"""
b = BPF(text=program)
syscall = b.get_syscall_fnname("execve")
b.attach_kprobe(event=syscall, fn_name="hello")
while True:
    sleep(2)
    s = ""
    for k,v in b["counter_table"].items():
        s += f"ID {k.value}: {v.value}\t"
    print(s)
'''

NULL_DEREF = r'''from bcc import BPF
b = BPF(text="""
BPF_HASH(h, u32, u64);
int hello(void *ctx) {
    u32 key = 0;
    u64 *value = h.lookup(&key);
    return *value;
}
""")
b.load_func("hello", BPF.KPROBE)
'''

# A BCC program that stays loaded until interrupted and sends its own bytecode (from dump_func).
HELLO_LOADED = r'''from bcc import BPF
import time
b = BPF(text=r"""
int hello(void *ctx) {
    bpf_trace_printk("Hello, World!");
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="hello")
emit("bytecode", b.dump_func("hello").hex())
while True:
    time.sleep(1)
'''

# The book's XDP program with a global counter: built with clang, loaded with bpftool.
XDP_HELLO = r'''#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int counter = 0;
int step = 1;

SEC("xdp")
int hello(struct xdp_md *ctx) {
    bpf_printk("Hello World %d", counter);
    counter += step;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
'''
