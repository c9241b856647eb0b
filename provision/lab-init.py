#!/usr/bin/python3
"""PID 1 of the embedded ebpf-lab VM: mount, network, the host's ssh key, sshd, then reap orphans.

A tiny init instead of systemd: first ssh in ~6 s under software emulation instead of ~18 s.
lab-provision.sh --image installs it as /sbin/ebpf-lab-init; the kernel runs it with init=.
"""
import ctypes
import os
import signal
import subprocess
import sys
import time

MOUNTS = [
    ("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs"),
    ("devpts", "/dev/pts", "devpts"), ("tmpfs", "/dev/shm", "tmpfs"), ("tmpfs", "/run", "tmpfs"),
    ("tmpfs", "/tmp", "tmpfs"), ("debugfs", "/sys/kernel/debug", "debugfs"),
    ("tracefs", "/sys/kernel/tracing", "tracefs"), ("bpf", "/sys/fs/bpf", "bpf"),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
]
# qemu's user-mode network: the guest's fixed address, the gateway and the DNS forwarder.
ADDRESS, GATEWAY, NAMESERVER = "10.0.2.15/24", "10.0.2.2", "10.0.2.3"
KEY_PARAMETER = "ebpflab.key"
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC


def sh(*cmd: str) -> None:
    # A failed step must not kill PID 1 (that panics the kernel): report it and go on.
    try:
        subprocess.run(cmd, check=False)
    except OSError as e:
        print(f"ebpf-lab-init: {cmd[0]}: {e}", file=sys.stderr)


def authorized_key(cmdline: str) -> str | None:
    """The authorized_keys line for the host's key passed on the kernel command line, if any."""
    params = dict(a.split("=", 1) for a in cmdline.split() if "=" in a)
    key = params.get(KEY_PARAMETER)
    return f"ssh-ed25519 {key} ebpf-lab\n" if key else None


def mount_all() -> None:
    for src, target, fstype in MOUNTS:
        os.makedirs(target, exist_ok=True)
        sh("mount", "-t", fstype, src, target)
    os.chmod("/tmp", 0o1777)


def bring_up_network() -> None:
    sh("hostname", "ebpf-lab")
    # No udev: virtio_pci must be loaded before virtio_net can find the NIC.
    sh("modprobe", "virtio_pci")
    sh("modprobe", "virtio_net")
    sh("modprobe", "virtio_console")  # the data ports (ebpf_lab/runner/data_channel.py)
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", ADDRESS, "dev", "eth0")
    sh("ip", "link", "set", "eth0", "up")
    sh("ip", "route", "add", "default", "via", GATEWAY)
    with open("/run/resolv.conf", "w") as f:
        f.write(f"nameserver {NAMESERVER}\n")


def install_host_key() -> None:
    with open("/proc/cmdline") as f:
        line = authorized_key(f.read())
    if line:
        os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
        with open("/root/.ssh/authorized_keys", "w") as f:
            f.write(line)
        os.chmod("/root/.ssh/authorized_keys", 0o600)


def power_off(*_: object) -> None:
    """`kill 1` in the VM powers it off (the host stops qemu itself through its QMP socket)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sync()
    libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)


def main() -> None:
    os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"  # the kernel starts init with no PATH
    mount_all()
    bring_up_network()
    install_host_key()
    os.makedirs("/run/sshd", exist_ok=True)
    sh("/usr/sbin/sshd", "-E", "/run/sshd.log")
    with open("/dev/kmsg", "w") as f:
        f.write("ebpf-lab: ready\n")  # in the console log that `ebpf-lab vm status` shows
    signal.signal(signal.SIGTERM, power_off)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(1)


if __name__ == "__main__":
    main()
