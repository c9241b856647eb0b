"""What every live view shares: redraw from a background thread, throttled, until the run ends.

Views only set widget traits from their thread (never `with out:`, whose output would
land in whatever cell is running), so they are safe while the magic blocks the main thread.
"""
from __future__ import annotations

import threading
import time

from typing import Callable

from ..runner import protocol
from ..runner.run import Record, Run


class LiveView:
    """Subclasses implement `make_widget()`, `reset()`, `update(record) -> changed?`, `render()` and
    `final_display()`. Every `attach` starts from a fresh widget and empty state, so re-running a
    cell shows this run only."""

    interval = 0.5  # seconds between redraws at most: live enough, cheap enough under load

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        self._start_fresh()

    def _start_fresh(self) -> None:
        self._stopped.clear()
        self._dirty.clear()
        self.redraws = 0
        self._first_record_at: float | None = None
        self.reset()
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
        with self._lock:
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
        if self._dirty.is_set():
            self._dirty.clear()
            with self._lock:
                self.render()
            self.redraws += 1

    def make_widget(self):
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, record: Record) -> bool:
        raise NotImplementedError

    def render(self) -> None:
        raise NotImplementedError
