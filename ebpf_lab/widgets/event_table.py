"""A live table of the latest events from a perf or ring buffer, with counts of lost events."""
from __future__ import annotations

import html
from collections import deque

import ipywidgets as widgets
from IPython.display import HTML

from ..runner.run import Record
from .live_view import LiveView

# Inline styles: the same table must look right live (in a widget) and saved (in plain HTML output).
_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px;margin-top:4px"
_TH = "text-align:left;padding:2px 10px;border-bottom:2px solid #888"
_TD = "padding:2px 10px;border-bottom:1px solid #ddd"


class EventTable(LiveView):
    """Shows the last `rows` records named `record`; records named `lost` (payload: a count) add to the
    lost total. `arrivals` keeps when the latest `max_arrivals` events arrived (seconds since the first)."""

    max_arrivals = 10_000  # a long run's stream must not grow without bound

    def __init__(self, record: str = "event", rows: int = 15, columns: list[str] | None = None) -> None:
        self.record = record
        self.rows = rows
        self.columns = columns
        super().__init__()

    def make_widget(self) -> widgets.HTML:
        return widgets.HTML()

    def reset(self) -> None:
        self.latest: deque[dict] = deque(maxlen=self.rows)
        self.arrivals: deque[float] = deque(maxlen=self.max_arrivals)
        self.total = 0
        self.lost = 0

    def update(self, record: Record) -> bool:
        if record.name == self.record:
            self.arrivals.append(self.since_first_record())
            self.total += 1
            self.latest.append(record.payload if isinstance(record.payload, dict) else {"value": record.payload})
            return True
        if record.name == "lost":
            self.lost += int(record.payload)
            return True
        return False

    def snapshot(self) -> tuple[list[dict], int, int]:
        return list(self.latest), self.total, self.lost

    def html(self) -> str:
        """The table as last drawn."""
        latest, total, lost = self.frame
        if not total and not lost:
            return "<p style='color:#666'><i>waiting for the first event from the kernel…</i></p>"
        cols = self.columns or (list(latest[-1]) if latest else [])
        head = "".join(f"<th style='{_TH}'>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td style='{_TD}'>{html.escape(str(ev.get(c, '')))}</td>" for c in cols)
                       + "</tr>" for ev in latest)
        return (f"<p><b>{total}</b> events, <b>{lost}</b> lost; the latest {len(latest)}:</p>"
                f"<table style='{_TABLE}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def render(self) -> None:
        self.widget.value = self.html()

    def final_display(self) -> HTML:
        return HTML(self.html())
