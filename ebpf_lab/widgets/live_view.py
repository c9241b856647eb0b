"""What every live view shares: redraw from a background thread, throttled, until the run ends.

Views only set widget traits from their thread (never `with out:`, whose output would
land in whatever cell is running), so they are safe while the magic blocks the main thread.
"""
from __future__ import annotations

import threading
import time

from typing import Callable, Generic, TypeVar

from ..runner import protocol
from ..runner.run import Record, Run

T = TypeVar("T")


class SampleHistory(Generic[T]):
    """A whole run's samples in bounded memory: at most `most` of them, spread evenly over the run.

    Every sample is kept until there are `most`; then every 2nd, then every 4th, and so on (counted
    from the first), plus always the newest. A chart of them keeps the run's shape at any length,
    where keeping only the latest ones would lose its start.
    """

    def __init__(self, most: int) -> None:
        self.most = max(most, 2)  # the first and the newest
        self.added = 0
        self._stride = 1
        self._kept: list[tuple[int, T]] = []  # (the sample's number in the run, the sample)

    def add(self, sample: T) -> None:
        if self._kept and self._kept[-1][0] % self._stride:
            self._kept.pop()  # it was kept only as the newest
        self._kept.append((self.added, sample))
        self.added += 1
        while len(self._kept) > self.most:
            self._stride *= 2
            newest = self._kept[-1]
            self._kept = [kept for kept in self._kept if kept[0] % self._stride == 0]
            if newest[0] % self._stride:
                self._kept.append(newest)

    def samples(self) -> list[T]:
        """The kept samples, oldest first."""
        return [sample for _, sample in self._kept]


class LiveView:
    """Subclasses implement `make_widget()`, `reset()`, `update(record) -> changed?`, `snapshot()`,
    `render()` and `final_display()`. `render()` draws `self.frame`, what `snapshot()` copied of the
    state: the copy is made under the lock that the run's reader takes for every batch, the drawing
    outside it, so a slow frame never holds up the run. Every `attach` starts from a fresh widget and
    empty state, so re-running a cell shows this run only."""

    interval = 0.5  # seconds between redraws at most: live enough, cheap enough under load

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the state that records update
        self._drawing = threading.Lock()  # one frame at a time, each from a newer snapshot than the last
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        self._start_fresh()

    def _start_fresh(self) -> None:
        self._stopped.clear()
        self._dirty.clear()
        self.redraws = 0
        self._first_record_at: float | None = None
        self.reset()
        self.frame = self.snapshot()
        self.widget = self.make_widget()
        self.render()

    def since_first_record(self) -> float:
        """Seconds since this run's first record (0 for the first one): the time axis of a view."""
        now = time.monotonic()
        if self._first_record_at is None:
            self._first_record_at = now
        return now - self._first_record_at

    def attach(self, run: Run) -> Callable[[], None]:
        """Follow `run` until it exits; returns a function that stops following it at once."""
        with self._drawing, self._lock:  # a frame of the last run still being drawn goes first
            self._start_fresh()
        unsubscribe = run.subscribe(on_records=self._on_records, on_event=self._on_event)
        threading.Thread(target=self._loop, name=f"{type(self).__name__}-redraw", daemon=True).start()

        def detach() -> None:
            unsubscribe()
            self._stopped.set()
            self._redraw_if_changed()  # the final frame must hold the last record, whatever the thread does
        return detach

    def _on_records(self, records: list[Record]) -> None:
        with self._lock:  # once per batch: a fast stream arrives a few thousand records at a time
            changed = [self.update(record) for record in records]
        if any(changed):
            self._dirty.set()

    def _on_event(self, event: dict) -> None:
        if event.get("kind") == protocol.EXIT:
            self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._stopped.wait(self.interval)
            self._redraw_if_changed()
        self._redraw_if_changed()

    def _redraw_if_changed(self) -> None:
        """Draw only when a record changed what is shown: every frame is news."""
        with self._drawing:
            if not self._dirty.is_set():
                return
            self._dirty.clear()
            with self._lock:
                self.frame = self.snapshot()
            self.render()
            self.redraws += 1

    def make_widget(self):
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, record: Record) -> bool:
        raise NotImplementedError

    def snapshot(self):
        raise NotImplementedError

    def render(self) -> None:
        raise NotImplementedError
