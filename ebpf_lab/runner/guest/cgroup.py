"""Runs in the lab VM: one cgroup (v2) per run, so that ending a run ends everything it started,
and so that no run can take the VM down with it.

A program that calls setsid() or double-forks leaves its process group, but never its
cgroup; writing 1 to cgroup.kill (Linux 5.14+) SIGKILLs every process in it at once.
A program that allocates without end or forks without end meets the run's memory.max or
pids.max first: the run dies (all of it, memory.oom.group), while sshd, the supervisor and
the zygote, outside the run's cgroup, keep the VM reachable. The parent holds the same memory
limit for all runs together.
"""
import os
import time

ROOT = "/sys/fs/cgroup"
PARENT = os.path.join(ROOT, "ebpf-lab")
# Memory left to the rest of the VM whatever a run does (sshd, supervisor, zygote, a second run's compile).
RESERVE_BYTES = 256 * 2**20
MAX_PIDS = 1024
MAX_PIDS_ALL_RUNS = 4096
# A run's processes are what the kernel's own OOM killer should pick first, should it ever have to.
OOM_SCORE_ADJ = 500


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _setup_parent():
    """Create the parent, hand the memory and pids controllers down to the runs and cap all runs together
    (two runs at once, from two notebooks, must not take the VM down between them either); False
    without cgroup.kill."""
    try:
        os.makedirs(PARENT, exist_ok=True)
        for d in (ROOT, PARENT):
            _write(os.path.join(d, "cgroup.subtree_control"), "+memory +pids")
        _write(os.path.join(PARENT, "memory.max"), str(memory_limit()))
        _write(os.path.join(PARENT, "pids.max"), str(MAX_PIDS_ALL_RUNS))
    except OSError:
        pass  # a VM without those controllers still gets cgroup.kill, only no limits
    # cgroup.kill exists only in non-root cgroups: probe the parent.
    return os.path.exists(os.path.join(PARENT, "cgroup.kill"))


def _mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


def memory_limit():
    """The memory a run may use, in bytes."""
    return max(_mem_total() - RESERVE_BYTES, 128 * 2**20)


def create(name):
    """A fresh cgroup for one run, with its limits; None where cgroup v2 with cgroup.kill is missing."""
    if not _setup_parent():
        return None
    path = os.path.join(PARENT, name)
    os.makedirs(path, exist_ok=True)
    for knob, value in (("memory.max", memory_limit()), ("memory.oom.group", 1), ("pids.max", MAX_PIDS)):
        try:
            _write(os.path.join(path, knob), str(value))
        except OSError:
            pass  # controller not available in this kernel
    return path


def join(path):
    """Move the calling process into the cgroup; children it starts afterwards are born inside."""
    _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
    try:
        _write("/proc/self/oom_score_adj", str(OOM_SCORE_ADJ))
    except OSError:
        pass


def limits_hit(path):
    """Which limits stopped something in this run: {'memory': kills, 'pids': refused forks}, zeros left out."""
    hit = {}
    for name, knob, key in (("memory", "memory.events", "oom_kill"), ("pids", "pids.events", "max")):
        try:
            with open(os.path.join(path, knob)) as f:
                counts = dict(line.split() for line in f if line.strip())
        except OSError:
            continue
        if int(counts.get(key, 0)):
            hit[name] = int(counts[key])
    return hit


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
