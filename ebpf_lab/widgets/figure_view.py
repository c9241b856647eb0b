"""A live view drawn with matplotlib: each frame is a figure rendered to PNG in an image widget."""
from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image
from matplotlib.figure import Figure

from .live_view import LiveView


class FigureView(LiveView):
    """Subclasses implement `draw(fig)` (plus LiveView's `reset` and `update`). A PNG, not an
    interactive plot: it redraws from a background thread and stays in the saved notebook."""

    def __init__(self) -> None:
        self._png = b""
        super().__init__()

    def make_widget(self) -> widgets.Image:
        return widgets.Image(format="png", layout=widgets.Layout(width="720px"))

    def draw(self, fig: Figure) -> None:
        raise NotImplementedError

    @staticmethod
    def waiting(fig: Figure, title: str) -> None:
        """The frame before the first sample: says what will appear."""
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}\n\nwaiting for the first sample from the kernel…",
                ha="center", va="center", fontsize=12, color="0.4")

    def render(self) -> None:
        fig = Figure(figsize=(9, 3.3), dpi=80)
        self.draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self._png = buf.getvalue()
        self.widget.value = self._png

    def final_display(self) -> Image:
        """The last frame as a plain image, so the saved notebook shows it without a kernel."""
        return Image(self._png)
