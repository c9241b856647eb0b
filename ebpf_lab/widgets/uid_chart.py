"""A live chart of a per-UID counter map: counts over time per user, and the map's current values."""
from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image
from matplotlib.figure import Figure

from ..runner.run import Record
from .live_view import LiveView


class UidChart(LiveView):
    """Draws records named `record` whose payload maps UID -> count (e.g. a BPF_HASH read every 0.5 s):
    a line per user over the run's time on the left, the latest values as bars on the right.

    `users` maps UID -> name (see `Lab.users()`); unknown UIDs are shown as numbers. `history` keeps
    every sample that changed something, as (seconds since the first sample, {uid: count}).
    """

    def __init__(self, users: dict[int, str] | None = None, record: str = "counts",
                 title: str = "execve calls per user") -> None:
        self.users = users or {}
        self.record = record
        self.title = title
        self._png = b""
        super().__init__()

    def make_widget(self) -> widgets.Image:
        return widgets.Image(format="png", layout=widgets.Layout(width="720px"))

    def reset(self) -> None:
        self.counts: dict[int, int] = {}
        self.history: list[tuple[float, dict[int, int]]] = []

    def update(self, record: Record) -> bool:
        if record.name != self.record:
            return False
        counts = {int(uid): int(n) for uid, n in record.payload.items()}
        if counts == self.counts:
            return False
        self.counts = counts
        self.history.append((self.since_first_record(), counts))
        return True

    def label(self, uid: int) -> str:
        return f"{self.users[uid]} ({uid})" if uid in self.users else str(uid)

    def render(self) -> None:
        fig = Figure(figsize=(9, 3.2), dpi=80)
        if not self.history:
            ax = fig.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, f"{self.title}\n\nwaiting for the first sample from the kernel…",
                    ha="center", va="center", fontsize=12, color="0.4")
        else:
            over_time, now = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
            uids = sorted(self.counts)
            for uid in uids:
                # A UID first seen later counted 0 before: the line starts at 0 where it appeared.
                over_time.step([t for t, _ in self.history], [c.get(uid, 0) for _, c in self.history],
                               where="post", label=self.label(uid))
            over_time.set_xlabel("seconds since the first sample")
            over_time.set_ylabel("count")
            over_time.set_title(f"{self.title}, over time")
            over_time.legend(loc="upper left", fontsize=8)
            now.barh([self.label(u) for u in uids], [self.counts[u] for u in uids], color="tab:orange")
            now.set_title("the map now")
            for i, u in enumerate(uids):
                now.annotate(str(self.counts[u]), (self.counts[u], i), xytext=(3, 0), textcoords="offset points",
                             va="center")
            now.margins(x=0.25)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self._png = buf.getvalue()
        self.widget.value = self._png

    def final_display(self) -> Image:
        """The last frame as a plain image, so the saved notebook shows it without a kernel."""
        return Image(self._png)
