"""Shared fixtures. VM tests boot the embedded VM if needed; they never skip silently."""
from __future__ import annotations

import os
import warnings

import pytest


_labs: dict[tuple, object] = {}


@pytest.fixture
def lab():
    """The lab, reused while the same VM runs. A VM that stopped answering (a test hung the guest) is
    reported and restarted, so that one hang fails its own test and not every test after it."""
    import ebpf_lab
    from ebpf_lab.vm import embedded, target

    key: tuple = ("other",)
    if os.environ.get("EBPF_LAB_TARGET") in (None, "", "embedded") and not target.vagrant_running():
        st = embedded.up()  # raises with the fix (e.g. "run: ebpf-lab vm build") if it cannot
        if not embedded.answers_ssh(st):
            # A warning, not a print: it must show in the summary of a run whose next test passes.
            warnings.warn(f"the lab VM stopped answering, restarting it: {embedded.diagnose()}")
            embedded.down()
            st = embedded.up()
        key = (st.pid, st.port)
    if key not in _labs:
        _labs.clear()
        _labs[key] = ebpf_lab.connect()
    return _labs[key]


@pytest.fixture
def clean_kernel(lab):
    """Assert the test leaves no BPF program behind that it loaded."""
    before = lab.prog_ids()
    yield
    leftover = lab.prog_ids() - before
    assert not leftover, f"BPF programs left loaded: {leftover}\n{lab.sh('bpftool prog list')}"
