"""The embedded lab VM: boot the cached image with qemu, track it, stop it."""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import PortInUse, QemuMissing, VMBootFailed, VMBusy, VMNotRunning
from ..paths import cache_dir, runtime_dir
from ..transport.target import DataChannelRoute, SshTarget
from . import accel as accel_mod
from .image import Image, build_image, find_image, require_image
from .keys import ensure_key, identity_file, public_key_blob

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = {"kvm": 60.0, "tcg": 180.0}
HOST_KEY_ALIAS = "ebpf-lab-embedded"
# Serial ports a run's frames can take to the host instead of ssh (runner/data_channel.py): one per
# run at a time; runs beyond that use ssh.
DATA_PORTS = 4
CONSOLE_DEVICE = "console"
CONSOLE_RING_BYTES = 1 << 20   # in qemu: the newest MiB the guest wrote to its serial console
CONSOLE_KEEP_BYTES = 256 << 10  # on the host: the newest part of what was read from it


@dataclass
class VMState:
    pid: int
    port: int
    accel: str
    image_dir: str
    console: str  # the host's copy of the guest console's last lines (CONSOLE_KEEP_BYTES at most)
    qmp: str
    started: float
    # Which boot of the host and which process: after a reboot the same pid can be anything.
    boot_id: str = ""
    pid_start: int = 0
    # Where the data ports' and QMP's sockets are ("": a VM started by an older ebpf-lab has no data ports).
    data_ports_dir: str = ""

    @property
    def image(self) -> Image:
        return Image(Path(self.image_dir))


def vm_dir() -> Path:
    return cache_dir() / "vm"


def _state_file() -> Path:
    return vm_dir() / "state.json"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), 0 if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"qemu" in cmdline.read_bytes()


def _is_our_vm(st: VMState) -> bool:
    if st.boot_id and st.boot_id != _boot_id():
        return False  # the host rebooted since: the pid file is stale, whatever runs under that pid now
    if st.pid_start and st.pid_start != _start_time(st.pid):
        return False
    return _alive(st.pid)


def state() -> VMState | None:
    """The running embedded VM, or None (a stale state file is removed)."""
    try:
        st = VMState(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _is_our_vm(st):
        return st
    _state_file().unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def _vm_lock(wait: float = 600.0) -> Iterator[None]:
    """One `vm up`/`vm down` at a time per cache: a second `vm up` waits and then finds the VM running."""
    vm_dir().mkdir(parents=True, exist_ok=True)
    with open(vm_dir() / "lock", "w") as f:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise VMBusy("another `ebpf-lab vm up` has been starting the VM for too long",
                                 "check it with: ebpf-lab vm status") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def require_running() -> VMState:
    st = state()
    if st is None:
        raise VMNotRunning("the embedded lab VM is not running", "start it with: ebpf-lab vm up")
    return st


def _free_port() -> int:
    wanted = os.environ.get("EBPF_LAB_SSH_PORT")
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(wanted or 0)))
        except OSError:
            raise PortInUse(f"port {wanted} on 127.0.0.1 is already in use",
                            "unset EBPF_LAB_SSH_PORT or choose a free port") from None
        return s.getsockname()[1]


