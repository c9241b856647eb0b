"""The exercises' judgements, without a VM: from the evidence a check gathers to its verdict and its hint.

Each case is what the kernel showed for a kind of answer (right, near miss, hollow); tests/vm/test_course*.py
run real answers of each kind in the VM."""
from __future__ import annotations

import pytest

from ebpf_lab.course import CHECKS, EXERCISES
from ebpf_lab.course.evidence import PrintkLine, parse_printk, printed_by
from ebpf_lab.course.exercises import (ch01_kprobes, ch02_maps, ch03_perf_and_ring_buffers, ch04_tail_calls,
                                       ch05_bytecode_and_registers, ch06_bpftool, ch07_syscalls_and_pinning,
                                       ch08_verifier, ch09_core_and_libbpf, ch10_program_types, ch11_measuring,
                                       ch12_xdp_and_tc)
from ebpf_lab.course.observe import KernelView
from ebpf_lab.course.solutions import solution


def passed(verdict) -> str:
    assert verdict.passed, verdict
    return verdict.message


def failed(verdict, hint: str) -> str:
    assert not verdict.passed and hint in verdict.message, verdict
    return verdict.message


def test_one_module_per_chapter_each_with_its_solution():
    assert [e.__name__.rsplit(".", 1)[1][:4] for e in EXERCISES] == [f"ch{n:02}" for n in range(1, 13)]
    for exercise in EXERCISES:
        assert CHECKS[exercise.NAME] is exercise.check and solution(exercise.NAME)
    with pytest.raises(KeyError, match="there are: kprobes, maps"):
        solution("no-such-exercise")


TRACE = """\
# tracer: nop
           <...>-1234    [001] d..31   305.100000: bpf_trace_printk: open!
             cat-1234    [000] d..31   305.200000: bpf_trace_printk: open!
      python3.11-99      [001] d..31   305.300000: bpf_trace_printk: open!
 kworker/u4:1-7  (    7) [000] d..31   305.400000: bpf_trace_printk: Another syscall: 3
"""


def test_the_kernels_printk_lines_are_read_with_their_task():
    lines = parse_printk(TRACE)
    assert lines[0] == PrintkLine("<...>", 1234, "open!") and lines[3] == PrintkLine("kworker/u4:1", 7, "Another syscall: 3")
    assert printed_by(lines, {1234}, "open!") == 2 and printed_by(lines, {99, 7}, "Another") == 1


def test_kprobes_judges_the_bytecode_and_the_kernels_lines():
    failed(ch01_kprobes.judge("kprobe", "__x64_sys_openat", {"bpf_get_current_pid_tgid"}, 0),
           "never calls bpf_trace_printk")
    failed(ch01_kprobes.judge("kprobe", "__x64_sys_openat", {"bpf_trace_printk"}, 2), "printed 2 'open!' line(s)")
    assert "'open!' 40 times" in passed(ch01_kprobes.judge("tracepoint", "sys_enter_openat", {"bpf_trace_printk"}, 40))


def test_maps_judges_the_map_and_that_its_counts_were_printed():
    failed(ch02_maps.judge_counts({1001 | 1001 << 32: 80, 1002 | 1002 << 32: 40}), "the keys hold the GID too")
    failed(ch02_maps.judge_counts({1001: 8, 1002: 4}), "count every openat")   # execve, not openat
    failed(ch02_maps.judge_counts({1001: 80, 1002: 80}), "count every openat")
    assert ch02_maps.judge_counts({0: 400, 1001: 124, 1002: 62}) is None
    counts = {1001: 124, 1002: 62}
    assert ch02_maps.printed_counts("0: 400 1001: 124 1002: 62\n", counts)
    assert ch02_maps.printed_counts("uid=1001 opens=124\nuid=1002 opens=62\n", counts)
    assert not ch02_maps.printed_counts("1001: 24 1002: 12\n", counts)            # made up
    assert not ch02_maps.printed_counts("1001: 1240 1002: 62\n", counts)
    assert not ch02_maps.printed_counts("1001\n124 1002: 62\n", counts)          # not on one line
    failed(ch02_maps.judge_printed(counts, False), "no line your program printed gave those counts")
    passed(ch02_maps.judge_printed(counts, True))


