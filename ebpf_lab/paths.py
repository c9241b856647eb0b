"""Where ebpf-lab keeps things on the host.

The image and VM state are a cache (safe to delete, rebuilt on demand); the ssh key
identifies this install and lives with user data.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UnsafeCacheDir, UnsafeRuntimeDir


def cache_dir() -> Path:
    """The image, the VM's state and the run logs. Created private; refused when another user could
    write into it (a planted state file or image would be booted, a planted log read as a run's)."""
    base = os.environ.get("EBPF_LAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ebpf-lab"
    d = Path(base)
    if not d.exists():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCacheDir(f"the cache {d} is not a directory", "remove it, or set EBPF_LAB_CACHE to a directory of yours")
    if st.st_uid != os.getuid():
        raise UnsafeCacheDir(f"the cache {d} belongs to another user", "set EBPF_LAB_CACHE to a directory of yours")
    if st.st_mode & 0o022:
        raise UnsafeCacheDir(f"other users can write into the cache {d} (mode {stat.S_IMODE(st.st_mode):o})",
                             f"run: chmod go-w {d}")
    return d


def data_dir() -> Path:
    base = os.environ.get("EBPF_LAB_DATA") or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "ebpf-lab"
    return Path(base)


def repo_dir() -> Path:
    """The checkout this package runs from (holds the Vagrantfile and provision/)."""
    return Path(__file__).resolve().parent.parent


def provision_dir() -> Path:
    """The provisioning script and the embedded VM's PID 1: the inputs of the lab image."""
    # The course is used from a checkout (`pip install -e .`): they stay next to the Vagrantfile.
    return repo_dir() / "provision"



# A Unix socket path holds at most 104 bytes (macOS; 108 on Linux), and ssh builds its master's
# socket as <dir>/<name>.<16 random characters> first: a directory past this length leaves too little.
RUNTIME_DIR_MAX = 60


def runtime_dir() -> Path:
    """A short, private directory for sockets: $XDG_RUNTIME_DIR/ebpf-lab, or /tmp/ebpf-lab-UID when
    there is none or it is too long for a socket path."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    d = Path(base) / "ebpf-lab" if base else None
    if d is None or len(str(d)) > RUNTIME_DIR_MAX:
        d = Path(f"/tmp/ebpf-lab-{os.getuid()}")
    d.parent.mkdir(parents=True, exist_ok=True)
    try:
        d.mkdir(mode=0o700)
    except FileExistsError:
        pass
    # lstat: in a shared /tmp another user could plant a symlink or an open directory to catch our sockets.
    st = d.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"{d} is not a plain directory", "remove it, or set XDG_RUNTIME_DIR to a private directory")
    if st.st_uid != os.getuid():
        raise UnsafeRuntimeDir(f"{d} belongs to another user", "set XDG_RUNTIME_DIR to a private directory")
    if st.st_mode & 0o077:
        raise UnsafeRuntimeDir(f"{d} can be used by other users (mode {stat.S_IMODE(st.st_mode):o})",
                               f"run: chmod 700 {d}")
    return d
