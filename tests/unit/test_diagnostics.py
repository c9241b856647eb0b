from ebpf_lab.runner.diagnostics import (cell_line_of_c_line, compile_errors, explain_failure,
                                         format_compile_errors, verifier_log)

CELL = '''from bcc import BPF
program = r"""
int hello(void *ctx) {
    undeclared = 1;
    return 0;
}
"""
b = BPF(text=program)
'''
C_TEXT = '''
int hello(void *ctx) {
    undeclared = 1;
    return 0;
}
'''


def test_c_line_maps_to_cell_line():
    assert cell_line_of_c_line(CELL, C_TEXT, 3) == 4


def test_compile_error_shows_cell_line_and_caret():
    stderr = ["/virtual/main.c:3:5: error: use of undeclared identifier 'undeclared'",
              "    undeclared = 1;", "    ^", "1 error generated."]
    [err] = compile_errors(stderr, CELL, C_TEXT)
    assert (err.cell_line, err.column, err.source_line.strip()) == (4, 5, "undeclared = 1;")
    text = format_compile_errors([err])
    assert "cell line 4, column 5: use of undeclared identifier 'undeclared'" in text
    gutter, caret = text.splitlines()[1:3]
    assert caret.index("^") == gutter.index("undeclared")


def test_compile_error_in_generated_text_falls_back_to_c_line():
    [err] = compile_errors(["/virtual/main.c:2:1: error: boom"], "b = BPF(text=make())", "x\ny\n")
    assert err.cell_line is None
    assert "line 2 of the BPF C text" in format_compile_errors([err])


VERIFIER_STDERR = [
    "bpf: Failed to load program: Permission denied",
    "0: R1=ctx(off=0,imm=0) R10=fp0",
    "; return *(int *)0;",
    "0: (b7) r1 = 0",
    "1: (61) r0 = *(u32 *)(r1 +0)",
    "R1 invalid mem access 'scalar'",
    "processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0",
    "",
    "HINT: The invalid mem access 'scalar' error can happen if you try to dereference memory without first using bpf_probe_read_kernel() to copy it to the BPF stack.",
    "",
    "Traceback (most recent call last):",
    "Exception: Failed to load BPF program b'bad': Permission denied",
]


def test_verifier_log_stops_before_footer_and_traceback():
    log, hints = verifier_log(VERIFIER_STDERR)
    assert log[0].startswith("0: R1=ctx") and log[-1] == "R1 invalid mem access 'scalar'"
    assert len(hints) == 1 and hints[0].startswith("HINT: The invalid mem access")


def test_explain_verifier_rejection_names_reason():
    headline, details = explain_failure(VERIFIER_STDERR, "", None,
                                        {"type": "Exception", "message": "Failed to load BPF program b'bad': Permission denied"})
    assert headline == "the kernel's verifier rejected the program: R1 invalid mem access 'scalar'"
    assert "r0 = *(u32 *)(r1 +0)" in details and details.splitlines()[-1].startswith("HINT:")


def test_explain_python_exception_uses_trimmed_traceback():
    exc = {"type": "ZeroDivisionError", "message": "division by zero",
           "traceback": '  File "<cell>", line 2, in <module>\n    1/0\nZeroDivisionError: division by zero\n'}
    headline, details = explain_failure([], "x=1\n1/0\n", None, exc)
    assert headline == "the program raised ZeroDivisionError: division by zero"
    assert details.startswith('  File "<cell>", line 2')
