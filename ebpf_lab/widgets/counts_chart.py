"""A live chart of a counter map: each key's count over time, and the map's current values."""
from __future__ import annotations

from typing import Callable

from matplotlib.figure import Figure

from ..runner.run import Record
from .figure_view import FigureView


class CountsChart(FigureView):
    """Draws records named `record` whose payload maps an integer key to a count (e.g. a BPF map read
    every 0.5 s): a line per key over the run's time on the left, the latest values as bars on the
    right. `label(key)` names a key on the chart (default: the number).

    `history` keeps every sample that changed something, as (seconds since the first sample, {key: count}).
    """

    def __init__(self, record: str = "counts", title: str = "counts",
                 label: Callable[[int], str] | None = None) -> None:
        self.record = record
        self.title = title
        self._label = label or str
        super().__init__()

    def reset(self) -> None:
        self.counts: dict[int, int] = {}
        self.history: list[tuple[float, dict[int, int]]] = []

    def update(self, record: Record) -> bool:
        if record.name != self.record:
            return False
        # Keys arrive as strings (the records travel as JSON).
        counts = {int(key): int(n) for key, n in record.payload.items()}
        if counts == self.counts:
            return False
        self.counts = counts
        self.history.append((self.since_first_record(), counts))
        return True

    def label(self, key: int) -> str:
        return self._label(key)

    def series(self, key: int) -> list[int]:
        """`key`'s count in every sample so far (0 before it first appeared)."""
        return [c.get(key, 0) for _, c in self.history]

    def draw(self, fig: Figure) -> None:
        if not self.history:
            self.waiting(fig, self.title)
            return
        over_time, now = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        keys = sorted(self.counts)
        for key in keys:
            # A key first seen later counted 0 before: its line starts at 0 where it appeared.
            over_time.step([t for t, _ in self.history], self.series(key), where="post", label=self.label(key))
        over_time.set_xlabel("seconds since the first sample")
        over_time.set_ylabel("count")
        over_time.set_title(f"{self.title}, over time")
        over_time.legend(loc="upper left", fontsize=8)
        now.barh([self.label(k) for k in keys], [self.counts[k] for k in keys], color="tab:orange")
        now.set_title("the map now")
        for i, k in enumerate(keys):
            now.annotate(str(self.counts[k]), (self.counts[k], i), xytext=(3, 0), textcoords="offset points",
                         va="center")
        now.margins(x=0.25)
