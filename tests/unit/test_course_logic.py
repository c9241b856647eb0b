"""Self-check logic that needs no VM: what counts as unfinished, reading bpftool's views."""
from ebpf_lab.course.verdict import unfinished
from ebpf_lab.course.observe import KernelView, _int


def test_todo_in_code_is_unfinished_but_not_in_comments():
    assert unfinished("x = 1\nTODO: fill the array\n") is not None
    assert unfinished("BPF(text='''\nint f(void *ctx) {\n    TODO\n}''')") is not None
    assert unfinished("# TODO: try a kretprobe next\nx = 1  # TODO later\n// TODO in C\n") is None
    assert unfinished("TODOS = 3") is None  # a word that merely starts with TODO


def test_map_entries_are_little_endian_integers():
    assert _int(["0xe9", "0x03", "0x00", "0x00"]) == 1001
    assert _int(["0xe9", "0x03", "0x00", "0x00", "0xe9", "0x03", "0x00", "0x00"]) == 1001 | 1001 << 32


def test_where_programs_are_attached_comes_from_perf_and_link_listings():
    view = KernelView(
        progs=[{"id": 7, "type": "kprobe"}, {"id": 8, "type": "raw_tracepoint"}, {"id": 9, "type": "kprobe"}],
        hooks=[{"prog_id": 7, "fd_type": "kprobe", "func": "__x64_sys_openat"},
               {"prog_id": 8, "type": "raw_tracepoint", "tp_name": "sys_enter"}])
    assert view.attached() == [({"id": 7, "type": "kprobe"}, "__x64_sys_openat"),
                               ({"id": 8, "type": "raw_tracepoint"}, "sys_enter")]
    assert view.hooked({"id": 9}) == []
