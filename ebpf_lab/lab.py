"""The lab as the notebooks and the CLI see it: a machine that runs BCC programs as root."""
from __future__ import annotations

import hashlib
import io
import json
import shlex
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Iterable

from .paths import cache_dir
from .runner.load import Load
from .runner.run import Run
from .transport.ssh import SshTransport
from .vm.target import SshTarget, select_target

GUEST_DIR = Path(__file__).parent / "runner" / "guest"
KEEP_LOGS = 50


def _guest_bundle() -> tuple[str, bytes]:
    """The guest-side runner as a tarball, and a digest naming its directory in the VM."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(GUEST_DIR.glob("*.py")):
            tar.add(path, arcname=path.name)
    data = buf.getvalue()
    return hashlib.sha256(data).hexdigest()[:12], data


class Lab:
    """A lab machine reached over ssh. Get one with `ebpf_lab.connect()`."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.ssh = SshTransport(target)
        digest, self._bundle = _guest_bundle()
        self._guest_dir = f"/run/ebpf-lab/guest-{digest}"

    def __repr__(self) -> str:
        return f"<Lab {self.target.kind} {self.target.user}@{self.target.host}:{self.target.port}>"

    def sh(self, command: str, check: bool = True, input: bytes | None = None, timeout: float | None = 120) -> str:
        """Run a shell command in the VM as root; return its stdout."""
        return self.ssh.run(command, input=input, check=check, timeout=timeout).stdout.decode(errors="replace")

    def _install_guest(self) -> None:
        d = shlex.quote(self._guest_dir)
        # /run is a tmpfs in the VM: after a reboot the runner is sent again.
        self.ssh.run(f"test -f {d}/supervisor.py && cat >/dev/null || (mkdir -p {d} && tar -x -C {d})", input=self._bundle)

    def start(self, source: str, *, timeout: float | None = None, load: Iterable[Load | str] = (),
              filename: str = "<cell>", grace: float = 3.0) -> Run:
        """Start a BCC Python program in the VM as root and return at once with its live `Run`."""
        self._install_guest()
        loads = [l if isinstance(l, Load) else Load.parse(l) for l in load]
        header = {"source": source, "filename": filename, "timeout": timeout, "grace": grace,
                  "load": [l.to_json() for l in loads]}
        proc = self.ssh.popen(f"exec python3 -u {shlex.quote(self._guest_dir)}/supervisor.py")
        proc.stdin.write(json.dumps(header).encode() + b"\n")
        proc.stdin.flush()
        return Run(proc, source, _new_log_path())

    def run(self, source: str, *, timeout: float | None = None, load: Iterable[Load | str] = (),
            filename: str = "<cell>", echo: bool = True, check: bool = True) -> Run:
        """Run a program to its end (or timeout), printing its output live if `echo`."""
        def show(line):
            (sys.stdout if line.stream == "stdout" else sys.stderr).write(line.text + "\n")

        run = self.start(source, timeout=timeout, load=load, filename=filename)
        if echo:
            run.subscribe(on_line=show)
        try:
            run.wait()
        except KeyboardInterrupt:
            run.interrupt()
            raise
        if check:
            run.raise_for_status()
        return run

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


def _new_log_path() -> Path:
    logs = cache_dir() / "runs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in sorted(logs.glob("*.log"))[:-KEEP_LOGS]:
        old.unlink(missing_ok=True)
    return logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log"


def connect(target: str | None = None) -> Lab:
    """The lab machine: `target` or EBPF_LAB_TARGET, else a running Vagrant VM, else the embedded VM."""
    return Lab(select_target(target))
