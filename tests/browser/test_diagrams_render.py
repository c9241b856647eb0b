"""Every Mermaid diagram in the chapters renders in JupyterLab, as a learner opens them (no VM needed).

The notebooks are copied to a scratch folder first: opening them must not touch the course's files.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from .jupyter_page import jupyterlab_server, lab_url, wait_for

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
MERMAID = re.compile(r"^```mermaid\s*$", re.MULTILINE)


def diagrams_in(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(len(MERMAID.findall(c.source)) for c in nb.cells if c.cell_type == "markdown")


CHAPTERS = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")) if diagrams_in(p)]

# Per diagram in the page: "ok" once drawn (an SVG image), or the error JupyterLab shows instead of it;
# null until there are `expected` of them and none is still being drawn.
SETTLED = """const s = [...document.querySelectorAll('.jp-RenderedMermaid')].map(d =>
    d.classList.contains('jp-mod-warning') ? 'error: ' + d.innerText.slice(0, 300) : (d.querySelector('img, svg') ? 'ok' : 'pending'));
return s.length >= EXPECTED && !s.includes('pending') ? s : null;"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    for path in CHAPTERS:
        shutil.copy(path, root / path.name)
    with jupyterlab_server(root, tmp_path_factory.mktemp("jupyter")) as base:
        yield base


def test_the_chapters_have_diagrams():
    assert len(CHAPTERS) >= 6, [p.name for p in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_diagram_renders(served, browser, chapter):
    expected = diagrams_in(chapter)
    browser.get(lab_url(served, chapter.name))
    wait_for(browser, "return window.jupyterapp && document.querySelectorAll('.jp-MarkdownCell').length > 0", 120)
    states = wait_for(browser, SETTLED.replace("EXPECTED", str(expected)), 120)
    errors = [s for s in states if s != "ok"]
    assert not errors, f"{chapter.name}: {errors}"
    assert len(states) == expected
