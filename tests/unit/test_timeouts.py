"""Every test has a deadline: a hang fails that test, and the rest of the run goes on."""
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import LONG_TIMEOUT, needs_long_timeout

REPO = Path(__file__).resolve().parents[2]


def test_every_test_has_a_generous_default_timeout(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pytest-timeout (the test extra) is not installed"
    assert 600 <= float(pytestconfig.getini("timeout")) < LONG_TIMEOUT
    assert pytestconfig.getini("timeout_method") == "signal"


def test_tests_of_the_vm_the_browser_and_notebooks_get_the_longer_timeout():
    for slow in ("tests/vm/test_runner.py", "tests/vagrant/test_same_lab.py", "tests/browser/test_diagrams_render.py",
                 "notebooks/01-kprobes.ipynb"):
        assert needs_long_timeout(REPO / slow), slow
    assert not needs_long_timeout(Path(__file__)) and not needs_long_timeout(REPO / "tests/cli.py")


def test_a_test_past_its_timeout_fails_alone(tmp_path):
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hangs():\n    time.sleep(120)\n\n"
                                           "def test_after():\n    pass\n")
    # The project's settings (the method), with a deadline of a second instead of the default; only
    # pytest-timeout of the installed plugins, which take seconds to load.
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                           "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), "--timeout", "1", "-q",
                           str(tmp_path / "test_hang.py")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeout (>1.0s) from pytest-timeout" in done.stdout and "1 failed, 1 passed" in done.stdout, done.stdout
