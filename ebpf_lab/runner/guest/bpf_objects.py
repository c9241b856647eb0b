"""Runs in the lab VM: which BPF programs, maps and links exist, and which no process holds.

A run's objects normally die with its processes (their file descriptors were the only
references). One that outlives them is pinned in bpffs or attached without a descriptor
(e.g. XDP through netlink): that is what the supervisor reports after each run.
"""
import ctypes
import json
import os
import platform
import subprocess
import time

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)
GET_NEXT_ID = {"prog": 11, "map": 12, "link": 31}
FDINFO_KEYS = {b"prog_id": "prog", b"map_id": "map", b"link_id": "link"}

_libc = ctypes.CDLL(None, use_errno=True)


class _NextId(ctypes.Structure):
    _fields_ = [("start_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


def ids(kind):
    """IDs of every loaded object of `kind` ("prog", "map" or "link"), ascending."""
    found, attr = [], _NextId()
    while _libc.syscall(SYS_BPF, GET_NEXT_ID[kind], ctypes.byref(attr), ctypes.sizeof(attr)) == 0:
        found.append(attr.next_id)
        attr.start_id = attr.next_id
    return found


def snapshot():
    """The highest ID of each kind now: objects created later have higher IDs."""
    return {kind: max(ids(kind), default=0) for kind in GET_NEXT_ID}


def held():
    """IDs some process references through an open file descriptor (from /proc/*/fdinfo)."""
    refs = {kind: set() for kind in GET_NEXT_ID}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                    text = f.read()
            except OSError:
                continue
            if b"_id:" not in text:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(b":")
                if key in FDINFO_KEYS:
                    refs[FDINFO_KEYS[key]].add(int(value))
    return refs


def unheld_since(before):
    """Objects created after `before` (a snapshot) that are still loaded but held by no process."""
    new = {kind: [i for i in ids(kind) if i > before[kind]] for kind in GET_NEXT_ID}
    if not any(new.values()):
        return new
    refs = held()
    return {kind: [i for i in found if i not in refs[kind]] for kind, found in new.items()}


def left_over(before, settle=3.0):
    """What the run left loaded, described; waits up to `settle` s for the kernel's deferred frees."""
    deadline = time.monotonic() + settle
    while True:
        left = unheld_since(before)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return [describe(kind, i) for kind, found in left.items() for i in found]


def describe(kind, obj_id):
    info = {"kind": kind, "id": obj_id}
    try:
        out = subprocess.run(["bpftool", "-j", "-f", kind, "show", "id", str(obj_id)], capture_output=True,
                             timeout=10).stdout
        shown = json.loads(out or b"{}")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return info
    for key in ("type", "name", "pinned"):
        if shown.get(key):
            info[key] = shown[key]
    return info
