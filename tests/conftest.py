"""Shared fixtures. VM tests boot the embedded VM if needed; they never skip silently."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

# Past pyproject's default timeout: a test here may boot the VM first, or build and boot a Vagrant box,
# or drive a browser, and each notebook cell may wait for a slow compile under software emulation
# (nbval's own --nbval-cell-timeout in tests/suite.py stays the tighter limit per cell).
LONG_TIMEOUT = 1800
LONG_DIRS = {"vm", "vagrant", "browser"}
TESTS = Path(__file__).resolve().parent

_labs: dict = {}


def needs_long_timeout(path: Path) -> bool:
    """Is `path` a test that uses the lab VM, a browser or a notebook?"""
    path = path.resolve()
    return path.suffix == ".ipynb" or (path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in LONG_DIRS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("timeout", None) is not None or "PYTEST_TIMEOUT" in os.environ:
        return  # a timeout given for this run holds for every test
    for item in items:
        if item.get_closest_marker("timeout") is None and needs_long_timeout(item.path):
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT))


@pytest.fixture
def short_tmp():
    """A private directory whose path is short enough for the lab's sockets (pytest's tmp_path grows
    with the test's name and the run's number, past what a socket path may hold)."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="el-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


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