def _ssh_banner(port: int, timeout: float = 1.0) -> bool:
    """qemu accepts on the forwarded port at once; only sshd's banner means the guest is up."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def qemu_command(image: Image, accel: str, port: int, qmp: Path, ports_dir: Path,
                 memory_mb: int = 2048, cpus: int = 2) -> list[str]:
    append = " ".join([
        "root=/dev/nvme0n1", "rw", "init=/sbin/ebpf-lab-init", "console=ttyS0", "quiet", "panic=-1",
        f"ebpflab.key={public_key_blob()}",
    ])
    return [
        QEMU, "-name", "ebpf-lab", *accel_mod.qemu_args(accel),
        "-m", str(memory_mb), "-smp", str(cpus),
        "-kernel", str(image.kernel), "-append", append,
        # NVMe and ext4 are built into the cloud kernel: no initrd needed.
        "-drive", f"if=none,id=d0,file={image.disk},format=raw", "-device", "nvme,drive=d0,serial=lab",
        # -snapshot: every boot starts from the pristine image.
        "-snapshot",
        # restrict=on: the guest (where notebook code runs as root) reaches nothing outside the VM, in
        # particular not the host's loopback services (10.0.2.2 would otherwise reach e.g. Jupyter);
        # the ssh forward into the guest keeps working.
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
        *_data_port_args(ports_dir),
        # The console goes into a ring in qemu's memory, not a file: root in the guest can write to the
        # serial port for ever. The host keeps a bounded copy of what it read (save_console).
        "-chardev", f"ringbuf,id={CONSOLE_DEVICE},size={CONSOLE_RING_BYTES}", "-serial", f"chardev:{CONSOLE_DEVICE}",
        # A guest panic ends qemu (panic=-1 + -no-reboot) instead of leaving a hung VM.
        "-no-reboot", "-display", "none", "-monitor", "none",
        "-qmp", f"unix:{qmp},server=on,wait=off",
    ]


def _control_dir() -> Path:
    """Where qemu puts its control sockets (QMP, which can make qemu do anything, and the data ports): in
    the private, checked runtime directory (a socket path has at most 107 bytes; a cache directory can be
    deep), one directory per cache, hence per VM."""
    d = runtime_dir() / f"ports-{hashlib.sha256(str(vm_dir()).encode()).hexdigest()[:12]}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def data_ports(ports_dir: Path) -> list[tuple[str, Path]]:
    """The data ports: (name in the guest, the socket qemu listens on here)."""
    return [(f"ebpf-lab.data{k}", ports_dir / f"port{k}.sock") for k in range(1, DATA_PORTS + 1)]


def _data_port_args(ports_dir: Path) -> list[str]:
    # virtio-serial, not the network: under software emulation the guest's TCP stack costs ~5x more
    # CPU per byte (checksums, segments, acks) than a serial port's 32 KiB buffers.
    args = ["-device", "virtio-serial-pci"]
    for k, (name, sock) in enumerate(data_ports(ports_dir), 1):
        path = str(sock).replace(",", ",,")  # a comma ends a qemu option
        args += ["-chardev", f"socket,id=data{k},path={path},server=on,wait=off",
                 "-device", f"virtserialport,chardev=data{k},name={name}"]
    return args


def up(log=print) -> VMState:
    """Boot the embedded VM (or return the running one) and wait until sshd answers."""
    with _vm_lock():
        return _up(log)


def _up(log) -> VMState:
    running = state()
    if running:
        return running
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise QemuMissing("qemu-system-x86_64 is not installed", "run: sudo apt-get install qemu-system-x86")
    image = require_image()
    ensure_key()
    accel = accel_mod.choose_accel(qemu, image.kernel)
    try:
        return _boot(image, accel, log)
    except VMBootFailed as e:
        if accel != "kvm" or accel_mod.forced():
            raise
        # The probe saw the kernel start under KVM, but the whole VM did not come up: some nested
        # hypervisors fail later in boot. Software emulation is slower but works everywhere.
        log(f"KVM did not bring the lab VM up ({e.message}); using software emulation (TCG) from now on")
        accel_mod.remember(qemu, "tcg")
        return _boot(image, "tcg", log)


def _boot(image: Image, accel: str, log) -> VMState:
    port = _free_port()
    vm_dir().mkdir(parents=True, exist_ok=True)
    control = _control_dir()
    console, qmp_sock = vm_dir() / "console.log", control / "qmp.sock"
    qmp_sock.unlink(missing_ok=True)
    console.unlink(missing_ok=True)
    started = time.time()
    for _, sock in data_ports(control):
        sock.unlink(missing_ok=True)  # left by a qemu that was killed: qemu would not bind over it
    qemu_log = vm_dir() / "qemu.log"
    # qemu outlives this process, so its stderr goes to a file, not a pipe someone must drain.
    with open(qemu_log, "wb") as errfile:
        proc = subprocess.Popen(qemu_command(image, accel, port, qmp_sock, control),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile,
                                start_new_session=True)
    st = VMState(pid=proc.pid, port=port, accel=accel, image_dir=str(image.dir),
                 console=str(console), qmp=str(qmp_sock), started=started, boot_id=_boot_id(),
                 pid_start=_start_time(proc.pid), data_ports_dir=str(control))
    _state_file().write_text(json.dumps(asdict(st)))
    deadline = time.monotonic() + BOOT_TIMEOUT[accel]
    next_save = time.monotonic() + 1
    while not _ssh_banner(port):
        if time.monotonic() > next_save:
            save_console(st)  # should qemu end, what the guest said before is on the host
            next_save = time.monotonic() + 1
        if proc.poll() is not None:
            _state_file().unlink(missing_ok=True)
            err = qemu_log.read_text(errors="replace").strip().splitlines()
            raise VMBootFailed(f"qemu exited: {err[-1] if err else proc.returncode}", f"see {console}")
        if time.monotonic() > deadline:
            save_console(st)
            _down()
            raise VMBootFailed(f"the VM did not answer ssh within {BOOT_TIMEOUT[accel]:.0f} s ({accel})",
                               f"see {console}; retry with: ebpf-lab vm up")
        time.sleep(0.2)
    log(f"lab VM up in {time.time() - started:.1f} s ({accel}, ssh on 127.0.0.1:{port})")
    return st


def qmp(socket_path: Path, command: str, arguments: dict | None = None) -> dict:
    """One QMP command's answer (qemu's JSON monitor; events that arrive in between are skipped)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2.0)
        s.connect(str(socket_path))
        answers = s.makefile("rb")
        answers.readline()  # the greeting
        for cmd, args in (("qmp_capabilities", None), (command, arguments)):
            s.sendall(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}).encode() + b"\n")
            while "return" not in (answer := json.loads(answers.readline() or b'{"return": null}')) \
                    and "error" not in answer:
                pass
        return answer