RINGBUF_RIGHT = ch03_perf_and_ring_buffers.Steps(alice_bytes=81 * 72, bob_bytes=81 * 72, runs_after_alice=900,
                                                 runs_after_bob=1400, alice_opens=81, alice_printed=3, bob_printed=0)


@pytest.mark.parametrize("changes, hint", [
    ({"alice_bytes": 0, "bob_bytes": 0}, "nothing went through your ring buffer"),           # carries nothing
    ({"alice_bytes": 72, "bob_bytes": 72}, "fewer than one event each"),
    ({"bob_bytes": 81 * 72 + 2 * 40 * 72}, "a filter in Python comes after the ring buffer"),  # filter in Python
    ({"runs_after_bob": 900}, "did not run at all while bob opened files"),
    ({"bob_printed": 2}, "bob's file was printed 2 times"),
    ({"alice_printed": 0}, "printed 0 times for 3 runs"),
])
def test_ringbuf_judges_what_went_through_the_ring_buffer(changes, hint):
    passed(ch03_perf_and_ring_buffers.judge(RINGBUF_RIGHT))
    failed(ch03_perf_and_ring_buffers.judge(ch03_perf_and_ring_buffers.Steps(**{**RINGBUF_RIGHT.__dict__, **changes})),
           hint)


def test_tailcalls_judges_slots_bytecode_and_lines():
    slots = {nr: 5 for nr in range(500)} | {257: 6}
    right = ch04_tail_calls.Dispatch(slots, 257, {"bpf_trace_printk"}, 30, 0)
    passed(ch04_tail_calls.judge(right))
    judge = ch04_tail_calls.judge
    failed(judge(ch04_tail_calls.Dispatch({nr: 5 for nr in range(500) if nr != 257}, 257, set(), 0, 0)),
           "slot 257 (openat on this kernel) is empty")
    failed(judge(ch04_tail_calls.Dispatch({nr: 5 for nr in range(500)}, 257, {"bpf_trace_printk"}, 30, 0)),
           "holds the same program as other syscalls")
    failed(judge(ch04_tail_calls.Dispatch(dict(list(slots.items())[:100]) | {257: 6}, 257, {"bpf_trace_printk"}, 30, 9)),
           "printed 'Another syscall' 9 times")
    failed(judge(ch04_tail_calls.Dispatch(slots, 257, set(), 0, 0)), "never calls bpf_trace_printk")  # prints from Python
    failed(judge(ch04_tail_calls.Dispatch(slots, 257, {"bpf_trace_printk"}, 1, 0)), "'openat!' 1 time(s)")


def test_bytecode_judges_what_the_program_returned():
    passed(ch05_bytecode_and_registers.judge((1, 0, 1), ["bpf_get_current_uid_gid"], 6, 1))
    failed(ch05_bytecode_and_registers.judge((1, 1, 1), [], 2, 0), "ask the kernel who is running")
    failed(ch05_bytecode_and_registers.judge((1, 0, 0), ["bpf_get_current_uid_gid"], 6, 1), "it looked at the group")


def test_xdp_judges_the_global_and_the_packets():
    passed(ch06_bpftool.judge({"packets": 5}, 5, 5))
    failed(ch06_bpftool.judge({}, 5, 5), "no global variable named packets")
    failed(ch06_bpftool.judge({"packets": 0}, 5, 0), "only 0 of 5 packets arrived")
    failed(ch06_bpftool.judge({"packets": 10}, 5, 5), "packets = 10")


PINNED = ch07_syscalls_and_pinning.Second(
    pinned_before=40, pinned_after=40, progs=[{"id": 90, "type": "tracepoint"}], hooks={90: ["sys_enter_execve"]},
    maps_used={40}, entries={1001: 5}, still_loaded=set())


