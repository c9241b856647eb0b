"""Chapter 7's self-check: a per-UID execve counter whose pinned map carries the count from one run of the
answer to the next. It passes the reference and another style, fails near misses with their hints, and
never leaves a pin behind."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, check_pinning_exercise, solution
from ebpf_lab.course.pinning_check import PIN

from .verdicts import fails, passes

PRINTS_ONLY = "import time\nwhile True:\n    print('1001: 5', flush=True)\n    time.sleep(0.2)\n"

# A tracepoint instead of a kprobe, u64 keys and values, and the increment written out.
PINNED_TRACEPOINT = '''
import time
from bcc import BPF
b = BPF(text="""
BPF_TABLE_PINNED("hash", u64, u64, per_user, 4096, "/sys/fs/bpf/ch07_counts");
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF, zero = 0;
    u64 *n = per_user.lookup_or_try_init(&uid, &zero);
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


def test_pinning_is_registered_with_its_solution():
    assert CHECKS["pinning"] is check_pinning_exercise
    assert PIN in solution("pinning")


def test_unfinished_template_and_printing_only(lab, clean_kernel):
    template = 'from bcc import BPF\nb = BPF(text="""\nTODO: a pinned map\n""")\n'
    fails(check_pinning_exercise(lab, template), "replace the TODO")
    fails(check_pinning_exercise(lab, PRINTS_ONLY), "no BPF program was loaded")
    no_pins_left(lab)


def test_reference_and_another_style_pass(lab, clean_kernel):
    verdict = passes(check_pinning_exercise(lab, solution("pinning")))
    assert "from 3 to 5" in verdict.message
    no_pins_left(lab)
    passes(check_pinning_exercise(lab, PINNED_TRACEPOINT))
    no_pins_left(lab)


def test_near_misses_fail_with_their_hints(lab, clean_kernel):
    unpinned = solution("pinning").replace(f'BPF_TABLE_PINNED("hash", u32, u64, counts, 1024, "{PIN}")',
                                           "BPF_HASH(counts, u32, u64, 1024)")
    assert unpinned != solution("pinning")
    fails(check_pinning_exercise(lab, unpinned), "nothing was pinned at")
    wrong_path = solution("pinning").replace(PIN, "/sys/fs/bpf/ch07_count")
    fails(check_pinning_exercise(lab, wrong_path), "pinned at /sys/fs/bpf/ch07_count, not at")
    no_pins_left(lab)  # the check removed the learner's pin too
    per_process = solution("pinning").replace("bpf_get_current_uid_gid() & 0xFFFFFFFF",
                                              "bpf_get_current_pid_tgid() >> 32")
    assert per_process != solution("pinning")
    fails(check_pinning_exercise(lab, per_process), "key the map by the UID", "ran /bin/true")
    no_pins_left(lab)
