"""The %%exercise cell magic: the cell is the learner's answer, checked in the lab VM when it runs.

An answer written as a cell (not a string) is highlighted as the code it is, and runs like any
other cell: Shift-Enter checks it.
"""
from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from ..course import CHECKS, Verdict
from ..lab import connect


@magics_class
class ExerciseMagics(Magics):
    @cell_magic
    def exercise(self, line: str, cell: str) -> Verdict:
        """%%exercise NAME: check the cell (your answer to chapter exercise NAME) by running it in the lab VM.

        NAME is one of: kprobes, maps, ringbuf, tailcalls (Python with bcc), bytecode, xdp (C), then
        pinning (Python), verifier (C for bcc: three functions), core (BPF C with vmlinux.h, built with
        clang), uprobes, histogram (Python), xdp_drop (C): chapters 7 to 12.
        The verdict is also kept in `_verdict`.
        """
        name = line.strip()
        if name not in CHECKS:
            raise UsageError(f"%%exercise {name or '(no name)'}: name one of {', '.join(CHECKS)}")
        print(f"checking your answer to '{name}' in the lab VM…", flush=True)
        verdict = CHECKS[name](connect(), cell)
        self.shell.user_ns["_verdict"] = verdict
        return verdict


def register(ipython) -> None:
    ipython.register_magics(ExerciseMagics)
