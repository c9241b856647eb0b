import struct

from ebpf_lab.inspect.bytecode import annotate, decode, helper_names_from_header


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
    assert [i.book_kind for i in insns] == ["load", "store", "arithmetic", "jump", "load", "jump"]


def test_roles_follow_what_each_instruction_does():
    # r6 = r1 (save the context); r1 = r10; r1 += -8; call 15; r0 &= 1; r1 = 7 ; exit
    prog = (insn(0xbf, dst=6, src=1) + insn(0xbf, dst=1, src=10) + insn(0x07, dst=1, imm=-8) + insn(0x85, imm=15)
            + insn(0x57, dst=0, imm=1) + insn(0xb7, dst=1, imm=7) + insn(0x95))
    notes = annotate(decode(prog), {15: "bpf_get_current_uid_gid"})
    assert notes[0] == "r1 holds the context"
    assert notes[1] == "r10 is the frame pointer (the stack); r1 becomes argument 1 of bpf_get_current_uid_gid"
    assert "r1 holds the context" not in notes[2]  # r1 was overwritten: it is the argument now
    assert notes[3].startswith("calls bpf_get_current_uid_gid")
    assert notes[4] == "r0 holds bpf_get_current_uid_gid's result"
    assert notes[5] == ""  # r1 = 7 after the call: no longer the context, and no call follows
    assert notes[6] == "the program's return value is r0"


def test_helper_names_from_libbpf_header():
    header = ("static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *) 6;\n"
              "static __u64 (*bpf_get_current_uid_gid)(void) = (void *) 15;\n")
    assert helper_names_from_header(header) == {6: "bpf_trace_printk", 15: "bpf_get_current_uid_gid"}
