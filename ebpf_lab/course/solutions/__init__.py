"""Reference solutions to the chapter exercises, for learners who want to compare (and for the tests)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
EXERCISES = {p.stem: p for p in sorted(HERE.iterdir()) if p.suffix in (".py", ".c") and p.stem != "__init__"}


def solution(name: str) -> str:
    """The reference solution's source text: Python for bcc exercises, C for the bytecode and XDP ones."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; there are: {', '.join(EXERCISES)}")
    return EXERCISES[name].read_text()


def show_solution(name: str) -> None:
    """Show the reference solution of exercise `name`: on purpose, after trying it yourself."""
    text = solution(name)
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"```{'c' if EXERCISES[name].suffix == '.c' else 'python'}\n{text}```"))
    except ImportError:
        print(text)