def save_console(st: VMState) -> None:
    """Move what the guest wrote to its console since the last call from qemu's ring to the host's copy,
    keeping the newest CONSOLE_KEEP_BYTES of it (nothing happens when qemu does not answer)."""
    try:
        answer = qmp(Path(st.qmp), "ringbuf-read", {"device": CONSOLE_DEVICE, "size": CONSOLE_RING_BYTES,
                                                   "format": "base64"})
        new = base64.b64decode(answer.get("return") or "")
    except (OSError, ValueError, TypeError):
        return
    if not new:
        return
    copy = Path(st.console)
    try:
        kept = copy.read_bytes()[-CONSOLE_KEEP_BYTES:]
    except OSError:
        kept = b""
    tmp = copy.with_suffix(".tmp")
    tmp.write_bytes((kept + new)[-CONSOLE_KEEP_BYTES:])
    tmp.replace(copy)


# What qemu's run states mean for someone whose ssh just timed out.
_RUN_STATES = {
    "io-error": "qemu paused the guest because a write to its disk failed: is the host disk full? "
                "(the VM's writes go to a temporary file under $TMPDIR or /var/tmp)",
    "guest-panicked": "the guest kernel panicked",
    "internal-error": "qemu stopped the guest after an internal error (see its log)",
    "shutdown": "the guest has shut down",
}


def answers_ssh(st: VMState) -> bool:
    """Does sshd greet within 5 s (what a busy emulated guest still manages)?"""
    return _ssh_banner(st.port, timeout=5.0)


def run_state(st: VMState) -> str:
    """qemu's own word on the guest: 'running', 'paused', 'io-error', …, or why it could not be asked."""
    try:
        answer = qmp(Path(st.qmp), "query-status")
    except (OSError, ValueError) as e:
        return f"unknown (qemu's QMP socket did not answer: {e})"
    return (answer.get("return") or {}).get("status", f"unknown ({answer})")


