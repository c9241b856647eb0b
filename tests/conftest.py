"""Shared fixtures. VM tests boot the embedded VM if needed; they never skip silently."""
from __future__ import annotations

import warnings

import pytest


_labs: dict = {}


@pytest.fixture
def lab():
    """The lab on the selected backend, reused while the same machine runs. A machine that stopped
    answering (a test hung the guest) is reported and restarted, so that one hang fails its own test
    and not every test after it."""
    from ebpf_lab.lab import Lab
    from ebpf_lab.vm.backend import select_backend

    backend = select_backend()
    backend.up()  # raises with the fix (e.g. "run: ebpf-lab vm build") if it cannot
    if not backend.answers():
        # A warning, not a print: it must show in the summary of a run whose next test passes.
        warnings.warn(f"the lab VM stopped answering, restarting it: {backend.describe()}")
        backend.down()
        backend.up()
    target = backend.target()
    if target not in _labs:
        _labs.clear()
        _labs[target] = Lab(target)
    return _labs[target]


@pytest.fixture
def clean_kernel(lab):
    """Assert the test leaves no BPF program behind that it loaded."""
    before = lab.prog_ids()
    yield
    leftover = lab.prog_ids() - before
    assert not leftover, f"BPF programs left loaded: {leftover}\n{lab.sh('bpftool prog list')}"
