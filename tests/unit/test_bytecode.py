import struct

from ebpf_lab.inspect.bytecode import decode, helper_names_from_header


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def test_decode_classes_signed_fields_and_helpers():
    prog = (insn(0xb7, dst=1) + insn(0x7b, dst=10, src=1, off=-8) + insn(0x07, dst=2, imm=-8)
            + insn(0x85, imm=6) + insn(0x18, dst=1, imm=0x55667788) + insn(0, imm=0x11223344) + insn(0x95))
    insns = decode(prog)
    assert [i.index for i in insns] == [0, 1, 2, 3, 4, 6]  # lddw takes two slots
    assert [i.kind for i in insns] == ["alu", "store", "alu", "call", "load", "exit"]
    assert [i.opcode_class for i in insns] == ["ALU64", "STX", "ALU64", "JMP", "LD", "JMP"]
    assert insns[1].text() == "stxdw [r10-8], r1" and insns[1].off == -8
    assert insns[2].text() == "add64 r2, -8"
    assert insns[3].text({6: "bpf_trace_printk"}) == "call bpf_trace_printk#6"
    assert insns[4].text() == "lddw r1, 0x1122334455667788"
    assert "frame pointer" in insns[1].roles() and insns[5].roles() == "returns r0"


def test_helper_names_from_libbpf_header():
    header = ("static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *) 6;\n"
              "static __u64 (*bpf_get_current_uid_gid)(void) = (void *) 15;\n")
    assert helper_names_from_header(header) == {6: "bpf_trace_printk", 15: "bpf_get_current_uid_gid"}
