"""A JupyterLab server for the browser tests, and waiting on what its page shows."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from ebpf_lab.cli import OFFLINE_LAB, offline_lab_env

TOKEN = "ebpf-lab-browser-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab_server(root: Path, scratch: Path) -> Iterator[str]:
    """A JupyterLab serving `root`, with its settings and runtime files in `scratch`; yields its base URL.

    Notebook windowing is off, so every cell of a long notebook is in the page (as when printed)."""
    settings = scratch / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={TOKEN}", "--ServerApp.disable_check_xsrf=True", "--expose-app-in-browser",
         f"--ServerApp.root_dir={root}", "--allow-root", *OFFLINE_LAB],
        stdout=subprocess.DEVNULL, stderr=open(scratch / "jupyter.log", "wb"), cwd=root,
        env=offline_lab_env({**os.environ, "JUPYTER_CONFIG_DIR": str(scratch / "cfg"),
                             "JUPYTER_RUNTIME_DIR": str(scratch / "rt"),
                             "JUPYTERLAB_SETTINGS_DIR": str(scratch / "settings")}))
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def lab_url(base: str, notebook: str) -> str:
    # reset: a fresh workspace, so notebooks opened before in this browser are not open (and in the page) too
    return f"{base}/lab/tree/{notebook}?reset&token={TOKEN}"


def wait_for(driver, script: str, seconds: float):
    """The first truthy value of `script` in the page, polled until `seconds` have passed."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for: {script}")
