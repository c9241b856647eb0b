"""Reading verifier logs (chapter 8): the reason, the summary count, and a copy without kernel addresses.
The logs are real ones from the lab VM (kernel 6.1), as bcc printed them."""
from ebpf_lab.inspect.verifier_log import libbpf_reason, processed_insns, reason, sanitized, tail

NULL_DEREF = """bpf: Failed to load program: Permission denied
reg type unsupported for arg#0 function hello#9
0: R1=ctx(off=0,imm=0) R10=fp0
4: (18) r1 = 0xff44ff5c8e8c3000       ; R1_w=map_ptr(off=0,ks=8,vs=8,imm=0)
9: (85) call bpf_map_lookup_elem#1    ; R0=map_value_or_null(id=1,off=0,ks=8,vs=8,imm=0)
; counter = *p;
10: (79) r1 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 10 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1

HINT: The 'map_value_or_null' error can happen if you dereference a pointer value from a map lookup without first checking if that pointer is NULL.
"""

PACKET = """0: R1=ctx(off=0,imm=0) R10=fp0
; if (eth->proto == __builtin_bswap16(0x0800) && ip->protocol == 1)
1: (69) r2 = *(u16 *)(r1 +12)
invalid access to packet, off=12 size=2, R1(id=0,off=12,r=0)
R1 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_the_reason_is_the_first_line_after_the_last_instruction():
    assert reason(NULL_DEREF) == "R0 invalid mem access 'map_value_or_null'"
    assert reason(PACKET) == "invalid access to packet, off=12 size=2, R1(id=0,off=12,r=0)"


def test_processed_insns_comes_from_the_summary_line():
    assert processed_insns(NULL_DEREF) == 10
    assert processed_insns("no summary here") is None


def test_map_addresses_are_blanked_but_register_bounds_are_not():
    state = "R0_w=scalar(var_off=(0x0; 0xffffffff00000000))"
    assert "r1 = 0xADDRESS" in sanitized(NULL_DEREF)
    assert sanitized(state) == state


def test_tail_keeps_the_last_instructions_and_the_reason_without_bcc_lines():
    assert tail(NULL_DEREF, 2).splitlines() == ["10: (79) r1 = *(u64 *)(r0 +0)",
                                                "R0 invalid mem access 'map_value_or_null'"]


LIBBPF_REFUSAL = """libbpf: prog 'xdp_drop': BPF program load failed: Permission denied
libbpf: prog 'xdp_drop': -- BEGIN PROG LOAD LOG --
0: R1=ctx(off=0,imm=0) R10=fp0
; void *data = (void *)(long)ctx->data;
0: (61) r1 = *(u32 *)(r1 +0)          ; R1_w=pkt(off=0,r=0,imm=0)
; if (eth->h_proto != bpf_htons(ETH_P_IP))   // IPv4 only
1: (71) r2 = *(u8 *)(r1 +13)
invalid access to packet, off=13 size=1, R1(id=0,off=13,r=0)
R1 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'xdp_drop': failed to load: -13
Error: failed to load object file
"""


def test_libbpf_reason_names_the_line_and_the_complaint():
    assert libbpf_reason(LIBBPF_REFUSAL) == (
        "invalid access to packet, off=13 size=1, R1(id=0,off=13,r=0); R1 offset is outside of the packet "
        "(at: if (eth->h_proto != bpf_htons(ETH_P_IP)))")
    assert libbpf_reason("Error: failed to open object file\n") == "Error: failed to open object file"
