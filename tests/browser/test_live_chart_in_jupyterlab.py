"""Chapter 2's live chart, as a learner sees it: JupyterLab in Debian's Chromium, the real kernel in the VM.

The cell that draws the chart is taken from notebooks/02-maps.ipynb as it is; JupyterLab runs it in
a scratch copy (so the course's saved outputs stay untouched) and the page is read while it runs.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest

from .jupyter_page import jupyterlab_server, lab_url, wait_for

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 600  # seconds: a compile under software emulation, the load, the redraws


def _cells_of_chapter_2() -> list[str]:
    nb = nbformat.read(REPO / "notebooks" / "02-maps.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = next(s for s in code if "ebpf_lab.connect()" in s)
    chart = next(s for s in code if s.startswith("chart = UidChart("))
    live = next(s for s in code if s.startswith("%%bcc") and "--attach chart" in s)
    return [setup, chart, live]


@pytest.fixture
def jupyterlab(tmp_path, lab):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in _cells_of_chapter_2()])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "live.ipynb")
    with jupyterlab_server(tmp_path, tmp_path) as base:
        yield lab_url(base, "live.ipynb")


def _wait(driver, script: str, seconds: float = DEADLINE):
    return wait_for(driver, script, seconds)


# The image in the live cell's output area (the third code cell), and whether that cell is still running.
LIVE_IMAGE = "const o = document.querySelectorAll('.jp-CodeCell')[2].querySelector('.jp-OutputArea img'); return o ? o.src : null;"
RUNNING = "return document.querySelectorAll('.jp-CodeCell')[2].querySelector('.jp-InputPrompt').textContent.includes('*');"


def test_the_chart_redraws_while_the_cell_runs_and_its_last_frame_stays(jupyterlab, browser):
    browser.get(jupyterlab)
    _wait(browser, "return window.jupyterapp && document.querySelectorAll('.jp-CodeCell').length === 3", 120)
    _wait(browser, "return window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'", 120)
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    _wait(browser, RUNNING, 120)
    frames, deadline = [], time.time() + DEADLINE
    while browser.execute_script(RUNNING) and time.time() < deadline:
        src = browser.execute_script(LIVE_IMAGE)
        if src and (not frames or frames[-1] != src):
            frames.append(src)
        time.sleep(0.1)
    assert not browser.execute_script(RUNNING), "the cell did not finish"
    assert len(frames) >= 3, f"the chart changed {len(frames)} times while the cell ran"
    time.sleep(2)  # the kernel is idle: what stays on the page is the final, static frame
    final = browser.execute_script(LIVE_IMAGE)
    assert final and final.startswith("data:image/png"), final
    text = browser.execute_script("return document.querySelectorAll('.jp-CodeCell')[2].querySelector('.jp-OutputArea').innerText")
    assert "Image(value=" not in text and "Traceback" not in text, text
    # The progress line was rewritten in place: nothing of "compiling the BPF program… N s" is left after it.
    compiled = [line for line in text.splitlines() if "compiled in" in line]
    assert compiled and all(re.fullmatch(r"compiled in \d+\.\d s\s*", line) for line in compiled), compiled
    # Started offline-ready: no prompt to fetch Jupyter's news.
    assert "official Jupyter news" not in browser.execute_script("return document.body.innerText")
