"""%%bcc in IPython and in a real Jupyter kernel, against the VM."""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient

from IPython.core.error import UsageError

from ebpf_lab import ProgramFailed
from ebpf_lab.errors import Interrupted
from ebpf_lab.runner import protocol
from tests.programs import HASH_MAP, HELLO


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ebpf_lab")
    return ip


class TimedWriter:
    """Stands in for the cell's stdout and notes when each write happened."""

    def __init__(self):
        self.writes: list[tuple[float, str]] = []

    def write(self, s):
        self.writes.append((time.time(), s))

    def flush(self):
        pass

    @property
    def text(self):
        return "".join(s for _, s in self.writes)


def watch_run(shell, predicate, act, deadline=300) -> dict:
    """From another thread, once `predicate(run)` holds for the cell's run, `act(run)`. A watcher that
    waits in vain, or whose act does not end the run, stops the run and says what it saw in the dict
    it returns: the test then fails with that reason instead of hanging the suite."""
    seen: dict = {}

    def watch():
        end = time.time() + deadline
        run = None
        while time.time() < end:
            run = shell.user_ns.get("_bcc_run")
            if run is not None and not run.done and run.wait_for(predicate, 1):
                seen["acted"] = act(run)
                run.wait(deadline)
                if not run.done:
                    seen["run went on"] = f"{deadline} s after the act ({seen['acted']})"
                    run.stop()
                return
            time.sleep(0.1)
        seen["gave up"] = ("the cell's run never started" if run is None else
                           f"events {[e.get('kind') for e in list(run.events)]}, output {run.stdout[-300:]!r}")
        if run is not None:
            run.stop()

    shell.user_ns.pop("_bcc_run", None)
    threading.Thread(target=watch, daemon=True).start()
    return seen


def stop_when(shell, predicate) -> dict:
    """End the cell's run (as --timeout would) once `predicate(run)` holds."""
    return watch_run(shell, predicate, lambda run: run.stop())


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt, as in a Jupyter kernel: a suite started in the background of a
    shell without job control inherits SIGINT ignored, and the stop button would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_when(shell, predicate, times=1) -> dict:
    """Press the stop button (SIGINT to this process, as Jupyter sends) `times` times once `predicate(run)` holds."""
    def press(run):
        handler = signal.getsignal(signal.SIGINT)
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return f"SIGINT sent {times}x, its handler then: {handler!r}"
    return watch_run(shell, predicate, press)


def id_counts(text: str) -> dict[int, int]:
    lines = [l for l in text.splitlines() if l.startswith("ID")]
    return {int(u): int(c) for u, c in re.findall(r"ID (\d+): (\d+)", lines[-1])} if lines else {}


def test_hash_map_cell_streams_counts_for_two_users(shell, lab, clean_kernel, monkeypatch):
    out = TimedWriter()
    monkeypatch.setattr(sys, "stdout", out)
    # Stop once the counts are in the cell, not merely at the host: a run stopped the moment its only count
    # line arrived would write that line in its final drain, after it ended, and prove nothing either way.
    seen = stop_when(shell, lambda r: (c := id_counts(out.text)).get(1001, 0) >= 5 and c.get(1002, 0) >= 3)
    shell.run_cell_magic("bcc", "--load alice:5 --load bob:3", HASH_MAP)
    assert "gave up" not in seen, seen
    run = shell.user_ns["_bcc_run"]
    counts = id_counts(out.text)
    assert counts[1001] >= 5 and counts[1002] >= 3, out.text
    first_count_at = next(t for t, s in out.writes if s.startswith("ID"))
    assert first_count_at < run.ended_at, "counts must appear while the program runs, not at the end"
    # the progress line ends padded with spaces: they blank out the longer "compiling…" line it rewrites
    assert re.search(r"(^|\r)compiled in \d+\.\d s *\n", out.text), out.text


def test_timeout_counts_after_the_compile(shell, lab, clean_kernel, capsys):
    shell.run_cell_magic("bcc", "--timeout 10 --load alice:2", HELLO)
    out = capsys.readouterr().out
    assert out.count("Hello, World!") >= 2 and "[stopped after --timeout 10 s of running]" in out


def test_interrupting_the_cell_stops_the_program(shell, lab, clean_kernel, sigint_raises):
    seen = interrupt_when(shell, lambda r: r.has_event(protocol.ATTACHED))
    try:
        shell.run_cell_magic("bcc", "", HELLO)
        pytest.fail(f"the cell was not interrupted: {seen}")
    except Interrupted as e:
        interrupted = e
    run = shell.user_ns["_bcc_run"]
    assert run.done and run.interrupted
    assert interrupted._render_traceback_() == [
        "interrupted: the program was stopped in the VM and its BPF programs unloaded"]


