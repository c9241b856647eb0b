"""A program's output reaches the terminal or the notebook as text: its control characters are shown
escaped, never obeyed, unless `ebpf-lab run --raw` asks for them; the lab's own progress line still
rewrites itself."""
import contextlib
import json
import os
import re

from ebpf_lab import cli
from ebpf_lab.errors import ProgramFailed
from ebpf_lab.jupyter.magic import BccMagics
from ebpf_lab.printable import printable
from ebpf_lab.runner.follow import CompileProgress, LivePrinter, drain
from ebpf_lab.runner.run import Line

OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"  # sets the clipboard to "rm -rf ~"
CSI = "\x1b[2J\x1b[31mred\x1b[0m"
NASTY = [Line("stdout", f"copy {OSC52} done"), Line("stdout", CSI), Line("stderr", "ding\x07 over\rwrite\bx"),
         Line("stdout", "c1 \x9b2J del\x7f nul\x00"), Line("stdout", "pid\tcomm\t→ ok")]
ESCAPED_OUT = ("copy \\x1b]52;c;cm0gLXJmIH4K\\x07 done\n"
               "\\x1b[2J\\x1b[31mred\\x1b[0m\n"
               "c1 \\x9b2J del\\x7f nul\\x00\n"
               "pid\tcomm\t→ ok\n")
ESCAPED_ERR = "ding\\x07 over\\x0dwrite\\x08x\n"
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class FakeRun:
    """A run as the follow module and the magic see it: its lines are there from the start."""

    compiling_for = None
    done = True
    line_count = len(NASTY)

    def subscribe(self, on_line=None, on_event=None):
        for line in NASTY:
            on_line(line)
        return lambda: None

    def ctrl_c_hurries(self):
        return contextlib.nullcontext()

    def warnings(self):
        return ["still loaded after the run: prog \x1b]0;owned\x07 (pinned)"]


def printed(raw: bool = False):
    out, err = [], []
    printer = LivePrinter(FakeRun(), out.append, err.append, raw=raw)
    printer.print(printer.take())
    return "".join(out), "".join(err)


def test_a_programs_controls_are_shown_escaped_and_its_text_and_tabs_stay():
    out, err = printed()
    assert (out, err) == (ESCAPED_OUT, ESCAPED_ERR)
    assert not CONTROLS.search(out + err)
    assert (printable("\x1b\r\x07\x9b\x7f\x1f\x80\x9f\t\n é \\x1b")
            == "\\x1b\\x0d\\x07\\x9b\\x7f\\x1f\\x80\\x9f\t\n é \\x1b")


def test_a_raw_printer_passes_the_programs_text_unchanged():
    out, err = printed(raw=True)
    assert out == "".join(l.text + "\n" for l in NASTY if l.stream == "stdout")
    assert err == "ding\x07 over\rwrite\bx\n"


def test_the_progress_line_still_rewrites_itself_around_escaped_output():
    run, out, err = FakeRun(), [], []
    printer = LivePrinter(run, out.append, err.append)
    progress = CompileProgress(run, err.append, live=True, rewrite="\r\x1b[K")
    run.compiling_for = 1.0
    progress.tick()
    run.compiling_for = 2.0
    drain(printer, progress)
    assert "".join(out) == ESCAPED_OUT
    assert "".join(err) == "compiling the BPF program… 1 s\n" + ESCAPED_ERR + "compiling the BPF program… 2 s"
    run.compiling_for = 3.0
    progress.tick()
    assert err[-1] == "\r\x1b[Kcompiling the BPF program… 3 s"


def test_ebpf_lab_run_escapes_unless_raw_and_its_errors_never_carry_controls(monkeypatch, tmp_path, capsys):
    import ebpf_lab.lab

    printers = []

    class FakeLab:
        def run(self, text, raw=False, **kwargs):
            printers.append(LivePrinter(FakeRun(), print, print, raw=raw))  # as Lab.run makes it
            raise ProgramFailed("the program raised OSError: \x1b[2Jboom", "Traceback:\n  \x1b]52;c;eA==\x07\tline 3")

    monkeypatch.setattr(ebpf_lab.lab, "connect", FakeLab)
    (tmp_path / "prog.py").write_text("print('hi')\n")
    assert cli.main(["run", str(tmp_path / "prog.py")]) == 1
    assert cli.main(["run", "--raw", str(tmp_path / "prog.py")]) == 1
    assert [p.raw for p in printers] == [False, True]
    err = capsys.readouterr().err
    shown = "ebpf-lab: the program raised OSError: \\x1b[2Jboom\nTraceback:\n  \\x1b]52;c;eA==\\x07\tline 3\n"
    assert err.count(shown) == 2
    assert not CONTROLS.search(err)


def test_the_bcc_magic_escapes_the_programs_lines_and_the_warnings_that_quote_the_vm(capsys):
    BccMagics(shell=None)._follow(FakeRun(), views=[], max_lines=100)
    out, err = capsys.readouterr()
    assert out == ESCAPED_OUT
    assert err == ESCAPED_ERR + "warning: still loaded after the run: prog \\x1b]0;owned\\x07 (pinned)\n"


def test_an_error_shown_in_a_notebook_shows_the_vms_controls_escaped():
    failed = ProgramFailed("the program raised OSError", "Traceback:\n  \x1b]0;title\x07 line 3")
    assert failed._render_traceback_() == ["ProgramFailed: the program raised OSError\nTraceback:\n  "
                                           "\\x1b]0;title\\x07 line 3"]


def test_a_verdict_reads_at_a_glance_in_a_notebook_and_as_text_elsewhere():
    from ebpf_lab.course import Verdict

    passed, not_yet = Verdict(True, "all <3> fine"), Verdict(False, "try \x1b[31magain")
    assert repr(passed) == "PASS: all <3> fine" and repr(not_yet).startswith("NOT YET: ")
    assert "<b style='color:#1a7f37'>PASS</b> all &lt;3&gt; fine" in passed._repr_html_()
    assert "<b style='color:#9a6700'>NOT YET</b> try \\x1b[31magain" in not_yet._repr_html_()


def test_the_course_opens_jupyterlab_offline_ready(monkeypatch):
    """No prompt to fetch Jupyter's news, no update check: a course started offline asks nothing."""
    from types import SimpleNamespace

    import ebpf_lab.vm.backend

    started = []
    monkeypatch.setattr(ebpf_lab.vm.backend, "select_backend", lambda: SimpleNamespace(
        prepare=lambda: None, up=lambda: None, describe=lambda: "a test VM"))
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: started.append((cmd, env)) or 0)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", "/opt/site-jupyter")
    assert cli.main(["course", "--no-browser"]) == 0
    cmd, env = started[0]
    assert cli.OFFLINE_LAB[0] in cmd and cli.OFFLINE_LAB[1] in cmd
    # the learner's own config path still comes first; ours only disables the plugin that asks
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == ["/opt/site-jupyter", str(cli.LAB_CONFIG)]
    page = json.loads((cli.LAB_CONFIG / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyterlab/apputils-extension:announcements": True}
    assert cmd[-1] == "--no-browser"
