"""A lab machine the user runs themselves (a cloud VM, a spare box): reached over ssh, never started or stopped."""
from __future__ import annotations

import re
from typing import Callable

from ..errors import LabError
from ..transport.target import SshTarget


def parse_ssh_url(url: str) -> SshTarget:
    m = re.fullmatch(r"ssh://(?:([^@/\s]+)@)?([^:/@\s]+)(?::(\d+))?/?", url)
    if not m:
        raise LabError(f"cannot read EBPF_LAB_TARGET={url!r}", "use embedded, vagrant or ssh://user@host:port")
    return SshTarget(kind="ssh", host=m.group(2), port=int(m.group(3) or 22), user=m.group(1) or "root",
                     use_ssh_config=True)


class SshHost:
    name = "ssh"

    def __init__(self, url: str) -> None:
        self.url = url
        self._target = parse_ssh_url(url)

    def prepare(self, log: Callable[[str], None] = print) -> None:
        """Nothing to make: the machine is the user's."""

    def up(self, log: Callable[[str], None] = print) -> None:
        """Nothing to start: the machine is the user's."""

    def down(self) -> bool:
        return False

    def answers(self) -> bool:
        return True  # ssh's own errors say when it does not

    def status(self) -> str:
        return f"managed by you at {self.url}"

    def describe(self) -> str:
        return f"your machine at {self.url} (needs bcc, bpftool and root via sudo -n)"

    def target(self) -> SshTarget:
        return self._target
