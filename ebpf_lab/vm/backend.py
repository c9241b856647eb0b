"""The seam between the lab and the machines it runs BPF on.

A backend starts and stops its machine and says how ssh reaches it; nothing else in the lab knows
what kind of machine it is. Selection: EBPF_LAB_TARGET (a name in BACKENDS, or ssh://user@host:port),
else this repo's Vagrant machine if it is running, else the embedded VM.

Adding a backend (Lima, WSL2, a cloud VM): one module with a class that has the methods of
`Backend`, and one line in BACKENDS.
"""
from __future__ import annotations

import os
from typing import Callable, Protocol

from ..errors import LabError
from ..transport.target import SshTarget
from .embedded import EmbeddedVM
from .ssh_host import SshHost
from .vagrant import VagrantVM


class Backend(Protocol):
    name: str

    def prepare(self, log: Callable[[str], None] = print) -> None:
        """Make, once, what `up` needs and takes long to make (the embedded VM builds its image)."""

    def up(self, log: Callable[[str], None] = print) -> None:
        """Start the machine if it is not running (and wait until ssh answers)."""

    def down(self) -> bool:
        """Stop it; False if it was not running (or is not ours to stop)."""

    def answers(self) -> bool:
        """Is it up and answering, as far as the backend can tell cheaply?"""

    def status(self) -> str:
        """One line for `ebpf-lab vm status`."""

    def describe(self) -> str:
        """What it is, for messages."""

    def target(self) -> SshTarget:
        """How ssh reaches the running machine (raises with the fix if it is not running)."""


BACKENDS: dict[str, Callable[[], Backend]] = {
    "embedded": EmbeddedVM,
    "vagrant": VagrantVM,
}


def select_backend(name: str | None = None) -> Backend:
    name = name or os.environ.get("EBPF_LAB_TARGET") or ""
    if name in BACKENDS:
        return BACKENDS[name]()
    if name.startswith("ssh://"):
        return SshHost(name)
    if name:
        raise LabError(f"no lab backend named {name!r}",
                       f"set EBPF_LAB_TARGET to one of {', '.join(BACKENDS)} or ssh://user@host:port")
    vagrant = VagrantVM()
    return vagrant if vagrant.running() else EmbeddedVM()
