"""Reach a lab machine with OpenSSH, reusing one master connection.

A fresh ssh handshake costs ~0.9 s against an emulated guest; ControlMaster brings
every later command down to a few milliseconds.
"""
from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path

from ..errors import SshFailed
from ..paths import runtime_dir
from .target import SshTarget

SSH_UNREACHABLE = 255


class SshTransport:
    def __init__(self, target: SshTarget) -> None:
        self.target = target
        # Our own short name rather than ssh's %C (40 hex digits): it leaves room under the socket
        # path limit, and one machine (host, port, user, key alias) still gets one master.
        name = hashlib.sha256(repr((target.host, target.port, target.user, str(target.identity), target.options)).encode()).hexdigest()[:16]
        self._control_path = runtime_dir() / f"ssh-{name}"

    def argv(self, command: str, as_root: bool = True) -> list[str]:
        t = self.target
        opts = [
            "BatchMode=yes", "LogLevel=ERROR", "ConnectTimeout=30",
            "ServerAliveInterval=5", "ServerAliveCountMax=3",
            "ControlMaster=auto", f"ControlPath={self._control_path}", "ControlPersist=600",
            "IdentitiesOnly=yes",
            # Notebook code runs as root in the VM: hand it no agent, no X display and no forwarded ports,
            # whatever the user's ~/.ssh/config says (options given here win over the config file).
            "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes",
            *t.options,
        ]
        argv = ["ssh"]
        if not t.use_ssh_config:
            argv += ["-F", "none"]
        argv += ["-p", str(t.port), "-l", t.user]
        if t.identity:
            argv += ["-i", str(t.identity)]
        for o in opts:
            argv += ["-o", o]
        if as_root and t.needs_sudo:
            command = "sudo -n sh -c " + shlex.quote(command)
        # "--": a host name can never be taken for an option.
        return [*argv, "--", t.host, command]

    def run(self, command: str, input: bytes | None = None, timeout: float | None = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command on the lab machine as root and capture its output."""
        proc = subprocess.run(self.argv(command), input=input, capture_output=True, timeout=timeout)
        if proc.returncode == SSH_UNREACHABLE:
            raise self.unreachable(proc.stderr)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise SshFailed(f"`{command}` failed in the lab VM (exit {proc.returncode}): {err[-500:]}")
        return proc

    def popen(self, command: str) -> subprocess.Popen:
        """Start a command as root with pipes for stdin/stdout/stderr (for streaming)."""
        return subprocess.Popen(self.argv(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    def unreachable(self, stderr: bytes) -> SshFailed:
        text = stderr.decode(errors="replace")
        if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            t = self.target
            return SshFailed(f"refusing the lab VM ({t.kind}, {t.host}:{t.port}): its ssh host key is not the one "
                             "pinned for it, so it may not be the machine it claims to be",
                             t.host_key_fix or "find out what answers on that port before trusting it")
        last = (text.strip().splitlines() or ["no answer"])[-1]
        why = f"; {self.target.diagnose()}" if self.target.diagnose else ""
        return SshFailed(f"cannot reach the lab VM over ssh ({self.target.kind}, port {self.target.port}): {last}{why}",
                         "check it with: ebpf-lab vm status (restart: ebpf-lab vm down && ebpf-lab vm up)")

    def copy_in(self, data: bytes, remote_path: str) -> None:
        """Write `data` to a file in the lab machine (atomically)."""
        d = shlex.quote(str(Path(remote_path).parent))
        p = shlex.quote(remote_path)
        self.run(f"mkdir -p {d} && cat > {p}.tmp && mv {p}.tmp {p}", input=data)
