"""Runs in the lab VM: one cgroup (v2) per run, so that ending a run ends everything it started.

A program that calls setsid() or double-forks leaves its process group, but never its
cgroup; writing 1 to cgroup.kill (Linux 5.14+) SIGKILLs every process in it at once.
"""
import os
import time

ROOT = "/sys/fs/cgroup"
PARENT = os.path.join(ROOT, "ebpf-lab")


def _kill_supported():
    # cgroup.kill exists only in non-root cgroups: probe the parent we create anyway.
    try:
        os.makedirs(PARENT, exist_ok=True)
    except OSError:
        return False
    return os.path.exists(os.path.join(PARENT, "cgroup.kill"))


def create(name):
    """A fresh cgroup for one run; None where cgroup v2 with cgroup.kill is missing."""
    if not _kill_supported():
        return None
    path = os.path.join(PARENT, name)
    os.makedirs(path, exist_ok=True)
    return path


def join(path):
    """Move the calling process into the cgroup; children it starts afterwards are born inside."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


def populated(path):
    try:
        with open(os.path.join(path, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except OSError:
        return False


def kill(path, wait=5.0):
    """SIGKILL everything in the cgroup and wait (up to `wait` s) until it is empty."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        return
    deadline = time.monotonic() + wait
    while populated(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def remove(path):
    try:
        os.rmdir(path)
    except OSError:
        pass
