"""The chapter self-checks judge what the kernel did: each passes an answer
in another style, and fails wrong answers (printing the expected text from Python among them) with a hint.
Each reference solution passing is its chapter's last cell, which nbval runs: not run twice here."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, check_setup, solution

from .verdicts import PRINTS_ONLY, fails, passes


def test_setup_check_passes(lab):
    passes(check_setup(lab))


def test_todo_in_code_is_unfinished_but_a_todo_comment_is_not(lab):
    assert "replace the TODO" in CHECKS["maps"](lab, "b = BPF(text='TODO')\nTODO: attach").message
    assert "replace the TODO" in CHECKS["xdp"](lab, "int packets;\nTODO\n").message
    commented = "# TODO: later, try a kretprobe too\n" + solution("kprobes")
    passes(CHECKS["kprobes"](lab, commented))


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

EMPTY_KPROBE_PRINTING = '''
import time
from bcc import BPF
b = BPF(text="int on_open(void *ctx) { return 0; }")
b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="on_open")
while True:
    print("open!", flush=True)
    time.sleep(0.1)
'''


def test_kprobe_exercise(lab, clean_kernel):
    passes(CHECKS["kprobes"](lab, KPROBE_AS_TRACEPOINT))
    fails(CHECKS["kprobes"](lab, PRINTS_ONLY.format(text="open!")), "no BPF program was loaded")
    fails(CHECKS["kprobes"](lab, solution("kprobes").replace('"openat"', '"execve"')),
          "(program starts, not file opens)")
    not_attached = solution("kprobes").replace(
        'b.attach_kprobe(event=b.get_syscall_fnname("openat"), fn_name="on_open")',
        'b.load_func("on_open", BPF.KPROBE)')
    fails(CHECKS["kprobes"](lab, not_attached), "was loaded but attached nowhere")
    fails(CHECKS["kprobes"](lab, solution("kprobes").replace('"open!");', '"open!")')), "does not compile")
    # A hollow answer: an empty kprobe on openat, and the expected lines printed from Python.
    fails(CHECKS["kprobes"](lab, EMPTY_KPROBE_PRINTING), "never calls bpf_trace_printk")
    fails(CHECKS["kprobes"](lab, solution("kprobes").replace('"open!"', '"opened"')), "printed 0 'open!' line(s)")


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
    passes(CHECKS["maps"](lab, MAP_IN_ANOTHER_STYLE))
    fails(CHECKS["maps"](lab, PRINTS_ONLY.format(text="1001: 24 1002: 12")), "no BPF program was loaded")
    # The right map, and numbers printed that do not come from it.
    made_up = solution("maps").replace('print(" ".join(f"{k.value}: {v.value}"', 'print(" ".join(f"{k.value}: {v.value + 1}"')
    assert made_up != solution("maps")
    fails(CHECKS["maps"](lab, made_up), "no line your program printed gave those counts")
    fails(CHECKS["maps"](lab, solution("maps").replace(" & 0xFFFFFFFF;", ";")), "the keys hold the GID too")
    fails(CHECKS["maps"](lab, solution("maps").replace('"openat"', '"execve"')), "not file opens")
    per_process = solution("maps").replace("bpf_get_current_uid_gid() & 0xFFFFFFFF;", "bpf_get_current_pid_tgid() >> 32;")
    fails(CHECKS["maps"](lab, per_process), "key the map by the UID", "count every openat")


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


# A ring buffer in place on openat that carries nothing, and alice's filename printed from Python.
RINGBUF_CARRYING_NOTHING = '''
import time
from bcc import BPF
b = BPF(text="""
BPF_RINGBUF_OUTPUT(opens, 8);
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    u32 uid = bpf_get_current_uid_gid();
    if (uid == 4242)
        opens.ringbuf_output(&uid, sizeof(uid), 0);
    return 0;
}
""")
while True:
    print("/etc/hostname", flush=True)
    time.sleep(0.2)
'''

# Every user's filenames through the ring buffer, alice's picked out in Python.
UID_FILTER_IN_PYTHON = '''
from bcc import BPF
b = BPF(text="""
BPF_RINGBUF_OUTPUT(opens, 64);
struct event { u32 uid; char filename[64]; };
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    struct event e = {.uid = bpf_get_current_uid_gid()};
    bpf_probe_read_user_str(&e.filename, sizeof(e.filename), args->filename);
    opens.ringbuf_output(&e, sizeof(e), 0);
    return 0;
}
""")
def show(ctx, data, size):
    e = b["opens"].event(data)
    if e.uid == 1001:
        print(e.filename.decode())
b["opens"].open_ring_buffer(show)
while True:
    b.ring_buffer_poll(timeout=100)
'''


def test_ringbuf_exercise(lab, clean_kernel):
    passes(CHECKS["ringbuf"](lab, RINGBUF_RESERVE_SUBMIT))
    fails(CHECKS["ringbuf"](lab, PRINTS_ONLY.format(text="/etc/hostname")), "no BPF program was loaded")
    fails(CHECKS["ringbuf"](lab, solution("ringbuf").replace("!= 1001", "== 4242")),
          "bob's opens went through your ring buffer too")
    fails(CHECKS["ringbuf"](lab, perf_instead_of_ringbuf()), "perf_event_array, not a ring buffer")
    fails(CHECKS["ringbuf"](lab, RINGBUF_CARRYING_NOTHING), "nothing went through your ring buffer")
    fails(CHECKS["ringbuf"](lab, UID_FILTER_IN_PYTHON), "a filter in Python comes after the ring buffer")


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
    passes(CHECKS["tailcalls"](lab, TAILCALL_IN_ANOTHER_STYLE))
    fails(CHECKS["tailcalls"](lab, PRINTS_ONLY.format(text="openat!")), "no BPF program was loaded")
    # arm64's number for openat, hard-coded: on x86-64 that slot is another syscall's.
    hard_coded = solution("tailcalls").replace('i == NR["openat"]', "i == 56")
    fails(CHECKS["tailcalls"](lab, hard_coded), "holds the same program as other syscalls")
    never_attached = solution("tailcalls").replace('b.attach_raw_tracepoint(tp="sys_enter", fn_name="hello")',
                                                   'b.load_func("hello", BPF.RAW_TRACEPOINT)')
    fails(CHECKS["tailcalls"](lab, never_attached), "no raw tracepoint program on sys_enter")
    # The dispatch in place, openat's program silent, and the expected lines printed from Python.
    silent = solution("tailcalls").replace('bpf_trace_printk("openat!");', "").replace(
        "b.trace_print()", "import time\nwhile True:\n    print('openat!', flush=True)\n    time.sleep(0.1)")
    assert silent.count("openat!") == 1
    fails(CHECKS["tailcalls"](lab, silent), "never calls bpf_trace_printk")


# -- chapter 5: bytecode that must run right ---------------------------------------------------

def test_bytecode_exercise(lab, clean_kernel):
    passes(CHECKS["bytecode"](lab, "int answer(void *ctx) {\n"
                                        "    return (bpf_get_current_uid_gid() & 0xFFFFFFFF) ? 0 : 1;\n}\n"))
    fails(CHECKS["bytecode"](lab, "int answer(void *ctx) { return 1; }"),
          "ask the kernel who is running with bpf_get_current_uid_gid()")
    fails(CHECKS["bytecode"](lab, solution("bytecode").replace("uid == 0", "uid != 0")),
          "run by root it returned 0, by alice 1")
    fails(CHECKS["bytecode"](lab, "int answer(void *ctx) {\n"
                                       "    return (bpf_get_current_uid_gid() >> 32) == 0;\n}\n"),
          "it looked at the group")


# -- chapter 6: XDP and a global variable ------------------------------------------------------

def test_xdp_exercise_and_nothing_left_attached(lab, clean_kernel):
    right = solution("xdp")
    passes(CHECKS["xdp"](lab, right.replace("__sync_fetch_and_add(&packets, 1);", "packets += 1;")))
    # Never touched, `packets` may be dropped by the compiler altogether.
    fails(CHECKS["xdp"](lab, right.replace("    __sync_fetch_and_add(&packets, 1);", "")),
          "packets = 0", "no global variable named packets")
    fails(CHECKS["xdp"](lab, right.replace("return XDP_PASS;", "return XDP_DROP;")), "only 0 of 5 packets arrived")
    fails(CHECKS["xdp"](lab, right.replace("&packets, 1)", "&packets, 2)")), "packets = 10")
    fails(CHECKS["xdp"](lab, right.replace("return XDP_PASS;", "return XDP_PASS")), "clang could not compile")
    assert lab.bpftool("net", "list")[0]["xdp"] == []
    assert not lab.sh("find /sys/fs/bpf -type f")  # nothing pinned (tc and ip leave a directory and links)
