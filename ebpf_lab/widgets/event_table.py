"""A live table of the latest events from a perf or ring buffer, with counts of lost events."""
from __future__ import annotations

import html
from collections import deque

import ipywidgets as widgets
from IPython.display import HTML

from ..runner.run import Record
from .live_view import LiveView


class EventTable(LiveView):
    """Shows the last `rows` records named `record`; records named `lost` (payload: a count) add to the lost total."""

    def __init__(self, record: str = "event", rows: int = 15, columns: list[str] | None = None) -> None:
        super().__init__()
        self.record = record
        self.columns = columns
        self.latest: deque[dict] = deque(maxlen=rows)
        self.total = 0
        self.lost = 0
        self.widget = widgets.HTML()
        self.render()

    def update(self, record: Record) -> None:
        if record.name == self.record:
            self.total += 1
            self.latest.append(record.payload if isinstance(record.payload, dict) else {"value": record.payload})
        elif record.name == "lost":
            self.lost += int(record.payload)

    def html(self) -> str:
        cols = self.columns or (list(self.latest[-1]) if self.latest else [])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(ev.get(c, '')))}</td>" for c in cols) + "</tr>"
                       for ev in self.latest)
        return (f"<p><b>{self.total}</b> events, <b>{self.lost}</b> lost; latest {len(self.latest)}:</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def render(self) -> None:
        self.widget.value = self.html()

    def final_display(self) -> HTML:
        return HTML(self.html())
