"""Fixtures of the unit tests."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "ebpf_lab" / "runner"


@pytest.fixture
def guest_import(monkeypatch):
    """`import_module` for the guest runner's modules, importable as in the VM (stdlib only, protocol.py
    beside them)."""
    monkeypatch.syspath_prepend(str(RUNNER))
    monkeypatch.syspath_prepend(str(RUNNER / "guest"))
    return importlib.import_module
