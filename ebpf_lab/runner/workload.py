"""A workload to generate in the VM while a program runs: commands exec'd as lab users."""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field

from ..errors import BadArgument
from .protocol import WorkloadSpec

SPEC_HELP = "write USER[:COUNT[@RATE/s]][:COMMAND], e.g. alice:20, bob:30@2/s or alice:3:/bin/cat /etc/hostname"
COUNT = re.compile(r"(\d+)(?:@(\d+(?:\.\d+)?)/s)?")


@dataclass(frozen=True)
class Workload:
    """Run `command` `count` times as `user` once the program is running: back to back, or `rate` per second."""

    user: str
    count: int = 10
    command: tuple[str, ...] = field(default=("/bin/true",))
    rate: float | None = None

    @classmethod
    def parse(cls, spec: str) -> "Workload":
        """'alice', 'alice:20', 'alice:30@2/s' or 'alice:20:/usr/bin/id -u'."""
        user, _, rest = spec.partition(":")
        count, _, command = rest.partition(":")
        m = COUNT.fullmatch(count) if count else None
        if not user or (count and not m):
            raise BadArgument(f"bad workload {spec!r}", SPEC_HELP)
        rate = float(m.group(2)) if m and m.group(2) else None
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise BadArgument(f"bad workload {spec!r}: the rate must be above 0", SPEC_HELP)
        return cls(user, int(m.group(1)) if m else 10, tuple(shlex.split(command)) if command else ("/bin/true",), rate)

    def to_spec(self) -> WorkloadSpec:
        return WorkloadSpec(user=self.user, count=self.count, command=list(self.command), rate=self.rate)
