"""Where a lab machine is and how ssh reaches it: all the transport needs to know about a machine."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import LabError


@dataclass(frozen=True)
class DataChannelRoute:
    """Ways from the machine to this host that need neither ssh nor a network: serial ports, each a
    (name in the guest, Unix socket on this host) pair. A run leases one with a lock file beside its
    socket (see runner/data_channel.py)."""

    ports: tuple[tuple[str, Path], ...]


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
    # How a run's output can reach this host without ssh, if it can (only the embedded VM offers it).
    data_channel: DataChannelRoute | None = None
    # What the machine's keeper knows when ssh gets no answer (qemu's run state, the guest console).
    diagnose: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    # What to do when the machine's host key is not the pinned one (said with the refusal).
    host_key_fix: str | None = None

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or not self.user or self.user.startswith("-"):
            raise LabError(f"refusing the ssh target {self.user}@{self.host}: a host or user may not start with '-'",
                           "use ssh://user@host:port with a real host name")

    @property
    def needs_sudo(self) -> bool:
        return self.user != "root"
