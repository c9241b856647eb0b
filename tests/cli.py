"""The `ebpf-lab` command as the tests run it: this Python's package, a changed environment, output kept."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable


def cli(*args: str, env: dict | None = None, unset: Iterable[str] = (),
        timeout: float = 300) -> subprocess.CompletedProcess:
    """`ebpf-lab ARGS` with `env` added to the environment and the variables in `unset` removed."""
    environ = {k: v for k, v in os.environ.items() if k not in set(unset)}
    return subprocess.run([sys.executable, "-m", "ebpf_lab", *args], capture_output=True, text=True,
                          env={**environ, **(env or {})}, timeout=timeout)
