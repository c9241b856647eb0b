"""The Vagrant lab VM: `vagrant up` in this repo, provisioned by provision/lab-provision.sh."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from ..errors import LabError, VMNotRunning
from ..paths import cache_dir, repo_dir
from ..transport.target import SshTarget


# What the lab sets itself instead of taking it from `vagrant ssh-config`.
OWN_OPTIONS = ("hostname", "port", "user", "identityfile", "stricthostkeychecking", "userknownhostsfile",
               "globalknownhostsfile", "hostkeyalias", "checkhostip")


def parse_ssh_config(text: str) -> dict[str, str]:
    """`vagrant ssh-config` output -> {lowercased option: value} for the first host."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() != "host":
            opts.setdefault(parts[0].lower(), parts[1].strip('"'))
    return opts


class VagrantVM:
    name = "vagrant"

    def _machine_ids(self) -> list[Path]:
        # VAGRANT_DOTFILE_PATH moves .vagrant/ (the CI lane keeps its machine apart with it).
        dotfile = Path(os.environ.get("VAGRANT_DOTFILE_PATH") or repo_dir() / ".vagrant")
        if not dotfile.is_absolute():
            dotfile = repo_dir() / dotfile
        return sorted((dotfile / "machines").glob("*/*/id"))

    def _created(self) -> bool:
        return bool(self._machine_ids())

    def machine_id(self) -> str:
        """The id the provider gave this machine: a new one for every `vagrant up` after a destroy."""
        ids = self._machine_ids()
        if not ids:
            raise VMNotRunning("this repo's Vagrant machine is not created", "start it with: vagrant up")
        return re.sub(r"[^\w.-]", "_", ids[0].read_text().strip())

    def running(self) -> bool:
        if shutil.which("vagrant") is None or not self._created():
            return False
        out = subprocess.run(["vagrant", "status", "--machine-readable"], cwd=repo_dir(),
                             capture_output=True, text=True).stdout
        return bool(re.search(r",state,running$", out, re.M))

    def _vagrant(self, *args: str) -> None:
        if shutil.which("vagrant") is None:
            raise LabError("vagrant is not installed", "install Vagrant, or use the embedded VM: EBPF_LAB_TARGET=embedded")
        subprocess.run(["vagrant", *args], cwd=repo_dir(), check=True)

    def prepare(self, log: Callable[[str], None] = print) -> None:
        """Nothing to make ahead: `vagrant up` fetches the box and provisions it."""

    def up(self, log: Callable[[str], None] = print) -> None:
        if not self.running():
            self._vagrant("up")

    def down(self) -> bool:
        if not self.running():
            return False
        self._vagrant("halt")
        return True

    def answers(self) -> bool:
        return self.running()

    def status(self) -> str:
        return "running" if self.running() else "not running (start it with: vagrant up)"

    def describe(self) -> str:
        return f"this repo's Vagrant machine ({repo_dir() / 'Vagrantfile'}), {self.status()}"

    def target(self) -> SshTarget:
        if not self.running():
            raise VMNotRunning("this repo's Vagrant machine is not running", "start it with: vagrant up")
        text = subprocess.run(["vagrant", "ssh-config"], cwd=repo_dir(), capture_output=True, text=True,
                              check=True).stdout
        cfg = parse_ssh_config(text)
        extra = tuple(f"{k}={v}" for k, v in cfg.items() if k not in OWN_OPTIONS)
        # `vagrant ssh-config` turns host key checking off. The ssh link runs everything as root, so the
        # key is pinned instead: accepted at first contact with this machine (by its id), refused after
        # if it changes. A machine re-created with `vagrant destroy`/`up` has a new id, hence a new pin.
        machine = self.machine_id()
        known_hosts = cache_dir() / "vagrant-known-hosts" / machine
        known_hosts.parent.mkdir(mode=0o700, exist_ok=True)
        alias = f"ebpf-lab-vagrant-{machine}"
        pinning = (f"HostKeyAlias={alias}", f"UserKnownHostsFile={known_hosts}", "GlobalKnownHostsFile=/dev/null",
                   "StrictHostKeyChecking=accept-new")
        return SshTarget(kind="vagrant", host=cfg["hostname"], port=int(cfg.get("port", 22)),
                         user=cfg.get("user", "vagrant"),
                         identity=Path(cfg["identityfile"]) if "identityfile" in cfg else None,
                         options=extra + pinning,
                         host_key_fix=f"if you changed the machine's host key yourself, forget the old one: "
                                      f"ssh-keygen -R {alias} -f {known_hosts}")
