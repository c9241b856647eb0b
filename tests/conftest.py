"""Shared fixtures. VM tests boot the embedded VM if needed; they never skip silently."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def lab():
    import ebpf_lab
    from ebpf_lab.vm import embedded, target

    if os.environ.get("EBPF_LAB_TARGET") in (None, "", "embedded") and not target.vagrant_running():
        embedded.up()  # raises with the fix (e.g. "run: ebpf-lab vm build") if it cannot
    return ebpf_lab.connect()


@pytest.fixture
def clean_kernel(lab):
    """Assert the test leaves no BPF program behind that it loaded."""
    before = lab.prog_ids()
    yield
    leftover = lab.prog_ids() - before
    assert not leftover, f"BPF programs left loaded: {leftover}\n{lab.sh('bpftool prog list')}"
