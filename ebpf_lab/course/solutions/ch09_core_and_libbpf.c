// Chapter 9 exercise: for every execve, send the parent's pid through a ring buffer, read the CO-RE way.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct exec_event {
    u32 pid;   // the process calling execve
    u32 ppid;  // its parent: task->real_parent->tgid
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 64 * 1024);
} execs SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int record_parent(void *ctx) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct exec_event *e = bpf_ringbuf_reserve(&execs, sizeof(*e), 0);
    if (!e)
        return 0;  // the buffer is full: drop this one
    e->pid = bpf_get_current_pid_tgid() >> 32;
    // Two relocated reads: the offsets of real_parent and tgid are fixed by libbpf for this kernel.
    e->ppid = BPF_CORE_READ(task, real_parent, tgid);
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
