"""Text from the lab VM as a terminal or a notebook should show it: shown, never obeyed.

A terminal acts on the control characters in what it is sent, and so does a notebook (Jupyter renders
ANSI escapes), so a program in the VM could set the clipboard (OSC 52), retitle the window, move the
cursor or recolour what follows. Every control character but newline and tab (C0, DEL and C1) is
written as `\\x` and two hex digits: ESC as `\\x1b`, a carriage return as `\\x0d`, BEL as `\\x07`, CSI
as `\\x9b`. A backslash is left as it is (`ebpf-lab run --raw` tells an escaped ESC from a program's own
`\\x1b`).
"""
from __future__ import annotations

_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f, *range(0x80, 0xa0)) if chr(c) not in "\n\t"}


def printable(text: str) -> str:
    """`text` with its control characters but newline and tab written as `\\xNN` (ESC as `\\x1b`)."""
    return text.translate(_ESCAPES)