@pytest.mark.parametrize("changes, hint", [
    ({"progs": [{"id": 90, "type": "kprobe"}], "hooks": {90: ["__x64_sys_execve"]}},
     "another program, on the sys_enter_execve tracepoint"),                        # the chapter's program again
    ({"maps_used": {41}}, "not in the one pinned at /sys/fs/bpf/ch07_counts (id 40)"),  # a map of its own
    ({"pinned_after": None}, "was gone: leave the pin"),
    ({"pinned_after": 41}, "another one (id 41)"),
    ({"still_loaded": {90}}, "still loaded after it ended"),
    ({"entries": {1001: 3}}, "your program added nothing"),
    ({"entries": {1001: 2}}, "the count started again"),
    ({"entries": {1001 | 1001 << 32: 2, 1001: 3}}, "your program added nothing"),
    ({"entries": {}}, "alice's entry (key 1001) is gone"),
    ({"entries": {1001: 7}}, "count each execve once"),
])
def test_pinning_judges_the_second_program_and_the_pinned_map(changes, hint):
    assert "from 3 to 5" in passed(ch07_syscalls_and_pinning.judge(PINNED))
    failed(ch07_syscalls_and_pinning.judge(ch07_syscalls_and_pinning.Second(**{**PINNED.__dict__, **changes})), hint)


def test_verifier_judges_each_function_by_its_test_runs():
    assert ch08_verifier._judge_count_calls({"counts": {"0": 3, "1001": 2}}) is None
    assert "counter_table = {0: 0, 1001: 0}" in ch08_verifier._judge_count_calls({"counts": {"0": 0, "1001": 0}})
    assert ch08_verifier._judge_count_uid({"counts": {"0": 1, "1001": 2, "2047": 1}}) is None
    assert "skip the others" in ch08_verifier._judge_count_uid({"counts": {"0": 1, "1001": 2, "2047": 2}})
    right = {what: want for what, (_, want) in ch08_verifier.FRAMES.items()}
    assert ch08_verifier._judge_drop_icmp({"returns": right}) is None
    everything_dropped = {what: ch08_verifier.XDP_DROP for what in right}
    assert "a UDP packet got XDP_DROP" in ch08_verifier._judge_drop_icmp({"returns": everything_dropped})


def test_core_tells_what_the_records_held_instead_of_the_parent():
    words = ch09_core_and_libbpf
    record = lambda *pids: b"".join(p.to_bytes(4, "little") for p in pids).hex()  # noqa: E731
    report = {"parent": 500, "grandparent": 400, "children": [501, 502, 503], "maps": {},
              "ringbufs": {"execs": [record(c, 400) for c in (501, 502, 503)]}}
    found = words.judge_records(report)
    assert (found.where, found.own, found.grandparent) == (None, 3, 3)
    hint = words.missing_parent_hint(found, 500, 400)
    assert "held 400, the parent's own parent, next to the /bin/true processes' own pids" in hint
    own_only = words.judge_records({**report, "ringbufs": {"execs": [record(c, c) for c in (501, 502, 503)]}})
    assert "the pids of the 3 /bin/true processes themselves" in words.missing_parent_hint(own_only, 500, 400)
    right = words.judge_records({**report, "ringbufs": {"execs": [record(c, 500) for c in (501, 502, 503)]}})
    assert right.where == "your ring buffer 'execs' held it in 3 records"
    keyed = words.judge_records({**report, "ringbufs": {}, "maps": {"by_parent": {record(500): record(3, 0)}}})
    assert keyed.where == "your map 'by_parent' has it as a key"


UPROBES = ch10_program_types.Probes({7: 3, 19: 5, 42: 2}, [("uprobe", ch10_program_types.WORKER)],
                                    [{7: 3, 19: 5, 42: 2}])


