"""The %%bcc cell magic: the cell's Python runs in the lab VM as root, output streams live."""
from __future__ import annotations

import queue
import shlex
import sys
import time

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from ..lab import connect
from ..runner.run import Line, Run

FLUSH_SECONDS = 0.1


class LivePrinter:
    """Prints a run's lines into the cell from the main thread, at most `limit` of them."""

    def __init__(self, run: Run, limit: int) -> None:
        self.limit = limit
        self.shown = 0
        self._queue: queue.SimpleQueue[Line] = queue.SimpleQueue()
        run.subscribe(on_line=self._queue.put)

    def drain(self) -> None:
        out, err = [], []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if self.shown < self.limit:
                (out if line.stream == "stdout" else err).append(line.text + "\n")
                self.shown += 1
        if out:
            sys.stdout.write("".join(out))
            sys.stdout.flush()
        if err:
            sys.stderr.write("".join(err))
            sys.stderr.flush()


@magics_class
class BccMagics(Magics):
    @cell_magic
    @magic_arguments()
    @argument("--timeout", type=float, help="interrupt the program after this many seconds (SIGINT, then SIGKILL)")
    @argument("--load", action="append", default=[], metavar="USER[:COUNT[:CMD]]",
              help="exec CMD (default /bin/true) COUNT times as USER once the program has attached")
    @argument("--attach", action="append", default=[], metavar="VIEW",
              help="a live view (e.g. a chart) from the notebook to feed with this run")
    @argument("--max-lines", type=int, default=500, help="lines shown in the cell (all are kept in the run's log)")
    @argument("--name", help="also store the finished run in this variable (always in _bcc_run)")
    def bcc(self, line: str, cell: str) -> None:
        """Run the cell's BCC Python program in the lab VM as root."""
        # shlex, not IPython's splitter, so that --load "bob:2:/bin/cat /etc/hostname" loses its quotes.
        args = self.bcc.parser.parse_args(shlex.split(line))
        views = [self.shell.user_ns[name] for name in args.attach]
        lab = connect()
        run = lab.start(cell, timeout=args.timeout, load=args.load)
        self.shell.user_ns["_bcc_run"] = run
        if args.name:
            self.shell.user_ns[args.name] = run
        for view in views:
            display(view.widget)
            view.attach(run)
        printer = LivePrinter(run, args.max_lines)
        try:
            while not run.done:
                run.wait(FLUSH_SECONDS)
                printer.drain()
        except KeyboardInterrupt:
            run.interrupt()
            printer.drain()
            print("interrupted: the program was stopped in the VM and its BPF programs unloaded", file=sys.stderr)
            raise
        finally:
            printer.drain()
            for view in views:
                view.widget.close()
                display(view.final_display())
        if run.line_count > printer.shown:
            print(f"[{run.line_count - printer.shown} more lines not shown; all {run.line_count} are in "
                  f"_bcc_run.read_log()]")
        if run.timed_out:
            print(f"[stopped after --timeout {args.timeout:g} s]")
        run.raise_for_status()


def register(ipython) -> None:
    ipython.register_magics(BccMagics)
