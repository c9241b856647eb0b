"""What every live view shares: redraw from a background thread, throttled, until the run ends.

Views only set widget traits from their thread (never `with out:`, whose output would
land in whatever cell is running), so they are safe while the magic blocks the main thread.
"""
from __future__ import annotations

import threading

from typing import Callable

from ..runner import protocol
from ..runner.run import Record, Run


class LiveView:
    """Subclasses implement `widget`, `update(record)`, `render()` and `final_display()`."""

    interval = 0.5  # seconds between redraws: live enough, cheap enough under load

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        self.redraws = 0

    def attach(self, run: Run) -> Callable[[], None]:
        """Follow `run` until it exits; returns a function that stops following it at once."""
        self._stopped.clear()
        unsubscribe = run.subscribe(on_record=self._on_record, on_event=self._on_event)
        threading.Thread(target=self._loop, name=f"{type(self).__name__}-redraw", daemon=True).start()

        def detach() -> None:
            unsubscribe()
            self._stopped.set()
        return detach

    def _on_record(self, record: Record) -> None:
        with self._lock:
            self.update(record)
        self._dirty.set()

    def _on_event(self, event: dict) -> None:
        if event.get("kind") == protocol.EXIT:
            self._stopped.set()
            self._dirty.set()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._stopped.wait(self.interval)
            if self._dirty.is_set():
                self._dirty.clear()
                self._redraw()
        self._redraw()

    def _redraw(self) -> None:
        with self._lock:
            self.render()
        self.redraws += 1

    def update(self, record: Record) -> None:
        raise NotImplementedError

    def render(self) -> None:
        raise NotImplementedError
