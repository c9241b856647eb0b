"""Reading strace output: calls, their struct fields, and the brief form a notebook prints."""
from ebpf_lab.inspect.strace import parse_strace, split_top

# Lines from `strace -f -v -e trace=bpf,perf_event_open,ioctl python3 prog.py` in the lab VM (shortened).
TRACE = r'''606   ioctl(3, TCGETS, 0x7ffde9ed7dd0)  = -1 ENOTTY (Inappropriate ioctl for device)
606   bpf(BPF_OBJ_GET, {pathname="/sys/fs/bpf/ch07_demo", bpf_fd=0, file_flags=0}, 16) = -1 ENOENT (No such file or directory)
606   bpf(BPF_BTF_LOAD, {btf="\237\353\1\0\30\0\"x,{\0"..., btf_log_buf=NULL, btf_size=2071, btf_log_size=0, btf_log_level=0}, 28) = 3
606   bpf(BPF_MAP_CREATE, {map_type=BPF_MAP_TYPE_HASH, key_size=4, value_size=8, max_entries=1024, map_flags=0, inner_map_fd=0, map_name="execs", map_ifindex=0, btf_fd=3, btf_key_type_id=1, btf_value_type_id=4}, 72) = 4
606   bpf(BPF_PROG_LOAD, {prog_type=BPF_PROG_TYPE_KPROBE, insn_cnt=24, insns=[{code=BPF_JMP|BPF_K|BPF_CALL, dst_reg=BPF_REG_0, src_reg=BPF_REG_0, off=0, imm=0xf}, {code=BPF_LD|BPF_DW|BPF_IMM, dst_reg=BPF_REG_1, src_reg=BPF_REG_1, off=0, imm=0x4}], license="GPL", log_buf=NULL, prog_name="count_exec", prog_btf_fd=3, func_info=0x3fde0f20}, 128) = 5
606   perf_event_open({type=0x6 /* PERF_TYPE_??? */, size=PERF_ATTR_SIZE_VER7, config=0, precise_ip=0 /* arbitrary skid */, config1=0x7f8ea3167a90, config2=0}, -1, 0, -1, PERF_FLAG_FD_CLOEXEC) = 6
612   execve("/bin/true", ["/bin/true"], 0x7ffc8 /* 3 vars */ <unfinished ...>
606   ioctl(6, PERF_EVENT_IOC_SET_BPF, 5) = 0
612   <... execve resumed>)             = 0
606   --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=612, si_uid=1001, si_status=0} ---
612   +++ exited with 0 +++
606   bpf(BPF_MAP_LOOKUP_ELEM, {map_fd=4, key=0x7fb936bbe2f0, value=0x7fb936bbe260, flags=BPF_ANY}, 32) = 0
'''


def test_calls_are_parsed_with_pid_name_and_result():
    calls = parse_strace(TRACE)
    assert [c.name for c in calls] == ["ioctl", "bpf", "bpf", "bpf", "bpf", "perf_event_open", "ioctl", "execve", "bpf"]
    assert {c.pid for c in calls} == {606, 612}
    assert [c.fd for c in calls if c.name == "bpf"] == [None, 3, 4, 5, 0]
    assert calls[1].result == "-1 ENOENT (No such file or directory)"


def test_an_interrupted_call_is_put_back_together():
    [execve] = [c for c in parse_strace(TRACE) if c.name == "execve"]
    assert execve.pid == 612 and execve.args[0] == '"/bin/true"' and execve.result == "0"


def test_struct_fields_survive_quotes_commas_and_nested_braces():
    calls = parse_strace(TRACE)
    btf = calls[2].fields()
    assert btf["btf_size"] == "2071" and btf["btf"].startswith('"\\237')
    load = calls[4].fields()
    assert load["prog_name"] == '"count_exec"' and load["insn_cnt"] == "24"
    assert split_top(load["insns"][1:-1])[1].endswith("imm=0x4}")
    assert calls[5].fields()["type"] == "0x6"  # strace's /* comment */ is dropped


def test_brief_keeps_the_telling_fields_and_hides_addresses():
    briefs = [c.brief() for c in parse_strace(TRACE)]
    assert briefs[1] == 'bpf(BPF_OBJ_GET, pathname="/sys/fs/bpf/ch07_demo") = -1 ENOENT (No such file or directory)'
    assert briefs[3] == ('bpf(BPF_MAP_CREATE, map_type=BPF_MAP_TYPE_HASH, map_name="execs", key_size=4, '
                         'value_size=8, max_entries=1024, btf_fd=3) = 4')
    assert briefs[4] == ('bpf(BPF_PROG_LOAD, prog_type=BPF_PROG_TYPE_KPROBE, prog_name="count_exec", '
                         'license="GPL", insn_cnt=24, prog_btf_fd=3) = 5')
    assert briefs[5] == "perf_event_open(type=0x6, config=0, config1=0x…, -1, 0, -1, PERF_FLAG_FD_CLOEXEC) = 6"
    assert briefs[6] == "ioctl(6, PERF_EVENT_IOC_SET_BPF, 5) = 0"
    assert briefs[-1] == "bpf(BPF_MAP_LOOKUP_ELEM, map_fd=4) = 0"


def test_split_top_keeps_escaped_quotes_inside_a_string():
    assert split_top(r'a="x\",y", b={c, d}, e') == [r'a="x\",y"', "b={c, d}", "e"]
    assert split_top("") == []
