"""The chapter self-checks judge real runs: a right answer passes, a wrong one gets a hint."""
from __future__ import annotations

from ebpf_lab.course import check_kprobe_exercise, check_map_exercise, check_setup

KPROBE_ANSWER = '''
from bcc import BPF
b = BPF(text="""
int on_open(void *ctx) {
    bpf_trace_printk("open!");
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="on_open")
b.trace_print()
'''

MAP_ANSWER = '''
from bcc import BPF
from time import sleep
b = BPF(text="""
BPF_HASH(opens);
int count_open(void *ctx) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    opens.increment(uid);
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="count_open")
while True:
    sleep(1)
    print(" ".join(f"{k.value}: {v.value}" for k, v in b["opens"].items()))
'''


def test_setup_check_passes(lab):
    verdict = check_setup(lab)
    assert verdict.passed, verdict


def test_kprobe_exercise(lab, clean_kernel):
    assert check_kprobe_exercise(lab, KPROBE_ANSWER).passed
    wrong = check_kprobe_exercise(lab, KPROBE_ANSWER.replace('"openat"', '"execve"'))
    assert not wrong.passed and "is the kprobe on execve?" in wrong.message
    broken = check_kprobe_exercise(lab, KPROBE_ANSWER.replace('"open!");', '"open!")'))
    assert not broken.passed and "does not compile" in broken.message


def test_map_exercise(lab, clean_kernel):
    verdict = check_map_exercise(lab, MAP_ANSWER)
    assert verdict.passed, verdict
    wrong = check_map_exercise(lab, MAP_ANSWER.replace("bpf_get_current_uid_gid() & 0xFFFFFFFF", "0"))
    assert not wrong.passed and "bpf_get_current_uid_gid" in wrong.message


def test_todo_answers_are_not_run(lab):
    assert "replace the TODO" in check_map_exercise(lab, "TODO").message

RINGBUF_ANSWER = '''
from bcc import BPF
b = BPF(text="""
BPF_RINGBUF_OUTPUT(opens, 8);
struct event { char filename[64]; };
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != 1001)
        return 0;
    struct event e = {};
    bpf_probe_read_user_str(&e.filename, sizeof(e.filename), args->filename);
    opens.ringbuf_output(&e, sizeof(e), 0);
    return 0;
}
""")
def show(ctx, data, size):
    print(b["opens"].event(data).filename.decode())
b["opens"].open_ring_buffer(show)
while True:
    b.ring_buffer_poll(timeout=100)
'''


def test_ringbuf_exercise(lab, clean_kernel):
    from ebpf_lab.course import check_ringbuf_exercise

    verdict = check_ringbuf_exercise(lab, RINGBUF_ANSWER)
    assert verdict.passed, verdict
    unfiltered = RINGBUF_ANSWER.replace("!= 1001", "== 4242")
    assert "bob's opens came through too" in check_ringbuf_exercise(lab, unfiltered).message


def test_tailcall_exercise(lab, clean_kernel):
    from ebpf_lab.course import check_tailcall_exercise
    from tests.programs import TAILCALL_ANSWER

    verdict = check_tailcall_exercise(lab, TAILCALL_ANSWER)
    assert verdict.passed, verdict
    partial = TAILCALL_ANSWER.replace("openat.fd if i == NR[\"openat\"] else ignore.fd", "openat.fd")
    partial = partial.replace("for i in range(len(table)):", "for i in [NR['openat']]:")
    assert "other syscalls printed 'Another syscall'" in check_tailcall_exercise(lab, partial).message


def test_bytecode_exercise(lab):
    from ebpf_lab.course import check_bytecode_exercise

    right = "int answer(void *ctx) {\n    u32 uid = bpf_get_current_uid_gid();\n    if (uid == 0)\n        return 1;\n    return 0;\n}\n"
    verdict = check_bytecode_exercise(lab, right)
    assert verdict.passed, verdict
    no_helper = check_bytecode_exercise(lab, "int answer(void *ctx) { return 1; }")
    assert not no_helper.passed and "bpf_get_current_uid_gid()" in no_helper.message


def test_xdp_exercise_and_nothing_left_attached(lab, clean_kernel):
    from ebpf_lab.course import check_xdp_exercise

    right = ("#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nint packets = 0;\n"
             "SEC(\"xdp\")\nint count(struct xdp_md *ctx) {\n    packets++;\n    return XDP_PASS;\n}\n"
             "char LICENSE[] SEC(\"license\") = \"GPL\";\n")
    verdict = check_xdp_exercise(lab, right)
    assert verdict.passed, verdict
    assert "packets" in check_xdp_exercise(lab, right.replace("    packets++;\n", "")).message
    assert "clang could not compile" in check_xdp_exercise(lab, right.replace("packets++;", "packets++")).message
    assert lab.bpftool("net", "list")[0]["xdp"] == []
    assert not lab.sh("ls /sys/fs/bpf")
