"""The chapter self-checks judge what the kernel did: each passes its reference solution and an answer
in another style, and fails wrong answers (printing the expected text from Python among them) with a hint."""
from __future__ import annotations

import pytest

from ebpf_lab.course import (check_bytecode_exercise, check_kprobe_exercise, check_map_exercise,
                             check_ringbuf_exercise, check_setup, check_tailcall_exercise, check_xdp_exercise,
                             solution)

from .verdicts import PRINTS_ONLY, fails, passes


def test_setup_check_passes(lab):
    passes(check_setup(lab))


def test_every_exercise_has_a_solution_to_show():
    assert {"kprobes", "maps", "ringbuf", "tailcalls", "bytecode", "xdp"} <= set(
        __import__("ebpf_lab.course.solutions", fromlist=["EXERCISES"]).EXERCISES)
    with pytest.raises(KeyError, match="there are: "):
        solution("no-such-exercise")


def test_todo_in_code_is_unfinished_but_a_todo_comment_is_not(lab):
    assert "replace the TODO" in check_map_exercise(lab, "b = BPF(text='TODO')\nTODO: attach").message
    assert "replace the TODO" in check_xdp_exercise(lab, "int packets;\nTODO\n").message
    commented = "# TODO: later, try a kretprobe too\n" + solution("kprobes")
    passes(check_kprobe_exercise(lab, commented))


# -- chapter 1: a kprobe on openat -------------------------------------------------------------

KPROBE_AS_TRACEPOINT = '''
from bcc import BPF
b = BPF(text="""
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    bpf_trace_printk("open! %d", args->flags);
    return 0;
}
""")
while True:
    task, pid, cpu, flags, ts, msg = b.trace_fields()
    print(msg.decode())
'''

def test_kprobe_exercise(lab, clean_kernel):
    passes(check_kprobe_exercise(lab, solution("kprobes")))
    passes(check_kprobe_exercise(lab, KPROBE_AS_TRACEPOINT))
    fails(check_kprobe_exercise(lab, PRINTS_ONLY.format(text="open!")), "no BPF program was loaded")
    fails(check_kprobe_exercise(lab, solution("kprobes").replace('"openat"', '"execve"')),
          "(program starts, not file opens)")
    not_attached = solution("kprobes").replace(
        'b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="on_open")',
        'b.load_func("on_open", BPF.KPROBE)')
    fails(check_kprobe_exercise(lab, not_attached), "was loaded but attached nowhere")
    fails(check_kprobe_exercise(lab, solution("kprobes").replace('"open!");', '"open!")')), "does not compile")


# -- chapter 2: per-UID counts in a hash map ---------------------------------------------------

MAP_IN_ANOTHER_STYLE = '''
import time
from bcc import BPF
b = BPF(text="""
BPF_HASH(per_user, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    u32 uid = bpf_get_current_uid_gid();
    u64 zero = 0, *n = per_user.lookup_or_try_init(&uid, &zero);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
""")
while True:
    time.sleep(0.5)
    for uid, n in b["per_user"].items():
        print(f"uid={uid.value} opens={n.value}")
'''


def test_map_exercise(lab, clean_kernel):
    passes(check_map_exercise(lab, solution("maps")))
    passes(check_map_exercise(lab, MAP_IN_ANOTHER_STYLE))
    fails(check_map_exercise(lab, PRINTS_ONLY.format(text="1001: 24 1002: 12")), "no BPF program was loaded")
    fails(check_map_exercise(lab, solution("maps").replace(" & 0xFFFFFFFF;", ";")), "the keys hold the GID too")
    fails(check_map_exercise(lab, solution("maps").replace('"openat"', '"execve"')), "not file opens")
    per_process = solution("maps").replace("bpf_get_current_uid_gid() & 0xFFFFFFFF;", "bpf_get_current_pid_tgid() >> 32;")
    fails(check_map_exercise(lab, per_process), "key the map by the UID", "count every openat")


# -- chapter 3: a ring buffer ------------------------------------------------------------------

RINGBUF_RESERVE_SUBMIT = '''
from bcc import BPF
b = BPF(text="""
#include <uapi/linux/ptrace.h>
BPF_RINGBUF_OUTPUT(events, 4);
struct event { u32 uid; char path[80]; };
int syscall__openat(struct pt_regs *ctx, int dfd, const char __user *filename) {
    u32 uid = bpf_get_current_uid_gid();
    if (uid != 1001)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e)
        return 0;
    e->uid = uid;
    bpf_probe_read_user_str(e->path, sizeof(e->path), filename);
    events.ringbuf_submit(e, 0);
    return 0;
}
""")
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="syscall__openat")
b["events"].open_ring_buffer(lambda ctx, data, size: print(b["events"].event(data).path.decode()))
while True:
    b.ring_buffer_poll(timeout=200)
'''


