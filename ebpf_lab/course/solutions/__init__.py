"""Reference solutions to the chapter exercises, for learners who want to compare (and for the tests):
each file is named after its chapter's exercise module (course/exercises/)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _path(name: str) -> Path:
    from .. import EXERCISES

    module = {exercise.NAME: exercise.__name__.rsplit(".", 1)[1] for exercise in EXERCISES}
    if name not in module:
        raise KeyError(f"no exercise named {name!r}; there are: {', '.join(module)}")
    return next(HERE.glob(f"{module[name]}.*"))


def solution(name: str) -> str:
    """The reference solution's source text: Python for bcc exercises, C for those built with clang."""
    return _path(name).read_text()


def show_solution(name: str) -> None:
    """Show the reference solution of exercise `name`: on purpose, after trying it yourself."""
    path = _path(name)
    text = path.read_text()
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"```{'c' if path.suffix == '.c' else 'python'}\n{text}```"))
    except ImportError:
        print(text)
