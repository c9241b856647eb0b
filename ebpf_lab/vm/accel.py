"""Pick KVM when it really boots a guest, else software emulation (TCG); never hang.

A /dev/kvm that opens is not enough: nested hypervisors (e.g. PVM) accept the ioctl
and then hang the guest in early boot. So we boot the lab kernel under KVM once, to the
end of its boot; the verdict is cached per host kernel and qemu. Should the whole VM still
fail to come up under KVM, `vm up` falls back to TCG and caches that instead.
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

# One host thread for all vCPUs. With multi-threaded TCG (qemu 7.2), a guest vCPU now and then keeps
# running stale translated code after another vCPU live-patches the kernel (x86 text_poke of a static
# key or ftrace site, which every BPF attach and detach does): both vCPUs spin in
# syscall_trace_enter, "soft lockup" on the console, sshd never answers again. Seen about once per
# 50 attach/detach cycles here; single-threaded TCG serialises the vCPUs and is as fast for bcc's
# single-threaded compiles.
TCG_ARGS = ["-accel", "tcg,thread=single", "-cpu", "max"]
KVM_ARGS = ["-accel", "kvm", "-cpu", "host"]


def qemu_args(accel: str) -> list[str]:
    return KVM_ARGS if accel == "kvm" else TCG_ARGS


def _cache_file() -> Path:
    return cache_dir() / "accel.json"


def _host_id(qemu: str) -> str:
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{platform.release()} | {version}"


def kvm_boots(qemu: str, kernel: Path, seconds: float = PROBE_SECONDS) -> bool:
    """Boot `kernel` under KVM, as many CPUs as the lab VM, to the end of its boot; False on error or silence.

    With no root disk the kernel's last word is the panic "VFS: Unable to mount root fs": reaching it
    means CPU bring-up, timers and interrupts worked, which is where nested hypervisors hang.
    """
    cmd = [qemu, *KVM_ARGS, "-m", "256", "-smp", "2", "-display", "none", "-no-reboot", "-serial", "stdio",
           "-monitor", "none", "-kernel", str(kernel),
           "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 root=/dev/null"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            chunk = proc.stdout.read() or b""
            seen += chunk
            if b"Unable to mount root fs" in seen:
                return True
            if proc.poll() is not None and not chunk:
                return False
            time.sleep(0.1)
        return False
    finally:
        proc.kill()
        proc.wait()


def forced() -> str | None:
    """EBPF_LAB_ACCEL=kvm|tcg, if set: the user's choice, never second-guessed."""
    value = os.environ.get("EBPF_LAB_ACCEL")
    return value if value in ("kvm", "tcg") else None


def remember(qemu: str, accel: str) -> None:
    """Cache the verdict for this host kernel and qemu."""
    _cache_file().parent.mkdir(parents=True, exist_ok=True)
    _cache_file().write_text(json.dumps({"host": _host_id(qemu), "accel": accel}))


def choose_accel(qemu: str, kernel: Path) -> str:
    """'kvm' or 'tcg'. EBPF_LAB_ACCEL=kvm|tcg overrides the probe."""
    if chosen := forced():
        return chosen
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
    remember(qemu, accel)
    return accel
