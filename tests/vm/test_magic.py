"""%%bcc in IPython and in a real Jupyter kernel, against the VM."""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient

from ebpf_lab import ProgramFailed
from tests.programs import HASH_MAP, HELLO


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ebpf_lab")
    return ip


class TimedWriter:
    """Stands in for the cell's stdout and notes when each write happened."""

    def __init__(self):
        self.writes: list[tuple[float, str]] = []

    def write(self, s):
        self.writes.append((time.time(), s))

    def flush(self):
        pass

    @property
    def text(self):
        return "".join(s for _, s in self.writes)


def test_hash_map_cell_streams_counts_for_two_users(shell, lab, clean_kernel, monkeypatch):
    out = TimedWriter()
    monkeypatch.setattr(sys, "stdout", out)
    shell.run_cell_magic("bcc", "--timeout 10 --load alice:5 --load bob:3", HASH_MAP)
    run = shell.user_ns["_bcc_run"]
    lines = [l for l in out.text.splitlines() if l.startswith("ID")]
    assert len(lines) >= 2, out.text
    counts = {int(u): int(c) for u, c in re.findall(r"ID (\d+): (\d+)", lines[-1])}
    assert counts[1001] >= 5 and counts[1002] >= 3
    first_count_at = next(t for t, s in out.writes if s.startswith("ID"))
    assert first_count_at < run.ended_at - 3, "counts must appear while the program runs, not at the end"
    assert "[stopped after --timeout 10 s]" in out.text


def test_interrupting_the_cell_stops_the_program(shell, lab, clean_kernel):
    def interrupt_when_attached():
        deadline = time.time() + 60
        while time.time() < deadline:
            run = shell.user_ns.get("_bcc_run")
            if run is not None and not run.done and any(e["k"] == "attached" for e in run.events):
                os.kill(os.getpid(), signal.SIGINT)  # what Jupyter's interrupt button does
                return
            time.sleep(0.1)

    shell.user_ns.pop("_bcc_run", None)
    threading.Thread(target=interrupt_when_attached, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic("bcc", "", HELLO)
    run = shell.user_ns["_bcc_run"]
    assert run.done and run.interrupted


def test_output_is_capped_in_the_cell(shell, lab, capsys):
    shell.run_cell_magic("bcc", "--max-lines 5", "for i in range(1000):\n    print(i)\n")
    out = capsys.readouterr().out
    assert out.splitlines()[:5] == ["0", "1", "2", "3", "4"]
    assert "[995 more lines not shown; all 1000 are in _bcc_run.read_log()]" in out


def test_compile_error_is_raised_with_cell_line(shell, lab):
    cell = 'from bcc import BPF\nb = BPF(text="""\nint f(void *ctx) {\n  return nope;\n}\n""")\n'
    with pytest.raises(ProgramFailed) as info:
        shell.run_cell_magic("bcc", "", cell)
    assert "cell line 4, column 10: use of undeclared identifier 'nope'" in str(info.value)
    assert info.value._render_traceback_()[0].startswith("ProgramFailed: the BPF C code does not compile")


def test_in_a_jupyter_kernel(lab, clean_kernel, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext ebpf_lab"),
                nbformat.v4.new_code_cell("%%bcc --timeout 10 --load alice:4 --load bob:2\n" + HASH_MAP)]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    counts = {int(u): int(c) for u, c in re.findall(r"ID (\d+): (\d+)", text.splitlines()[-2])}
    assert counts.get(1001, 0) >= 4 and counts.get(1002, 0) >= 2, text
