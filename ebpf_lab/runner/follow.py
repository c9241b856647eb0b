"""Following a run from the caller's thread: its lines as they arrive, and how long bcc has been compiling.

Shared by the CLI and the %%bcc magic. Everything is written from the thread that calls
`tick()` (the notebook's main thread, the CLI's), never from the run's reader thread.
"""
from __future__ import annotations

import queue
from typing import Callable

from . import protocol
from .run import Line, Run

Write = Callable[[str], None]


class LivePrinter:
    """Prints a run's lines, at most `limit` of them; the rest stay in the run's log."""

    def __init__(self, run: Run, out: Write, err: Write, limit: int | None = None) -> None:
        self.limit = limit
        self.shown = 0
        self._out, self._err = out, err
        self._queue: queue.SimpleQueue[Line] = queue.SimpleQueue()
        self.unsubscribe = run.subscribe(on_line=self._queue.put)

    def take(self) -> tuple[str, str]:
        """(stdout text, stderr text) that arrived since the last call, within the limit."""
        out, err = [], []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if self.limit is None or self.shown < self.limit:
                (out if line.stream == "stdout" else err).append(line.text + "\n")
                self.shown += 1
        return "".join(out), "".join(err)

    def print(self, out: str, err: str) -> None:
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
        self._shown: int | None = None
        self._seen = 0              # run events already looked at

    def tick(self) -> None:
        new = self.run.events[self._seen:]
        self._seen += len(new)
        for event in new:
            if event.get("kind") != protocol.COMPILED:
                continue
            if event.get("ok"):
                self._line(f"compiled in {float(event.get('seconds') or 0):.1f} s", end=True)
            else:
                self.break_line()
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
        """End a pending progress line, so that the program's output starts on a line of its own."""
        if self._pending:
            self._write("\n")
            self._pending = False
        self._shown = None

    def _line(self, text: str, end: bool) -> None:
        self._write((self._rewrite if self._pending else "") + text + ("\n" if end else ""))
        self._pending = not end
        if end:
            self._shown = None


def drain(printer: LivePrinter, progress: CompileProgress) -> None:
    """Print what arrived since the last call, then bring the progress line up to date."""
    out, err = printer.take()
    if out or err:
        progress.break_line()
        printer.print(out, err)
    progress.tick()
