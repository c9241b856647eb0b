"""The %%bcc cell magic: the cell's Python runs in the lab VM as root, output streams live."""
from __future__ import annotations

import shlex
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from ..errors import BadArgument, Interrupted
from ..lab import connect
from ..runner.protocol import DEFAULT_COMPILE_TIMEOUT
from ..printable import printable
from ..runner.follow import CompileProgress, LivePrinter, drain
from ..runner.run import Run

FLUSH_SECONDS = 0.1


def _write(stream_name: str):
    # Looked up at each write: IPython swaps sys.stdout per cell (and tests replace it).
    def write(text: str) -> None:
        stream = getattr(sys, stream_name)
        stream.write(text)
        stream.flush()
    return write


@magics_class
class BccMagics(Magics):
    @cell_magic
    @magic_arguments()
    @argument("--timeout", type=float,
              help="seconds the program may run once it has attached its probes (or loaded a program, or printed); "
                   "compiling does not count. Then SIGINT, and SIGKILL 3 s later")
    @argument("--compile-timeout", type=float, default=DEFAULT_COMPILE_TIMEOUT,
              help=f"seconds the program may take to compile and attach before it is stopped "
                   f"(default {DEFAULT_COMPILE_TIMEOUT:g})")
    @argument("--workload", "--load", dest="workload", action="append", default=[],
              metavar="USER[:COUNT[@RATE/s]][:CMD]",
              help="once the program runs, exec CMD (default /bin/true) COUNT times as USER, back to back or "
                   "RATE per second")
    @argument("--attach", action="append", default=[], metavar="VIEW",
              help="a live view (e.g. a chart) from the notebook to feed with this run")
    @argument("--max-lines", type=int, default=500, help="lines shown in the cell (all are kept in the run's log)")
    @argument("--name", help="also store the finished run in this variable (always in _bcc_run)")
    def bcc(self, line: str, cell: str) -> None:
        """Run the cell's BCC Python program in the lab VM as root.

        While bcc compiles the BPF C code the cell shows "compiling the BPF program… N s", then
        "compiled in N s"; --timeout counts only the time after that. The stop button stops the
        program in the VM (its BPF programs are unloaded) and ends the cell with one line.
        """
        # shlex, not IPython's splitter, so that --load "bob:2:/bin/cat /etc/hostname" loses its quotes.
        args = self.bcc.parser.parse_args(shlex.split(line))
        views = [self._view(name) for name in args.attach]
        lab = connect()
        try:
            run = lab.start(cell, timeout=args.timeout, compile_timeout=args.compile_timeout, workload=args.workload)
        except BadArgument as e:
            raise UsageError(str(e)) from None
        self.shell.user_ns["_bcc_run"] = run
        if args.name:
            self.shell.user_ns[args.name] = run
        self._follow(run, views, args.max_lines)
        if run.timed_out:
            print(f"[stopped after --timeout {args.timeout:g} s of running]")
        run.raise_for_status()

    def _view(self, name: str):
        view = self.shell.user_ns.get(name)
        if view is None or not all(hasattr(view, a) for a in ("widget", "attach", "final_display")):
            raise UsageError(f"--attach {name}: no live view named {name!r} in this notebook; "
                             "create one first, e.g. chart = UidChart(lab.users())")
        return view

    def _follow(self, run: Run, views: list, max_lines: int) -> None:
        """Stream the run into the cell until it ends; whatever happens, the run is stopped and views detached."""
        detach, handles = [], []
        printer = LivePrinter(run, _write("stdout"), _write("stderr"), max_lines)
        progress = CompileProgress(run, _write("stdout"), live=True)
        interrupted = False
        try:
            for view in views:
                detach.append(view.attach(run))  # a fresh widget and empty state for every run
                handles.append(display(view.widget, display_id=True))
            while not run.done:
                run.wait(FLUSH_SECONDS)
                drain(printer, progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            with run.ctrl_c_hurries():  # a second Ctrl-C cannot abandon the clean-up
                if not run.done:
                    run.interrupt()
                drain(printer, progress)
                printer.unsubscribe()
                for stop in detach:
                    stop()
                # The final frame replaces the live widget in its output slot: a saved notebook then
                # holds a plain image or table, not a widget that needs a kernel (or its raw repr).
                for view, handle in zip(views, handles):
                    handle.update(view.final_display())
                    view.widget.close()
                if run.line_count > printer.shown:
                    print(f"[{run.line_count - printer.shown} more lines not shown; all {run.line_count} are in "
                          f"_bcc_run.read_log()]")
                for warning in run.warnings():  # they quote the VM: names of its objects, its errors
                    print(f"warning: {printable(warning)}", file=sys.stderr)
        if interrupted:
            raise Interrupted(run.stopped_message())


def register(ipython) -> None:
    ipython.register_magics(BccMagics)
