"""A live chart of a counter map: each key's count over time, and the map's current values."""
from __future__ import annotations

from typing import Callable

from matplotlib.figure import Figure

from ..runner.run import Record
from .figure_view import FigureView
from .live_view import SampleHistory

Sample = tuple[float, dict[int, int]]


class CountsChart(FigureView):
    """Draws records named `record` whose payload maps an integer key to a count (e.g. a BPF map read
    every 0.5 s): a line per key over the run's time on the left, the latest values as bars on the
    right. `label(key)` names a key on the chart (default: the number).

    `history` holds the samples that changed something, as (seconds since the first sample, {key: count}):
    every one of them in a short run; in a long one at most `max_samples`, spread evenly over the run.
    """

    max_samples = 500  # per series: about the chart's width in pixels, and bounded over a long run

    def __init__(self, record: str = "counts", title: str = "counts",
                 label: Callable[[int], str] | None = None) -> None:
        self.record = record
        self.title = title
        self._label = label or str
        super().__init__()

    def reset(self) -> None:
        self.counts: dict[int, int] = {}
        self._history: SampleHistory[Sample] = SampleHistory(self.max_samples)

    @property
    def history(self) -> list[Sample]:
        return self._history.samples()

    def update(self, record: Record) -> bool:
        if record.name != self.record:
            return False
        # Keys arrive as strings (the records travel as JSON).
        counts = {int(key): int(n) for key, n in record.payload.items()}
        if counts == self.counts:
            return False
        self.counts = counts
        self._history.add((self.since_first_record(), counts))
        return True

    def label(self, key: int) -> str:
        return self._label(key)

    def series(self, key: int) -> list[int]:
        """`key`'s count in every sample of `history` (0 before it first appeared)."""
        return [c.get(key, 0) for _, c in self.history]

    def snapshot(self) -> tuple[list[Sample], dict[int, int]]:
        # Each change makes new dicts and never changes old ones: a new list of them is copy enough.
        return self.history, self.counts

    def draw(self, fig: Figure) -> None:
        history, counts = self.frame
        if not history:
            self.waiting(fig, self.title)
            return
        over_time, now = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        keys = sorted(counts)
        times = [t for t, _ in history]
        for key in keys:
            # A key first seen later counted 0 before: its line starts at 0 where it appeared.
            over_time.step(times, [c.get(key, 0) for _, c in history], where="post", label=self.label(key))
        over_time.set_xlabel("seconds since the first sample")
        over_time.set_ylabel("count")
        over_time.set_title(f"{self.title}, over time")
        over_time.legend(loc="upper left", fontsize=8)
        now.barh([self.label(k) for k in keys], [counts[k] for k in keys], color="tab:orange")
        now.set_title("the map now")
        for i, k in enumerate(keys):
            now.annotate(str(counts[k]), (counts[k], i), xytext=(3, 0), textcoords="offset points",
                         va="center")
        now.margins(x=0.25)
