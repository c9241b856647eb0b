"""What every self-check answers with, and the judgements all of them start from."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

from ..printable import printable

from .observe import KernelView, Observation


@dataclass
class Verdict:
    passed: bool
    message: str

    def __repr__(self) -> str:
        return ("PASS: " if self.passed else "NOT YET: ") + self.message

    def _repr_html_(self) -> str:
        """In a notebook: a coloured box that says PASS or NOT YET at a glance, then the message."""
        word, colour, tint = ("PASS", "#1a7f37", "#dafbe1") if self.passed else ("NOT YET", "#9a6700", "#fff8c5")
        return (f"<div style='border-left:6px solid {colour};background:{tint};padding:6px 10px;margin:4px 0'>"
                f"<b style='color:{colour}'>{word}</b> {html.escape(printable(self.message))}</div>")

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


def not_judgeable(obs: Observation, what: str) -> Verdict | None:
    """Why the answer cannot be judged at all: its run failed, or it loaded no BPF (`what` says what to do)."""
    if obs.failure:
        return Verdict(False, obs.failure)
    return no_bpf(obs.kernel, what)