def test_uprobes_judges_the_probe_and_the_counts_per_argument():
    passed(ch10_program_types.judge(UPROBES))
    judge, Probes = ch10_program_types.judge, ch10_program_types.Probes
    passed(judge(Probes(UPROBES.expected, [("uretprobe", ch10_program_types.WORKER)], UPROBES.maps)))
    failed(judge(Probes(UPROBES.expected, [("uprobe", "/bin/true")], UPROBES.maps)), "no uprobe of yours is on")
    failed(judge(Probes(UPROBES.expected, UPROBES.uprobes, [{0: 10}])), "key it by work's argument")
    failed(judge(Probes(UPROBES.expected, UPROBES.uprobes, [{7: 30, 19: 50, 42: 20}])), "add exactly 1 per call")
    failed(judge(Probes(UPROBES.expected, UPROBES.uprobes, [])), "uses no hash map")
    assert len(ch10_program_types.draw(__import__("random").Random(1))) == 3


HIST = ch11_measuring.Histogram(after_runs={13: 5, 14: 40, 15: 30, 17: 6}, after_slow_open={13: 6, 14: 52, 15: 34, 17: 6, 29: 1},
                                expected=81, slow_seconds=0.41)


def test_histogram_judges_counts_buckets_and_the_slow_open():
    assert "landed in bucket 29" in passed(ch11_measuring.judge(HIST))
    judge, Histogram = ch11_measuring.judge, ch11_measuring.Histogram
    failed(judge(Histogram({15: 81}, {15: 98}, 81, 0.41)), "its new samples went to bucket(s) 15")      # increment(15)
    failed(judge(Histogram({13: 81}, {13: 81}, 81, 0.41)), "it added no sample")
    failed(judge(Histogram({9: 40, 10: 41}, {9: 52, 10: 45, 19: 1}, 81, 0.41)), "bucket(s) 9, 10, 19")  # microseconds
    failed(judge(Histogram({14: 20}, {14: 20}, 81, 0.41)), "20 samples for alice's 81 openat calls")
    failed(judge(Histogram({14: 400}, {14: 400}, 81, 0.41)), "the others are other users'")
    failed(judge(Histogram({3: 81}, {3: 81}, 81, 0.41)), "store the log2 of the difference in nanoseconds")
    failed(judge(Histogram({40: 81}, {40: 81}, 81, 0.41)), "not of a timestamp")


def test_histogram_finds_both_ends_of_openat_and_histogram_maps():
    view = KernelView(progs=[{"id": 1}, {"id": 2}, {"id": 3}],
                      hooks=[{"prog_id": 1, "tracepoint": "sys_enter_openat"},
                             {"prog_id": 2, "fd_type": "kretprobe", "func": "__x64_sys_openat"},
                             {"prog_id": 3, "attach_type": "trace_fexit"}],
                      maps={9: {"id": 9, "type": "array", "max_entries": 64, "entries": {14: 3, 15: 0}},
                            8: {"id": 8, "type": "hash", "max_entries": 10240, "entries": {123456: 9}}})
    starts, ends = ch11_measuring._ends(view)
    assert [p["id"] for p in starts] == [1] and [p["id"] for p in ends] == [2, 3]
    view.progs[0]["map_ids"] = [8, 9]
    assert ch11_measuring.histograms(view, view.progs) == {9: {14: 3}}


def test_xdp_drop_judges_test_runs_with_ip_options_and_the_veth_pair():
    codes = {name: want for name, _, want in ch12_xdp_and_tc.CASES}
    assert ch12_xdp_and_tc._judge_test_runs(list(codes.values())) is None
    naive = dict(codes, **{"UDP to 7777 with IP options": ch12_xdp_and_tc.XDP_PASS})  # the UDP header at ip + 1
    failed(ch12_xdp_and_tc._judge_test_runs(list(naive.values())), "not at ip + 1")
    result = {"received": {7777: 0, 7778: 5, 7779: 5}, "sent": {"tcp_connected": True}}
    passed(ch12_xdp_and_tc.judge_exchange(result))
    failed(ch12_xdp_and_tc.judge_exchange({**result, "received": {7777: 5, 7778: 5, 7779: 5}}), "5 of 10 datagrams")
    failed(ch12_xdp_and_tc.judge_exchange({**result, "received": {7777: 0, 7778: 5, 7779: 0}}), "with IPv4 options")
