"""The lab as the notebooks and the CLI see it: a machine that runs BCC programs as root."""
from __future__ import annotations

import hashlib
import io
import shlex
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

from .errors import BadArgument, Interrupted
from .paths import cache_dir
from .printable import printable
from .runner import protocol
from .runner.data_channel import DataChannel
from .runner.follow import CompileProgress, LivePrinter, drain
from .runner.run import MAX_LOG_BYTES, Run
from .runner.workload import Workload
from .transport.ssh import SshTransport
from .transport.target import SshTarget
from .vm.backend import select_backend

GUEST_DIR = Path(__file__).parent / "runner" / "guest"
PROTOCOL = Path(__file__).parent / "runner" / "protocol.py"
GUEST_ROOT = "/run/ebpf-lab"
KEEP_LOGS = 50
# All run logs together stay under about this much (each is capped at runner.run.MAX_LOG_BYTES).
MAX_LOGS_BYTES = 1024 * 2**20
Workloads = Iterable["Workload | str"]


def _guest_bundle() -> tuple[str, bytes]:
    """The guest-side runner (and the protocol it shares with the host) as a tarball, and a digest
    naming its directory in the VM."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in [*sorted(GUEST_DIR.glob("*.py")), PROTOCOL]:
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.mtime = 0  # the digest follows the content only
            with open(path, "rb") as f:
                tar.addfile(info, f)
    data = buf.getvalue()
    return hashlib.sha256(data).hexdigest()[:12], data


def _seconds(value: float | None, what: str) -> float | None:
    try:
        return protocol.check_seconds(value, what)
    except ValueError as e:
        raise BadArgument(str(e), "give a number of seconds above 0, e.g. 10 or 2.5") from None


class Lab:
    """A lab machine reached over ssh. Get one with `ebpf_lab.connect()`."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.ssh = SshTransport(target)
        digest, self._bundle = _guest_bundle()
        self._guest_dir = f"{GUEST_ROOT}/guest-{digest}"

    def __repr__(self) -> str:
        return f"<Lab {self.target.kind} {self.target.user}@{self.target.host}:{self.target.port}>"

    def sh(self, command: str, check: bool = True, input: bytes | None = None, timeout: float | None = 120) -> str:
        """Run a shell command in the VM as root; return its stdout."""
        return self.ssh.run(command, input=input, check=check, timeout=timeout).stdout.decode(errors="replace")

    def _install_guest(self) -> None:
        d = shlex.quote(self._guest_dir)
        # /run is a tmpfs in the VM: after a reboot the runner is sent again. Unpacked beside its place and
        # renamed into it whole, so an interrupted or a concurrent first run never leaves half a runner: the
        # second rename fails on the complete directory the first one made, and its copy is dropped.
        self.ssh.run(f"test -f {d}/.complete && cat >/dev/null || {{ mkdir -p {GUEST_ROOT} && "
                     f"t=$(mktemp -d {GUEST_ROOT}/.unpacking-XXXXXX) && tar -x -C $t && touch $t/.complete && "
                     f"{{ mv -T $t {d} 2>/dev/null || rm -rf $t; }}; }}", input=self._bundle)

    def start(self, source: str, *, timeout: float | None = None,
              compile_timeout: float = protocol.DEFAULT_COMPILE_TIMEOUT, workload: Workloads = (),
              argv: Iterable[str] = (), filename: str = "<cell>", grace: float = protocol.DEFAULT_GRACE) -> Run:
        """Start a BCC Python program in the VM as root and return at once with its live `Run`.

        `timeout`: seconds of running, counted from when the program has attached its probes (or
        loaded a program, or printed), never while bcc compiles. `compile_timeout`: how long the
        program may take to get there (and any single compile may take) before it is stopped.
        `workload`: commands to exec as lab users once it runs (`Workload` or "USER[:COUNT[@RATE/s]][:CMD]").
        """
        header = protocol.RunHeader(
            source=source, filename=filename, argv=[str(a) for a in argv],
            timeout=_seconds(timeout, "timeout"),
            compile_timeout=_seconds(compile_timeout, "compile_timeout") or protocol.DEFAULT_COMPILE_TIMEOUT,
            grace=_seconds(grace, "grace") or protocol.DEFAULT_GRACE,
            workload=[(w if isinstance(w, Workload) else Workload.parse(w)).to_spec() for w in workload],
            key=protocol.new_key())
        self._install_guest()
        route = self.target.data_channel
        channel = DataChannel.lease(route) if route is not None else None
        if channel is not None:
            header.data_channel = channel.spec
        proc = None
        try:
            proc = self.ssh.popen(f"exec python3 -u {shlex.quote(self._guest_dir)}/supervisor.py")
            proc.stdin.write(header.encode())
            proc.stdin.flush()
            return Run(proc, source, _new_log_path(), timeout=header.timeout, channel=channel, key=header.key)
        except BaseException:
            # Nobody will read this run: end ssh, so the supervisor sees EOF and stops the program.
            if proc is not None:
                proc.kill()
                proc.wait()
            if channel is not None:
                channel.close()
            raise

    def run(self, source: str, *, timeout: float | None = None,
            compile_timeout: float = protocol.DEFAULT_COMPILE_TIMEOUT, workload: Workloads = (),
            argv: Iterable[str] = (), filename: str = "<cell>", echo: bool = True, check: bool = True,
            raw: bool = False) -> Run:
        """Run a program to its end (or timeout). With `echo`, its output and the compile progress are
        printed live (progress on stderr), control characters shown escaped unless `raw`; Ctrl-C stops the
        program in the VM and raises `Interrupted`."""
        run = self.start(source, timeout=timeout, compile_timeout=compile_timeout, workload=workload, argv=argv,
                         filename=filename)
        show = _echo(run, raw) if echo else lambda: None
        try:
            while not run.done:
                run.wait(0.1)
                show()
        except KeyboardInterrupt:
            run.interrupt()
            raise Interrupted(run.stopped_message()) from None
        finally:
            show()
            for warning in run.warnings() if echo else ():  # they quote the VM: names of its objects, its errors
                print(f"ebpf-lab: warning: {printable(warning)}", file=sys.stderr)
        if check:
            run.raise_for_status()
        return run

    def guest_tool(self, *args: object, module: str = "labtools") -> str:
        """Run the VM-side helpers (`labtools.py`: syscall-numbers, clear-trace, send-udp; or another
        module of runner/guest, e.g. "nettools"); their stdout."""
        self._install_guest()
        return self.sh(f"python3 {shlex.quote(self._guest_dir)}/{module}.py {shlex.join(str(a) for a in args)}")

    def syscall_numbers(self, *names: str) -> dict[str, int]:
        """The lab kernel's syscall numbers by name, derived from its headers on any architecture."""
        return {name: int(nr) for nr, name in (line.split() for line in
                                                self.guest_tool("syscall-numbers", *names).splitlines())}

    def clear_trace_buffer(self) -> None:
        """Empty the kernel's global trace buffer so the next trace_print sees only new lines."""
        self.guest_tool("clear-trace")

    def send_udp(self, count: int, port: int = 9) -> int:
        """Send `count` UDP datagrams to 127.0.0.1:`port` inside the VM; how many went out."""
        return int(self.guest_tool("send-udp", count, port))

    def info(self) -> dict:
        """Kernel, bcc, bpftool and clang versions of the lab machine."""
        out = self.sh("uname -r; python3 -c 'import bcc; print(bcc.__version__)'; "
                      "bpftool version | head -n1; clang --version | head -n1")
        kernel, bcc_version, bpftool, clang = (out.splitlines() + ["?"] * 4)[:4]
        return {"target": self.target.kind, "kernel": kernel, "bcc": bcc_version, "bpftool": bpftool, "clang": clang}

    def bpftool(self, *args: object) -> object:
        """`bpftool -j ARGS` in the VM, parsed (e.g. lab.bpftool("prog", "list"))."""
        from .inspect.bpftool import Bpftool

        return Bpftool(self)(*args)

    def prog_image(self, prog_id: int):
        """A loaded program's translated bytecode and x86-64 JIT image (`ProgImage`)."""
        from .inspect.jit import ProgImage

        return ProgImage.fetch(self, prog_id)

    def helper_names(self) -> dict[int, str]:
        """BPF helper id -> name, from libbpf's header in the VM."""
        from .inspect.bytecode import helper_names_from_header

        return helper_names_from_header(self.sh("cat /usr/include/bpf/bpf_helper_defs.h"))

    def users(self) -> dict[int, str]:
        """UID -> user name in the VM (for labelling per-UID results)."""
        entries = (line.split(":") for line in self.sh("getent passwd").splitlines())
        return {int(e[2]): e[0] for e in entries if len(e) > 2}

    def prog_ids(self) -> set[int]:
        """IDs of all BPF programs loaded in the VM's kernel."""
        return {p["id"] for p in self.bpftool("prog", "list") or []}


