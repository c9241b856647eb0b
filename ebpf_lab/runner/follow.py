"""Following a run from the caller's thread: its lines as they arrive, and how long bcc has been compiling.

Shared by the CLI and the %%bcc magic. Everything is written from the thread that calls
`tick()` (the notebook's main thread, the CLI's), never from the run's reader thread.

A program's text is shown, not obeyed (`printable`), unless a printer is made `raw`. The lab's own
progress line rewrites itself with a carriage return: it never goes through that.
"""
from __future__ import annotations

import queue
from typing import Callable

from ..printable import printable
from . import protocol
from .run import Line, Run

Write = Callable[[str], None]

class LivePrinter:
    """Prints a run's lines, at most `limit` of them; the rest stay in the run's log. Their control
    characters are shown escaped (see `printable`) unless `raw` (`ebpf-lab run --raw`, for a program that
    draws on the terminal on purpose).

    Lines and the end-of-compile event travel through one queue, in the order they arrived, so
    "compiled in 2.0 s" always comes before the program's own output, whatever the timing.
    """

    def __init__(self, run: Run, out: Write, err: Write, limit: int | None = None, raw: bool = False) -> None:
        self.limit = limit
        self.shown = 0
        self.raw = raw
        self._out, self._err = out, err
        self._queue: queue.SimpleQueue[Line | dict] = queue.SimpleQueue()
        self.unsubscribe = run.subscribe(on_line=self._queue.put, on_event=self._on_event)

    def _on_event(self, event: dict) -> None:
        if event.get("kind") == protocol.COMPILED:
            self._queue.put(event)

    def take(self) -> list[Line | dict]:
        """Lines (within the limit) and compile-ended events that arrived since the last call, in order."""
        items: list[Line | dict] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if isinstance(item, dict):
                items.append(item)
            elif self.limit is None or self.shown < self.limit:
                items.append(item)
                self.shown += 1

    def print(self, lines: list[Line]) -> None:
        out = "".join(l.text + "\n" for l in lines if l.stream == "stdout")
        err = "".join(l.text + "\n" for l in lines if l.stream != "stdout")
        if not self.raw:
            out, err = printable(out), printable(err)
        if out:
            self._out(out)
        if err:
            self._err(err)


class CompileProgress:
    """"compiling the BPF program… 12 s" while bcc compiles, then "compiled in 21.3 s".

    `live` streams can rewrite their last line with a carriage return (a terminal, a notebook
    cell); others get one line when a compile starts and one when it ends.
    """

    def __init__(self, run: Run, write: Write, live: bool, rewrite: str = "\r") -> None:
        self.run = run
        self._write = write
        self._live = live
        self._rewrite = rewrite     # "\r" in a notebook; a terminal also needs "erase to end of line"
        self._pending = False       # a progress line without its newline is on screen
        self._pending_len = 0       # how long it is
        self._shown: int | None = None

    def ended(self, event: dict) -> None:
        """A compile ended (a `compiled` event): say how long it took, or just end the progress line."""
        if event.get("ok"):
            self._line(f"compiled in {float(event.get('seconds') or 0):.1f} s", end=True)
        else:
            self.break_line()
            self._shown = None

    def tick(self) -> None:
        """Bring the progress line up to date with how long the current compile has run."""
        seconds = self.run.compiling_for
        if seconds is None:
            return
        if self._live and int(seconds) != self._shown:
            self._line(f"compiling the BPF program… {int(seconds)} s", end=False)
            self._shown = int(seconds)
        elif not self._live and self._shown is None:
            self._line("compiling the BPF program…", end=True)
            self._shown = 0

    def break_line(self) -> None:
        """End a pending progress line, so that the program's output starts on a line of its own.

        The line comes back below that output only when its count of seconds moves on: compiler
        warnings arriving in bursts must not leave a column of identical progress lines.
        """
        if self._pending:
            self._write("\n")
            self._pending = False

    def _line(self, text: str, end: bool) -> None:
        if self._pending and "\x1b[K" not in self._rewrite:
            # A carriage return only moves back to the line's start (JupyterLab, like a terminal, keeps the
            # rest): a shorter line must blank out the tail of the one it replaces.
            text = text.ljust(self._pending_len)
        self._write((self._rewrite if self._pending else "") + text + ("\n" if end else ""))
        self._pending, self._pending_len = not end, len(text)
        if end:
            self._shown = None


def drain(printer: LivePrinter, progress: CompileProgress) -> None:
    """Print what arrived since the last call in arrival order, then bring the progress line up to date."""
    lines: list[Line] = []

    def flush() -> None:
        if lines:
            progress.break_line()
            printer.print(lines)
            lines.clear()

    for item in printer.take():
        if isinstance(item, Line):
            lines.append(item)
        else:
            flush()
            progress.ended(item)
    flush()
    progress.tick()