def perf_instead_of_ringbuf() -> str:
    """The reference answer with a perf buffer in place of the ring buffer."""
    return (solution("ringbuf").replace("BPF_RINGBUF_OUTPUT(opens, 8);", "BPF_PERF_OUTPUT(opens);")
            .replace("opens.ringbuf_output(&e, sizeof(e), 0);", "opens.perf_submit(args, &e, sizeof(e));")
            .replace('b["opens"].open_ring_buffer(show)', 'b["opens"].open_perf_buffer(lambda cpu, d, n: show(cpu, d, n))')
            .replace("b.ring_buffer_poll(timeout=100)", "b.perf_buffer_poll(timeout=100)"))


def test_ringbuf_exercise(lab, clean_kernel):
    passes(check_ringbuf_exercise(lab, solution("ringbuf")))
    passes(check_ringbuf_exercise(lab, RINGBUF_RESERVE_SUBMIT))
    fails(check_ringbuf_exercise(lab, PRINTS_ONLY.format(text="/etc/hostname")), "no BPF program was loaded")
    fails(check_ringbuf_exercise(lab, solution("ringbuf").replace("!= 1001", "== 4242")),
          "bob's file came through")
    fails(check_ringbuf_exercise(lab, perf_instead_of_ringbuf()), "perf_event_array, not a ring buffer")


# -- chapter 4: tail calls ---------------------------------------------------------------------

TAILCALL_IN_ANOTHER_STYLE = '''
import ctypes as ct
from bcc import BPF
from labtools import syscall_numbers
openat_nr = syscall_numbers("openat")["openat"]
b = BPF(text="""
BPF_PROG_ARRAY(progs, 512);
int dispatch(struct bpf_raw_tracepoint_args *ctx) {
    progs.call(ctx, (int)ctx->args[1]);
    bpf_trace_printk("Another syscall");
    return 0;
}
int openat_prog(void *ctx) { bpf_trace_printk("openat!"); return 0; }
int quiet(void *ctx) { return 0; }
""")
fds = {name: b.load_func(name, BPF.RAW_TRACEPOINT).fd for name in ("openat_prog", "quiet")}
progs = b["progs"]
for nr in range(512):
    progs[ct.c_int(nr)] = ct.c_int(fds["openat_prog" if nr == openat_nr else "quiet"])
b.attach_raw_tracepoint(tp="sys_enter", fn_name="dispatch")
b.trace_print()
'''


def test_tailcall_exercise(lab, clean_kernel):
    passes(check_tailcall_exercise(lab, solution("tailcalls")))
    passes(check_tailcall_exercise(lab, TAILCALL_IN_ANOTHER_STYLE))
    fails(check_tailcall_exercise(lab, PRINTS_ONLY.format(text="openat!")), "no BPF program was loaded")
    # arm64's number for openat, hard-coded: on x86-64 that slot is another syscall's.
    hard_coded = solution("tailcalls").replace('i == NR["openat"]', "i == 56")
    fails(check_tailcall_exercise(lab, hard_coded), "holds the same program as other syscalls")
    never_attached = solution("tailcalls").replace('b.attach_raw_tracepoint(tp="sys_enter", fn_name="hello")',
                                                   'b.load_func("hello", BPF.RAW_TRACEPOINT)')
    fails(check_tailcall_exercise(lab, never_attached), "no raw tracepoint program on sys_enter")


# -- chapter 5: bytecode that must run right ---------------------------------------------------

def test_bytecode_exercise(lab, clean_kernel):
    passes(check_bytecode_exercise(lab, solution("bytecode")))
    passes(check_bytecode_exercise(lab, "int answer(void *ctx) {\n"
                                        "    return (bpf_get_current_uid_gid() & 0xFFFFFFFF) ? 0 : 1;\n}\n"))
    fails(check_bytecode_exercise(lab, "int answer(void *ctx) { return 1; }"),
          "ask the kernel who is running with bpf_get_current_uid_gid()")
    fails(check_bytecode_exercise(lab, solution("bytecode").replace("uid == 0", "uid != 0")),
          "run by root it returned 0, by alice 1")
    fails(check_bytecode_exercise(lab, "int answer(void *ctx) {\n"
                                       "    return (bpf_get_current_uid_gid() >> 32) == 0;\n}\n"),
          "it looked at the group")


# -- chapter 6: XDP and a global variable ------------------------------------------------------

def test_xdp_exercise_and_nothing_left_attached(lab, clean_kernel):
    right = solution("xdp")
    passes(check_xdp_exercise(lab, right))
    passes(check_xdp_exercise(lab, right.replace("__sync_fetch_and_add(&packets, 1);", "packets += 1;")))
    # Never touched, `packets` may be dropped by the compiler altogether.
    fails(check_xdp_exercise(lab, right.replace("    __sync_fetch_and_add(&packets, 1);", "")),
          "packets = 0", "no global variable named packets")
    fails(check_xdp_exercise(lab, right.replace("return XDP_PASS;", "return XDP_DROP;")), "only 0 of 5 packets arrived")
    fails(check_xdp_exercise(lab, right.replace("&packets, 1)", "&packets, 2)")), "packets = 10")
    fails(check_xdp_exercise(lab, right.replace("return XDP_PASS;", "return XDP_PASS")), "clang could not compile")
    assert lab.bpftool("net", "list")[0]["xdp"] == []
    assert not lab.sh("ls /sys/fs/bpf")
