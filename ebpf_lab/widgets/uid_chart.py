"""A live chart of a per-UID counter map: counts over time per user, and the map's current values."""
from __future__ import annotations

from .counts_chart import CountsChart


class UidChart(CountsChart):
    """A `CountsChart` whose keys are UIDs, labelled with user names.

    `users` maps UID -> name (see `Lab.users()`); unknown UIDs are shown as numbers.
    """

    def __init__(self, users: dict[int, str] | None = None, record: str = "counts",
                 title: str = "execve calls per user") -> None:
        self.users = users or {}
        super().__init__(record=record, title=title)

    def label(self, uid: int) -> str:
        return f"{self.users[uid]} ({uid})" if uid in self.users else str(uid)
