"""Which machine the lab talks to, and how to reach it over ssh.

Selection: EBPF_LAB_TARGET (embedded | vagrant | ssh://user@host:port), else this
repo's Vagrant machine if it is running, else the embedded VM.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import LabError, VMNotRunning
from ..paths import cache_dir, repo_dir
from . import embedded
from .keys import identity_file


@dataclass(frozen=True)
class SshTarget:
    """Everything ssh needs to reach a lab machine as a user who can become root."""

    kind: str
    host: str
    port: int
    user: str
    identity: Path | None = None
    # ssh -o options specific to the target (host key pinning, Vagrant's config).
    options: tuple[str, ...] = field(default=())
    # Only a machine the user named (ssh://) may need their ~/.ssh/config (a jump host, say);
    # the embedded and Vagrant VMs are reached with exactly the options given here.
    use_ssh_config: bool = False
    # What the machine's keeper knows when ssh gets no answer (qemu's run state, the guest console).
    diagnose: Callable[[], str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or not self.user or self.user.startswith("-"):
            raise LabError(f"refusing the ssh target {self.user}@{self.host}: a host or user may not start with '-'",
                           "use ssh://user@host:port with a real host name")

    @property
    def needs_sudo(self) -> bool:
        return self.user != "root"


def embedded_target() -> SshTarget:
    st = embedded.require_running()
    known_hosts = cache_dir() / "known_hosts"
    # The image's host key, pinned under an alias because the forwarded port changes per boot.
    known_hosts.write_text(f"{embedded.HOST_KEY_ALIAS} ssh-ed25519 {st.image.host_key}\n")
    return SshTarget(
        kind="embedded", host="127.0.0.1", port=st.port, user="root", identity=identity_file(),
        options=(f"HostKeyAlias={embedded.HOST_KEY_ALIAS}", f"UserKnownHostsFile={known_hosts}",
                 "StrictHostKeyChecking=yes"),
        diagnose=embedded.diagnose,
    )


def _vagrant_machine_created() -> bool:
    return any((repo_dir() / ".vagrant" / "machines").glob("*/*/id"))


def vagrant_running() -> bool:
    if shutil.which("vagrant") is None or not _vagrant_machine_created():
        return False
    out = subprocess.run(["vagrant", "status", "--machine-readable"], cwd=repo_dir(),
                         capture_output=True, text=True).stdout
    return bool(re.search(r",state,running$", out, re.M))


def parse_ssh_config(text: str) -> dict[str, str]:
    """`vagrant ssh-config` output -> {lowercased option: value} for the first host."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() != "host":
            opts.setdefault(parts[0].lower(), parts[1].strip('"'))
    return opts


def vagrant_target() -> SshTarget:
    if not vagrant_running():
        raise VMNotRunning("this repo's Vagrant machine is not running", "start it with: vagrant up")
    text = subprocess.run(["vagrant", "ssh-config"], cwd=repo_dir(), capture_output=True, text=True, check=True).stdout
    cfg = parse_ssh_config(text)
    extra = tuple(f"{k}={v}" for k, v in cfg.items() if k not in ("hostname", "port", "user", "identityfile"))
    return SshTarget(kind="vagrant", host=cfg["hostname"], port=int(cfg.get("port", 22)), user=cfg.get("user", "vagrant"),
                     identity=Path(cfg["identityfile"]) if "identityfile" in cfg else None, options=extra)


def parse_ssh_url(url: str) -> SshTarget:
    m = re.fullmatch(r"ssh://(?:([^@/\s]+)@)?([^:/@\s]+)(?::(\d+))?/?", url)
    if not m:
        raise LabError(f"cannot read EBPF_LAB_TARGET={url!r}", "use embedded, vagrant or ssh://user@host:port")
    return SshTarget(kind="ssh", host=m.group(2), port=int(m.group(3) or 22), user=m.group(1) or "root",
                     use_ssh_config=True)


def select_target(name: str | None = None) -> SshTarget:
    name = name or os.environ.get("EBPF_LAB_TARGET")
    if name == "embedded":
        return embedded_target()
    if name == "vagrant":
        return vagrant_target()
    if name:
        return parse_ssh_url(name)
    if vagrant_running():
        return vagrant_target()
    return embedded_target()
