"""Errors a learner can act on: what happened, then the command that fixes it."""
from __future__ import annotations

from .printable import printable


class LabError(Exception):
    """Base of every error ebpf-lab reports to a learner; printed without a traceback."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: learners see what happened and what to do. The message
        # may quote the VM (a program's traceback, its compiler's errors): shown, never obeyed.
        return [printable(f"{type(self).__name__}: {self}")]


class QemuMissing(LabError):
    pass


class ImageMissing(LabError):
    pass


class ImageBuildFailed(LabError):
    pass


class VMNotRunning(LabError):
    pass


class VMBootFailed(LabError):
    pass


class PortInUse(LabError):
    pass


class SshFailed(LabError):
    pass


class UnsafeRuntimeDir(LabError):
    pass


class UnsafeCacheDir(LabError):
    pass


class VMBusy(LabError):
    pass


class ProgramNotFound(LabError):
    pass


class BadArgument(LabError):
    """An option the learner gave (a timeout, a workload spec, a view name) that cannot work."""


class RunRefused(LabError):
    """The VM refused to start the run (e.g. the workload names a user or command it does not have)."""


class Interrupted(LabError, KeyboardInterrupt):
    """The learner stopped a run (Ctrl-C, Jupyter's stop button); the program was stopped in the VM.

    A KeyboardInterrupt, so that "run all" stops here, but shown as one line instead of a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [printable(f"interrupted: {self}")]


class ProgramFailed(LabError):
    """The BPF program itself failed: compile error, verifier rejection or Python exception.

    ``details`` holds the learner-facing explanation (offending line, verifier reason, trimmed traceback).
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details

    def __str__(self) -> str:
        return f"{self.message}\n{self.details}".rstrip()


class BpftoolError(LabError):
    pass