def console_tail(st: VMState, lines: int = 10) -> list[str]:
    """The guest's last console lines: kernel warnings (OOM, lockups, panics) and the init's messages."""
    save_console(st)
    try:
        text = Path(st.console).read_text(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def diagnose() -> str:
    """Why the embedded VM might not answer, from qemu and the guest console (for error messages)."""
    st = state()
    if st is None:
        return "its qemu process has ended"
    return _diagnosis(st, run_state(st))


def _diagnosis(st: VMState, status: str, answering: bool | None = None) -> str:
    """diagnose() for a VM whose qemu run state (and, if known, whether sshd answers) was read already."""
    parts = [f"qemu (pid {st.pid}, {st.accel}) reports the guest {status}"]
    if status in _RUN_STATES:
        parts.append(_RUN_STATES[status])
    elif status == "running" and not (answers_ssh(st) if answering is None else answering):
        parts.append("the guest runs but its sshd sends no banner (a hung or overloaded guest)")
    tail = console_tail(st)
    if tail:
        parts.append(f"last lines of {st.console}:\n    " + "\n    ".join(tail))
    return "; ".join(parts)


def down() -> bool:
    """Stop the VM; False if it was not running. -snapshot means there is nothing to save."""
    with _vm_lock():
        return _down()


def _down() -> bool:
    st = state()
    if st is None:
        return False
    try:
        qmp(Path(st.qmp), "quit")
    except OSError:
        os.kill(st.pid, 15)
    deadline = time.monotonic() + 10
    while _alive(st.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(st.pid):
        os.kill(st.pid, 9)
    _state_file().unlink(missing_ok=True)
    if st.data_ports_dir:
        shutil.rmtree(st.data_ports_dir, ignore_errors=True)
    return True


class EmbeddedVM:
    """The default backend: the cached image booted with qemu on this machine."""

    name = "embedded"

    def prepare(self, log: Callable[[str], None] = print) -> None:
        build_image(log=log)

    def up(self, log: Callable[[str], None] = print) -> None:
        up(log)

    def down(self) -> bool:
        return down()

    def answers(self) -> bool:
        st = state()
        return st is not None and answers_ssh(st)

    def status(self) -> str:
        st, built = state(), find_image()
        if st is None:
            if built is None:
                return "not running, and its image is not built (run: ebpf-lab vm build, then: ebpf-lab vm up)"
            return f"not running (start it with: ebpf-lab vm up)\n         image: {built.describe()}"
        line = f"running (pid {st.pid}, {st.accel}, ssh on 127.0.0.1:{st.port})\n         image: {st.image.describe()}"
        if not built or st.image.dir != built.dir:
            line += "\n         an outdated image: restart it with: ebpf-lab vm down && ebpf-lab vm up"
        status = run_state(st)
        if status != "running" or not answers_ssh(st):
            line += f"\n         not answering: {_diagnosis(st, status, answering=False)}"
        return line

    def describe(self) -> str:
        # The whole status: when the VM does not answer, what is known about why.
        return f"the embedded VM, {self.status()}"

    def target(self) -> SshTarget:
        st = require_running()
        known_hosts = cache_dir() / "known_hosts"
        # The image's host key, pinned under an alias because the forwarded port changes per boot. Written
        # only when it changes, and whole (renamed into place): another process may be connecting now.
        pinned = f"{HOST_KEY_ALIAS} ssh-ed25519 {st.image.host_key}\n"
        try:
            current = known_hosts.read_text()
        except OSError:
            current = None
        if current != pinned:
            tmp = known_hosts.with_name(f".known_hosts.{os.getpid()}")
            tmp.write_text(pinned)
            tmp.replace(known_hosts)
        return SshTarget(
            kind="embedded", host="127.0.0.1", port=st.port, user="root", identity=identity_file(),
            options=(f"HostKeyAlias={HOST_KEY_ALIAS}", f"UserKnownHostsFile={known_hosts}",
                     "StrictHostKeyChecking=yes"),
            diagnose=diagnose,
            host_key_fix="the embedded VM answers with its image's key: restart it (ebpf-lab vm down && ebpf-lab vm up); "
                         "if that does not help, another program holds the port",
            data_channel=DataChannelRoute(tuple(data_ports(Path(st.data_ports_dir)))) if st.data_ports_dir else None,
        )
