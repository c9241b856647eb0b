"""How the project's tests are run, in one place: `./lab.sh test` and the Vagrant lane both come here.

Notebooks run under nbval with the course's sanitize rules and a per-cell deadline far beyond a slow
compile under software emulation; a run that collects no tests fails (pytest's exit 5 would pass
silently in a shell that only checks for non-zero).

    python -m tests.suite PATH... [pytest options]
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NBVAL_OPTIONS = ["--nbval", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "--nbval-cell-timeout", "300"]
NO_TESTS_COLLECTED = 5


def pytest_command(args: list[str]) -> list[str]:
    # --durations: the slowest tests in every CI log, where the budget in DEVELOPERS.md goes
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--durations=25", *args, *NBVAL_OPTIONS]


def run(args: list[str], env: dict[str, str] | None = None) -> int:
    """pytest over `args` (paths and options); its exit status, with "no tests" made a failure."""
    status = subprocess.run(pytest_command(args), cwd=REPO, env=env or os.environ.copy()).returncode
    if status == NO_TESTS_COLLECTED:
        print("tests: pytest collected no tests", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
