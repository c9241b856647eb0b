"""Pick KVM when it really boots a guest, else software emulation (TCG); never hang.

A /dev/kvm that opens is not enough: nested hypervisors (e.g. PVM) accept the ioctl
and then hang the guest in early boot. So we boot the lab kernel under KVM once and
wait for its first console line; the verdict is cached per host kernel and qemu.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

from ..paths import cache_dir

PROBE_SECONDS = 10.0

TCG_ARGS = ["-accel", "tcg,thread=multi", "-cpu", "max"]
KVM_ARGS = ["-accel", "kvm", "-cpu", "host"]


def qemu_args(accel: str) -> list[str]:
    return KVM_ARGS if accel == "kvm" else TCG_ARGS


def _cache_file() -> Path:
    return cache_dir() / "accel.json"


def _host_id(qemu: str) -> str:
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{platform.release()} | {version}"


def kvm_boots(qemu: str, kernel: Path, seconds: float = PROBE_SECONDS) -> bool:
    """Boot `kernel` under KVM until it prints its banner; False on error or silence."""
    cmd = [qemu, *KVM_ARGS, "-m", "256", "-display", "none", "-no-reboot", "-serial", "stdio",
           "-monitor", "none", "-kernel", str(kernel),
           "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 root=/dev/null"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            chunk = proc.stdout.read() or b""
            seen += chunk
            if b"Linux version" in seen:
                return True
            time.sleep(0.1)
        return False
    finally:
        proc.kill()
        proc.wait()


def choose_accel(qemu: str, kernel: Path) -> str:
    """'kvm' or 'tcg'. EBPF_LAB_ACCEL=kvm|tcg overrides the probe."""
    forced = os.environ.get("EBPF_LAB_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    host = _host_id(qemu)
    try:
        cached = json.loads(_cache_file().read_text())
        if cached.get("host") == host:
            return cached["accel"]
    except (OSError, ValueError, KeyError):
        pass
    accel = "kvm" if kvm_boots(qemu, kernel) else "tcg"
    _cache_file().parent.mkdir(parents=True, exist_ok=True)
    _cache_file().write_text(json.dumps({"host": host, "accel": accel}))
    return accel
