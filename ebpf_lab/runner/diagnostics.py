"""Explain why a BPF program failed, in terms of the learner's own cell.

Pure functions over what the guest reported (stderr lines, the BPF C text, the
trimmed traceback), so they are unit-tested without a VM.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

CLANG_DIAG = re.compile(r"^/virtual/main\.c:(\d+):(\d+): (error|fatal error): (.*)$")
VERIFIER_START = "bpf: Failed to load program"
VERIFIER_FOOTER = re.compile(r"^(processed \d+ insns|verification time|stack depth|\s*$)")


@dataclass
class CompileError:
    c_line: int
    column: int
    message: str
    cell_line: int | None
    source_line: str


def cell_line_of_c_line(source: str, c_text: str, c_line: int) -> int | None:
    """Map a line of the BPF C text to the line of the cell that holds it, if the text is literal there."""
    idx = source.find(c_text)
    if idx < 0 or not c_text:
        return None
    return source[:idx].count("\n") + c_line


def compile_errors(stderr: list[str], source: str, c_text: str | None) -> list[CompileError]:
    errors = []
    c_lines = (c_text or "").split("\n")
    for line in stderr:
        m = CLANG_DIAG.match(line)
        if not m:
            continue
        c_line, col = int(m.group(1)), int(m.group(2))
        cell_line = cell_line_of_c_line(source, c_text, c_line) if c_text else None
        text = c_lines[c_line - 1] if 0 < c_line <= len(c_lines) else ""
        errors.append(CompileError(c_line, col, m.group(4), cell_line, text))
    return errors


def format_compile_errors(errors: list[CompileError]) -> str:
    out = []
    for e in errors:
        where = f"cell line {e.cell_line}" if e.cell_line else f"line {e.c_line} of the BPF C text"
        out.append(f"{where}, column {e.column}: {e.message}")
        gutter = f"{e.cell_line or e.c_line:>5} | "
        out.append(gutter + e.source_line)
        out.append(" " * (len(gutter) + e.column - 1) + "^")
    return "\n".join(out)


def verifier_log(stderr: list[str]) -> tuple[list[str], list[str]]:
    """(the verifier's log lines, bcc's HINT lines) that bcc printed after a failed load."""
    try:
        start = next(i for i, l in enumerate(stderr) if l.startswith(VERIFIER_START))
    except StopIteration:
        return [], []
    log, hints, in_log = [], [], True
    for line in stderr[start + 1:]:
        if line.startswith("Traceback (most recent call last)"):
            break
        if line.startswith("HINT:"):
            hints.append(line)
        elif VERIFIER_FOOTER.match(line):
            in_log = False
        elif in_log:
            log.append(line)
    return log, hints


def explain_failure(stderr: list[str], source: str, c_text: str | None, exception: dict | None) -> tuple[str, str]:
    """(headline, details) for a program that ended with an exception."""
    exc_msg = (exception or {}).get("message", "")
    errors = compile_errors(stderr, source, c_text)
    if errors or "Failed to compile BPF module" in exc_msg:
        return ("the BPF C code does not compile", format_compile_errors(errors) or exc_msg)
    log, hints = verifier_log(stderr)
    if log or "Failed to load BPF program" in exc_msg:
        reason = log[-1] if log else exc_msg
        tail = "\n".join("    " + l for l in log[-8:])
        details = f"last lines of the verifier log:\n{tail}" if tail else exc_msg
        return (f"the kernel's verifier rejected the program: {reason}", "\n".join([details, *hints]))
    if exception:
        return (f"the program raised {exception['type']}: {exc_msg}", exception.get("traceback", "").rstrip())
    return ("the program failed", "\n".join(stderr[-10:]))
