"""What Debian's archive resolves today for a set of packages.

An image is made of packages, and the archive replaces them (a new kernel ABI, a bcc or clang
fix, a security update) while nothing in this repository changes. So the cache key of an image
also covers the versions apt would install today. They are looked up with apt itself, against
the sources the build uses, in a private state directory under the cache: about 9 MB of indices
the first time, about a second after that, and the host's own apt is never touched.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import LabError
from ..paths import cache_dir

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
KERNEL_IMAGE = re.compile(r"^linux-image-\d[\w.+-]*$")
# A lookup that takes longer than this has a network problem, not a slow machine.
UPDATE_TIMEOUT = 300


class ArchiveUnreachable(LabError):
    pass


@dataclass(frozen=True)
class Resolution:
    """The packages installing the wanted ones would bring in today, each with its version."""

    versions: Mapping[str, str]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.versions.items())).encode()).hexdigest()[:12]

    @property
    def kernels(self) -> list[str]:
        """The kernel image packages among them (linux-image-6.1.0-57-cloud-amd64, ...)."""
        return sorted(name for name in self.versions if KERNEL_IMAGE.match(name))

    def changes_since(self, before: Mapping[str, str], limit: int = 6) -> str:
        """What moved between `before` and now, kernels first, in one line."""
        new = [n for n in self.versions if n not in before]
        gone = [n for n in before if n not in self.versions]
        moved = [n for n in self.versions if n in before and before[n] != self.versions[n]]
        items = ([f"{n} new" for n in sorted(new, key=_kernel_first)]
                 + [f"{n} {before[n]} -> {self.versions[n]}" for n in sorted(moved, key=_kernel_first)]
                 + [f"{n} gone" for n in sorted(gone, key=_kernel_first)])
        if not items:
            return "nothing"
        more = len(items) - limit
        return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def _kernel_first(name: str) -> tuple[int, str]:
    return (0 if name.startswith("linux-") else 1, name)


def resolve(wanted: Sequence[str], sources: Sequence[str], arch: str,
            also_named: str | None = None) -> Resolution:
    """Versions apt would install today for `wanted` and what they depend on (no recommends), as on
    an empty machine; `also_named` (a regex) adds the names of every package that matches it, for a
    recipe that picks a package by name (the Vagrant box takes the oldest kernel ABI)."""
    state = cache_dir() / "archive" / arch
    with _private_apt(state, sources, arch) as apt:
        try:
            apt.run("apt-get", "update")
            simulated = apt.run("apt-get", "install", "--simulate", "--no-install-recommends", *wanted)
            versions = installs(simulated)
            if also_named:
                for name in apt.run("apt-cache", "search", "--names-only", also_named).split("\n"):
                    if name.strip():
                        versions.setdefault(name.split(" - ")[0].strip(), "(named)")
        except subprocess.TimeoutExpired:
            raise ArchiveUnreachable(f"Debian's archive did not answer within {UPDATE_TIMEOUT} s",
                                     "check network access to the Debian mirror") from None
    if not versions:
        raise ArchiveUnreachable(f"apt resolved none of {', '.join(wanted)}", "check the Debian mirror")
    return Resolution(versions)


def installs(simulation: str) -> dict[str, str]:
    """Package -> version from `apt-get install --simulate` ("Inst bpftool (7.1.0+6.1.192-3 Debian:...)")."""
    return dict(re.findall(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ", simulation, re.M))


class _private_apt:
    """apt with its lists, cache and (empty) status under `state`; one user of `state` at a time."""

    def __init__(self, state: Path, sources: Sequence[str], arch: str) -> None:
        self.state = state
        self.sources = sources
        self.arch = arch

    def __enter__(self) -> "_private_apt":
        for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        self._lock = open(self.state / ".lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
        (self.state / "etc/sources.list").write_text(
            "".join(f"{line.replace('deb ', 'deb ' + signed, 1)}\n" for line in self.sources))
        (self.state / "status").touch()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.close()

    def options(self) -> list[str]:
        s = self.state
        settings = {
            "Dir::State::Lists": s / "lists", "Dir::State::status": s / "status", "Dir::Cache": s / "cache",
            "Dir::Etc::SourceList": s / "etc/sources.list", "Dir::Etc::SourceParts": s / "etc/sources.list.d",
            "Dir::Etc::Preferences": s / "etc/preferences", "Dir::Etc::PreferencesParts": s / "etc/preferences.d",
            "APT::Architecture": self.arch, "APT::Architectures": self.arch, "Acquire::Languages": "none",
            "Debug::NoLocking": "true",
        }
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def run(self, *cmd: str) -> str:
        proc = subprocess.run([cmd[0], *self.options(), *cmd[1:]], capture_output=True, text=True,
                              timeout=UPDATE_TIMEOUT, env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        failed = proc.returncode != 0 or re.search(r"^(E:|W: Failed to fetch)", proc.stderr, re.M)
        if failed:
            reason = next((line for line in proc.stderr.splitlines() if line.startswith(("E:", "W:"))),
                          proc.stderr.strip() or f"exit {proc.returncode}")
            raise ArchiveUnreachable(f"could not ask Debian's archive ({' '.join(cmd[:2])}): {reason}",
                                     "check network access to the Debian mirror (EBPF_LAB_DEBIAN_MIRROR)")
        return proc.stdout