def test_ctrl_c_twice_still_unloads_everything(shell, lab, clean_kernel, sigint_raises):
    source = HELLO.replace("b.trace_print()", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                              "time.sleep(600)\n")
    seen = interrupt_when(shell, lambda r: r.has_event(protocol.ATTACHED), times=3)
    try:
        shell.run_cell_magic("bcc", "", source)
        pytest.fail(f"the cell was not interrupted: {seen}")
    except KeyboardInterrupt:
        pass
    assert shell.user_ns["_bcc_run"].done


def test_an_unknown_view_is_refused_before_anything_runs(shell, lab):
    shell.user_ns.pop("_bcc_run", None)
    with pytest.raises(UsageError, match="no live view named 'nochart'"):
        shell.run_cell_magic("bcc", "--attach nochart", HELLO)
    with pytest.raises(UsageError, match="positive number of seconds"):
        shell.run_cell_magic("bcc", "--timeout 0", HELLO)
    assert "_bcc_run" not in shell.user_ns


def test_output_is_capped_in_the_cell(shell, lab, capsys):
    shell.run_cell_magic("bcc", "--max-lines 5", "for i in range(1000):\n    print(i)\n")
    out = capsys.readouterr().out
    assert out.splitlines()[:5] == ["0", "1", "2", "3", "4"]
    assert "[995 more lines not shown; all 1000 are in _bcc_run.read_log()]" in out


def test_compile_error_is_raised_with_cell_line(shell, lab):
    cell = 'from bcc import BPF\nb = BPF(text="""\nint f(void *ctx) {\n  return nope;\n}\n""")\n'
    with pytest.raises(ProgramFailed) as info:
        shell.run_cell_magic("bcc", "", cell)
    assert "cell line 4, column 10: use of undeclared identifier 'nope'" in str(info.value)
    assert info.value._render_traceback_()[0].startswith("ProgramFailed: the BPF C code does not compile")


def test_in_a_jupyter_kernel(lab, clean_kernel, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext ebpf_lab"),
                nbformat.v4.new_code_cell("%%bcc --timeout 20 --load alice:4 --load bob:2\n" + HASH_MAP)]
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    counts = id_counts(text)
    assert counts.get(1001, 0) >= 4 and counts.get(1002, 0) >= 2, text


def test_exercise_cell_checks_its_body_in_the_vm(shell, lab, clean_kernel):
    from ebpf_lab.course import solution

    verdict = shell.run_cell_magic("exercise", "kprobes", solution("kprobes"))
    assert verdict.passed and shell.user_ns["_verdict"] is verdict, verdict
    fake = shell.run_cell_magic("exercise", "kprobes", "import time\nwhile True:\n    print('open!', flush=True)\n"
                                                       "    time.sleep(0.2)\n")
    assert not fake.passed and "no BPF program was loaded" in fake.message
    with pytest.raises(UsageError, match="name one of kprobes, maps"):
        shell.run_cell_magic("exercise", "kprobe", "x = 1")


UID_COUNTS = HASH_MAP.replace('''while True:
    sleep(2)
    s = ""
    for k,v in b["counter_table"].items():
        s += f"ID {k.value}: {v.value}\\t"
    print(s)''', '''while True:
    sleep(0.3)
    emit("counts", {k.value: v.value for k, v in b["counter_table"].items()})''')


def test_a_live_chart_follows_each_run_afresh(shell, lab, clean_kernel):
    from ebpf_lab.widgets import UidChart

    assert "emit(" in UID_COUNTS
    chart = shell.user_ns["chart"] = UidChart(lab.users())
    widgets = []
    for _ in range(2):  # the second run must not add to the first one's totals, nor show a closed widget
        seen = stop_when(shell, lambda r: any(rec.payload.get("1001") == 6 for rec in list(r.records)))
        shell.run_cell_magic("bcc", "--load alice:6@2/s --attach chart", UID_COUNTS)
        assert "gave up" not in seen, seen
        alice = [c.get(1001, 0) for _, c in chart.history]
        assert chart.counts[1001] == 6 and len(set(alice)) >= 3 and alice == sorted(alice), alice
        widgets.append(chart.widget)
    assert widgets[0] is not widgets[1]
