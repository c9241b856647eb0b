"""Chapter 5's exercise: a function `answer` in BPF C that returns 1 for root and 0 for everyone else.

It is loaded (so the verifier must accept it) and run with BPF_PROG_TEST_RUN three times: by root, by
alice, and by root with alice's group (which tells a UID test from a GID test)."""
from __future__ import annotations

from ...errors import ProgramFailed
from ...lab import Lab
from ..verdict import Verdict, unfinished

NAME = "bytecode"


def check(lab: Lab, c_text: str) -> Verdict:
    from ...inspect.bytecode import decode

    if (todo := unfinished(c_text)) is not None:
        return todo
    # Root in alice's group tells a UID test from a GID test (the upper 32 bits of the helper's value).
    program = ("from bcc import BPF\nfrom labtools import prog_test_run_as\n"
               f"b = BPF(text={c_text!r})\n"
               "fn = b.load_func('answer', BPF.RAW_TRACEPOINT)\n"
               "emit('returns', [prog_test_run_as(fn.fd, 0), prog_test_run_as(fn.fd, 1001), "
               "prog_test_run_as(fn.fd, 0, 1001)])\n"
               "emit('bytecode', b.dump_func('answer').hex())\n")
    lab.clear_trace_buffer()
    try:
        run = lab.run(program, echo=False)
    except ProgramFailed as e:
        return Verdict(False, f"your program failed in the VM: {e}")
    records = {r.name: r.payload for r in run.records}
    insns = decode(bytes.fromhex(records["bytecode"]))
    helpers = lab.helper_names()
    return judge(tuple(records["returns"]), [helpers.get(i.imm) for i in insns if i.kind == "call"], len(insns),
                 sum(i.kind == "jump" for i in insns))


def judge(returned: tuple[int, int, int], calls: list[str | None], n_insns: int, jumps: int) -> Verdict:
    """`returned`: what the program returned run by root, by alice, and by root in alice's group."""
    root, alice, root_in_alices_group = returned
    if (root, alice, root_in_alices_group) != (1, 0, 1):
        hint = ("" if "bpf_get_current_uid_gid" in calls
                else ": ask the kernel who is running with bpf_get_current_uid_gid()")
        if (root, alice) == (1, 0):
            hint = ": it looked at the group; the UID is the helper's lower 32 bits"
        return Verdict(False, f"run by root it returned {root}, by alice {alice}, by root in alice's group "
                              f"{root_in_alices_group} (expected 1, 0, 1){hint}")
    return Verdict(True, f"the verifier accepted your {n_insns} instructions; run with BPF_PROG_TEST_RUN they "
                         f"returned 1 for root, 0 for alice, 1 for root in alice's group "
                         f"(calls: {', '.join(filter(None, calls)) or 'none'}; {jumps} jump(s))")
