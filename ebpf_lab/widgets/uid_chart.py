"""A live bar chart of a per-UID counter map, labelled with user names."""
from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image
from matplotlib.figure import Figure

from ..runner.run import Record
from .live_view import LiveView


class UidChart(LiveView):
    """Draws records named `record` whose payload maps UID -> count (e.g. a BPF_HASH read every 0.5 s).

    `users` maps UID -> name (see `Lab.users()`); unknown UIDs are shown as numbers.
    """

    def __init__(self, users: dict[int, str] | None = None, record: str = "counts",
                 title: str = "execve calls per user") -> None:
        super().__init__()
        self.users = users or {}
        self.record = record
        self.title = title
        self.counts: dict[int, int] = {}
        self.widget = widgets.Image(format="png", layout=widgets.Layout(width="560px"))
        self._png = b""
        self.render()

    def update(self, record: Record) -> None:
        if record.name == self.record:
            self.counts = {int(uid): int(n) for uid, n in record.payload.items()}

    def label(self, uid: int) -> str:
        return f"{self.users[uid]} ({uid})" if uid in self.users else str(uid)

    def render(self) -> None:
        fig = Figure(figsize=(7, 3.2), dpi=80)
        ax = fig.add_subplot()
        uids = sorted(self.counts)
        ax.barh([self.label(u) for u in uids], [self.counts[u] for u in uids], color="tab:orange")
        ax.set_xlabel("count")
        ax.set_title(self.title if uids else f"{self.title} (waiting for the kernel…)")
        for i, u in enumerate(uids):
            ax.annotate(str(self.counts[u]), (self.counts[u], i), xytext=(3, 0), textcoords="offset points", va="center")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self._png = buf.getvalue()
        self.widget.value = self._png

    def final_display(self) -> Image:
        """The last frame as a plain image, so the saved notebook shows it without a kernel."""
        return Image(self._png)
