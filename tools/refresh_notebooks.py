"""Re-execute chapter notebooks against the running lab VM and save them with their outputs.

    .venv/bin/python tools/refresh_notebooks.py [notebooks/NN-*.ipynb ...]

nbval compares each cell's fresh output with the saved one, so after changing a cell (or
what the runner prints) the saved outputs must be refreshed. Streams are saved the way a
frontend shows them (merged per stream, a carriage return overwriting its line, as the
compile progress line does), which is also how nbval compares them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def refresh(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", coalesce_streams=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    print(f"refreshed {path.name}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or sorted(str(p) for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        refresh(Path(arg))