def _echo(run: Run, raw: bool = False) -> Callable[[], None]:
    """A function that prints what the run printed since its last call, and the compile progress on stderr."""
    def write(stream):
        return lambda text: (stream.write(text), stream.flush())

    live = sys.stderr.isatty()
    printer = LivePrinter(run, write(sys.stdout), write(sys.stderr), raw=raw)
    progress = CompileProgress(run, write(sys.stderr), live=live, rewrite="\r\x1b[K" if live else "\r")
    return lambda: drain(printer, progress)


def _new_log_path() -> Path:
    """A fresh run log's path; the oldest logs go, so that at most KEEP_LOGS stay and all of them, with the
    new one at its cap, fit in MAX_LOGS_BYTES."""
    logs = cache_dir() / "runs"
    logs.mkdir(parents=True, exist_ok=True)
    kept = sorted(logs.glob("*.log"))  # oldest first: the names start with the time
    sizes = {path: _size(path) for path in kept}
    count, total = len(kept), sum(sizes.values())
    for old in kept:
        if count < KEEP_LOGS and total + MAX_LOG_BYTES <= MAX_LOGS_BYTES:
            break
        old.unlink(missing_ok=True)
        count, total = count - 1, total - sizes[old]
    return logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


_labs: dict[SshTarget, Lab] = {}


def connect(target: str | None = None) -> Lab:
    """The lab machine: `target` or EBPF_LAB_TARGET, else a running Vagrant VM, else the embedded VM.

    The same machine gives the same `Lab`, so a notebook's `lab` and its %%bcc and %%exercise cells
    share one connection (a restarted VM has a new port, hence a new `Lab`)."""
    ssh_target = select_backend(target).target()
    if ssh_target not in _labs:
        _labs[ssh_target] = Lab(ssh_target)
    return _labs[ssh_target]
