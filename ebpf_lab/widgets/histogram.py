"""A live log2 histogram, the picture of a BPF_HISTOGRAM: one bar per power-of-two bucket, redrawn as it fills."""
from __future__ import annotations

from matplotlib.figure import Figure

from ..runner.run import Record
from .figure_view import FigureView
from .live_view import SampleHistory


def log2_range(bucket: int) -> tuple[int, int]:
    """The values bucket `bucket` of a BPF_HISTOGRAM filled with bcc's `bpf_log2l(v)` counts.
    `bpf_log2l(v)` is floor(log2 v) + 1, and 1 for 0: bucket n holds 2^(n-1) to 2^n - 1, bucket 1 holds
    0 and 1 (bucket 0 stays empty)."""
    if bucket <= 1:
        return 0, bucket
    return 1 << (bucket - 1), (1 << bucket) - 1


def bucket_label(bucket: int) -> str:
    """A bucket's range as bcc's print_log2_hist prints it: 0 -> 1, 2 -> 3, 4 -> 7, ..."""
    low, high = log2_range(bucket)
    return f"{low} -> {high}"


class Log2Histogram(FigureView):
    """Draws records named `record` whose payload maps bucket -> count, bucket n holding values from
    2^(n-1) to 2^n - 1 (what `dist.increment(bpf_log2l(value))` fills; user space sends the map's items).

    `history` holds the frames that changed something: (seconds since the first sample, {bucket: count}),
    so a notebook can check that the histogram filled while it watched. A short run keeps every frame;
    a long one at most `max_samples`, spread evenly over the run.
    """

    max_samples = 500  # frames kept: enough to see it fill, bounded over a long run

    def __init__(self, record: str = "hist", unit: str = "ns", title: str = "latency") -> None:
        self.record = record
        self.unit = unit
        self.title = title
        super().__init__()

    def reset(self) -> None:
        self.buckets: dict[int, int] = {}
        self._history: SampleHistory[tuple[float, dict[int, int]]] = SampleHistory(self.max_samples)

    @property
    def history(self) -> list[tuple[float, dict[int, int]]]:
        return self._history.samples()

    @property
    def total(self) -> int:
        return sum(self.buckets.values())

    def totals(self) -> list[int]:
        """The number of samples in each frame, oldest first."""
        return [sum(b.values()) for _, b in self.history]

    def update(self, record: Record) -> bool:
        if record.name != self.record:
            return False
        buckets = {int(b): int(n) for b, n in record.payload.items() if int(n)}
        if buckets == self.buckets:
            return False
        self.buckets = buckets
        self._history.add((self.since_first_record(), buckets))
        return True

    def shown_buckets(self) -> list[int]:
        """The buckets drawn: from the lowest to the highest non-empty one, empty ones between them included,
        so the x axis stays a scale (print_log2_hist trims the same way)."""
        return _span(self.buckets)

    def snapshot(self) -> tuple[dict[int, int], int]:
        # The buckets' dict is replaced by every change, never changed: no copy needed.
        return self.buckets, self._history.added

    def draw(self, fig: Figure) -> None:
        buckets, frames = self.frame
        if not buckets:
            self.waiting(fig, self.title)
            return
        ax = fig.add_subplot()
        shown = _span(buckets)
        counts = [buckets.get(b, 0) for b in shown]
        bars = ax.bar(range(len(shown)), counts, color="tab:blue")
        ax.bar_label(bars, fontsize=8)
        ax.set_xticks(range(len(shown)), [bucket_label(b) for b in shown], rotation=35, ha="right", fontsize=8)
        ax.set_xlabel(self.unit)
        ax.set_ylabel("count")
        ax.set_title(f"{self.title}: {sum(buckets.values())} samples, frame {frames}")
        ax.margins(y=0.15)


def _span(buckets: dict[int, int]) -> list[int]:
    return list(range(min(buckets), max(buckets) + 1)) if buckets else []
