"""Chapter 7's self-check: the check's own kprobe counter pins a map; the answer, another program on the
sys_enter_execve tracepoint, must count on in it. It passes another style, fails the
chapter's own program and near misses with their hints, and never leaves a pin behind."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, solution
from ebpf_lab.course.exercises.ch07_syscalls_and_pinning import FIRST, PIN

from .verdicts import PRINTS_ONLY, fails, passes

# The increment written out with a lookup-or-init and an atomic add, and the map printed as a dict.
ANOTHER_STYLE = '''
import time
from bcc import BPF
b = BPF(text="""
BPF_TABLE_PINNED("hash", u32, u64, per_user, 1024, "/sys/fs/bpf/ch07_counts");
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 zero = 0, *n = per_user.lookup_or_try_init(&uid, &zero);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
""")
while True:
    time.sleep(0.5)
    print({k.value: v.value for k, v in b["per_user"].items()})
'''


def no_pins_left(lab) -> None:
    assert "ch07_" not in lab.sh("ls /sys/fs/bpf"), lab.sh("ls -l /sys/fs/bpf")


def test_unfinished_template_and_printing_only(lab, clean_kernel):
    template = 'from bcc import BPF\nb = BPF(text="""\nTODO: the pinned map\n""")\n'
    fails(CHECKS["pinning"](lab, template), "replace the TODO")
    fails(CHECKS["pinning"](lab, PRINTS_ONLY.format(text="1001: 5")), "no BPF program was loaded")
    no_pins_left(lab)


def test_another_style_passes(lab, clean_kernel):
    passes(CHECKS["pinning"](lab, ANOTHER_STYLE))
    no_pins_left(lab)


def test_near_misses_fail_with_their_hints(lab, clean_kernel):
    # The chapter's program again, as the first step ran it: not another program.
    fails(CHECKS["pinning"](lab, FIRST), "another program, on the sys_enter_execve tracepoint")
    own_map = solution("pinning").replace(f'BPF_TABLE_PINNED("hash", u32, u64, counts, 1024, "{PIN}")',
                                          "BPF_HASH(counts, u32, u64, 1024)")
    assert own_map != solution("pinning")
    fails(CHECKS["pinning"](lab, own_map), "counted in a map of its own")
    other_path = solution("pinning").replace(PIN, "/sys/fs/bpf/ch07_mine")
    fails(CHECKS["pinning"](lab, other_path), "counted in a map of its own")
    assert "ch07_mine" not in lab.sh("ls /sys/fs/bpf")  # the check removed the answer's own pin
    twice = solution("pinning").replace("counts.increment(uid);", "counts.increment(uid, 2);")
    assert twice != solution("pinning")
    fails(CHECKS["pinning"](lab, twice), "count each execve once")
    no_pins_left(lab)
