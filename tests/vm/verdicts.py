"""Assertions on self-check verdicts, shared by the chapters' exercise tests."""
from __future__ import annotations

from ebpf_lab.course import Verdict

# An "answer" that prints what a passing program would print, and loads no BPF at all.
PRINTS_ONLY = "import time\nwhile True:\n    print({text!r}, flush=True)\n    time.sleep(0.2)\n"


def passes(verdict: Verdict) -> Verdict:
    assert verdict.passed, verdict
    return verdict


def fails(verdict: Verdict, *hints: str) -> Verdict:
    """The answer failed, with one of the hints (a PID could happen to equal a UID, say)."""
    assert not verdict.passed and any(h in verdict.message for h in hints), verdict
    return verdict


def fails_saying_all(verdict: Verdict, *parts: str) -> Verdict:
    """The answer failed, and the message holds every one of `parts` (one per thing still wrong)."""
    assert not verdict.passed and all(p in verdict.message for p in parts), verdict
    return verdict
