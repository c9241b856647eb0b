"""Chapter 9's self-check: a CO-RE program built against vmlinux.h that records the parent pid of every
execve passes in either style (ring buffer, hash map); a program without CO-RE relocations, one that
dereferences kernel pointers like bcc code, and one that records the wrong pid fail with their hints."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, solution

from .verdicts import fails, passes

HEAD = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n'
TAIL = 'char LICENSE[] SEC("license") = "GPL";\n'

# Another style: a hash map counting execs per parent, read in two steps with BPF_CORE_READ_INTO.
BY_PARENT_IN_A_HASH = HEAD + '''
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, u64);
} children_of SEC(".maps");

SEC("tp/syscalls/sys_enter_execve")
int count_by_parent(void *ctx) {
    struct task_struct *task = (void *)bpf_get_current_task(), *parent;
    u32 ppid;
    u64 one = 1, *count;
    BPF_CORE_READ_INTO(&parent, task, real_parent);
    BPF_CORE_READ_INTO(&ppid, parent, tgid);
    count = bpf_map_lookup_elem(&children_of, &ppid);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bpf_map_update_elem(&children_of, &ppid, &one, BPF_NOEXIST);
    return 0;
}
''' + TAIL

# Offsets measured on one kernel: right here, wrong on the next build. No relocation in the object.
FIXED_OFFSETS = HEAD + '''
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 64 * 1024);
} execs SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int record_parent(void *ctx) {
    void *task = (void *)bpf_get_current_task(), *parent;
    u32 ppid;
    bpf_probe_read_kernel(&parent, sizeof(parent), task + 2432);
    bpf_probe_read_kernel(&ppid, sizeof(ppid), parent + 2420);
    bpf_ringbuf_output(&execs, &ppid, sizeof(ppid), 0);
    return 0;
}
''' + TAIL


def test_a_hash_map_keyed_by_the_parent_passes(lab, clean_kernel):
    passes(CHECKS["core"](lab, BY_PARENT_IN_A_HASH))


def test_a_bcc_style_dereference_is_refused_with_a_hint(lab, clean_kernel):
    direct = solution("core").replace("BPF_CORE_READ(task, real_parent, tgid)", "task->real_parent->tgid")
    fails(CHECKS["core"](lab, direct), "dereferences a kernel pointer directly")


def test_the_process_own_pid_is_not_its_parent(lab, clean_kernel):
    own = solution("core").replace("BPF_CORE_READ(task, real_parent, tgid)", "BPF_CORE_READ(task, tgid)")
    fails(CHECKS["core"](lab, own), "pids of the 3 /bin/true processes themselves")


def test_the_grandparent_next_to_the_own_pid_is_told_as_it_is(lab, clean_kernel):
    """An answer that records its own pid and goes one real_parent too far: the hint names both."""
    grandparent = solution("core").replace("BPF_CORE_READ(task, real_parent, tgid)",
                                           "BPF_CORE_READ(task, real_parent, real_parent, tgid)")
    assert grandparent != solution("core")
    fails(CHECKS["core"](lab, grandparent), "the parent's own parent")


def test_fixed_offsets_are_not_co_re(lab, clean_kernel):
    fails(CHECKS["core"](lab, FIXED_OFFSETS), "no CO-RE relocation")


def test_the_template_is_unfinished(lab):
    template = (HEAD + 'SEC("tracepoint/syscalls/sys_enter_execve")\n'
                'int record_parent(void *ctx) {\n    TODO\n}\n' + TAIL)
    fails(CHECKS["core"](lab, template), "replace the TODO")
