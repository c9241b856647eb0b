"""What every self-check answers with, and the judgements all of them start from."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .observe import KernelView


@dataclass
class Verdict:
    passed: bool
    message: str

    def __repr__(self) -> str:
        return ("PASS: " if self.passed else "NOT YET: ") + self.message

    def __bool__(self) -> bool:
        return self.passed


def unfinished(text: str) -> Verdict | None:
    """A TODO left in the code (not in a comment) means the learner has not filled the template in."""
    for line in text.splitlines():
        code = re.split(r"#|//", line, maxsplit=1)[0]
        if re.search(r"\bTODO\b", code):
            return Verdict(False, "replace the TODO parts of your answer with your code, then run the cell again")
    return None


def no_bpf(kernel: KernelView, what: str) -> Verdict | None:
    if not kernel.progs:
        return Verdict(False, f"no BPF program was loaded while your answer ran (printing from Python does not "
                              f"count): {what}")
    return None
