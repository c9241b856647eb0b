"""Where ebpf-lab keeps things on the host.

The image and VM state are a cache (safe to delete, rebuilt on demand); the ssh key
identifies this install and lives with user data.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("EBPF_LAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ebpf-lab"
    return Path(base)


def data_dir() -> Path:
    base = os.environ.get("EBPF_LAB_DATA") or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "ebpf-lab"
    return Path(base)


def repo_dir() -> Path:
    """The checkout this package runs from (holds the Vagrantfile and provision/)."""
    return Path(__file__).resolve().parent.parent


def provision_script() -> Path:
    # The course is used from a checkout (`pip install -e .`): the script stays next to the Vagrantfile.
    return repo_dir() / "provision" / "lab-provision.sh"


def runtime_dir() -> Path:
    """A short, private directory for sockets (Unix socket paths are limited to ~104 bytes)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    d = Path(base) / "ebpf-lab" if base else Path(f"/tmp/ebpf-lab-{os.getuid()}")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if d.stat().st_uid != os.getuid():
        raise PermissionError(f"{d} belongs to another user; set XDG_RUNTIME_DIR to a private directory")
    return d
