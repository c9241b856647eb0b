"""ebpf-lab: run real BPF programs in a lab VM from Python, the CLI and Jupyter."""
from __future__ import annotations

from .errors import LabError, ProgramFailed
from .lab import Lab, connect
from .runner.run import Line, Record, Run
from .runner.workload import Workload

__all__ = ["Lab", "LabError", "Line", "ProgramFailed", "Record", "Run", "Workload", "connect", "load_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """`%load_ext ebpf_lab`: registers the %%bcc and %%exercise cell magics."""
    from .jupyter import exercise, magic

    magic.register(ipython)
    exercise.register(ipython)
