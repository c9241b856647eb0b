"""Load to generate in the VM while a program runs: commands exec'd as lab users."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..errors import LabError


@dataclass(frozen=True)
class Load:
    """Run `command` `count` times as `user`, once the program has attached its probes."""

    user: str
    count: int = 10
    command: tuple[str, ...] = field(default=("/bin/true",))

    @classmethod
    def parse(cls, spec: str) -> "Load":
        """'alice', 'alice:20' or 'alice:20:/usr/bin/id -u'."""
        user, _, rest = spec.partition(":")
        count, _, command = rest.partition(":")
        try:
            n = int(count) if count else 10
        except ValueError:
            raise LabError(f"bad load {spec!r}: count must be a number", "write USER[:COUNT[:COMMAND]], e.g. alice:20") from None
        if not user or n < 0:
            raise LabError(f"bad load {spec!r}", "write USER[:COUNT[:COMMAND]], e.g. alice:20")
        return cls(user, n, tuple(shlex.split(command)) if command else ("/bin/true",))

    def to_json(self) -> dict:
        return {"user": self.user, "count": self.count, "command": list(self.command)}
