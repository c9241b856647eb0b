"""The runner against the real kernel in the lab VM."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from ebpf_lab import ProgramFailed
from tests.programs import HASH_MAP, HELLO, NULL_DEREF


def test_hello_kprobe_line_arrives_while_execs_happen(lab, clean_kernel):
    run = lab.run(HELLO, timeout=8, load=["alice:3"], echo=False)
    hellos = [l.text for l in run.lines if "Hello, World!" in l.text]
    assert len(hellos) >= 3, run.lines
    assert {"k": "load", "user": "alice", "command": ["/bin/true"], "count": 3} in run.events
    assert run.timed_out and run.status == 130


def test_cli_streams_hello_and_returns_program_status(lab, clean_kernel, tmp_path):
    prog = tmp_path / "hello.py"
    prog.write_text(HELLO)
    cli = [sys.executable, "-m", "ebpf_lab", "run", str(prog), "--timeout", "8", "--load", "bob:2"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # arrives while the program still runs: streamed, not buffered
    assert "Hello, World!" in first and proc.poll() is None
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "timeout" in err
    exit7 = tmp_path / "exit7.py"
    exit7.write_text("import sys\nprint('bye')\nsys.exit(7)\n")
    done = subprocess.run([sys.executable, "-m", "ebpf_lab", "run", str(exit7)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (7, "bye\n")


def test_per_uid_counts_for_two_users(lab, clean_kernel):
    run = lab.run(HASH_MAP, timeout=7, load=["alice:5", "bob:3"], echo=False)
    last = [l.text for l in run.lines if l.stream == "stdout"][-1]
    counts = {int(u): int(c) for u, c in re.findall(r"ID (\d+): (\d+)", last)}
    assert counts[1001] >= 5 and counts[1002] >= 3, last


def test_interrupt_runs_keyboardinterrupt_cleanup(lab, clean_kernel):
    source = HELLO.replace("b.trace_print()", "try:\n    b.trace_print()\nexcept KeyboardInterrupt:\n    print('cleaned up')\n")
    run = lab.start(source)
    run.subscribe(on_event=lambda e: None)
    deadline = time.time() + 60
    while not any(e["k"] == "attached" for e in run.events) and time.time() < deadline:
        time.sleep(0.1)
    run.interrupt(grace=5)
    assert run.done and run.status == 0
    assert "cleaned up" in run.stdout


def test_program_ignoring_sigint_is_killed(lab, clean_kernel):
    source = HELLO.replace("b.trace_print()", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('armed', flush=True)\ntime.sleep(600)\n")
    run = lab.start(source, timeout=6, grace=1)
    run.wait(60)
    assert run.done and run.status == 137
    assert any(e["k"] == "killed" for e in run.events)


def test_dropped_ssh_link_unloads_the_program(lab, clean_kernel):
    run = lab.start(HELLO)
    deadline = time.time() + 60
    while not any(e["k"] == "attached" for e in run.events) and time.time() < deadline:
        time.sleep(0.1)
    assert lab.prog_ids(), "program should be loaded while running"
    pid = next(e["pid"] for e in run.events if e["k"] == "started")
    assert lab.sh(f"kill -0 {pid} && echo alive", check=False).strip() == "alive"
    run._proc.kill()  # what a crashed notebook kernel or a dead network does to the link
    run.wait(10)
    deadline = time.time() + 15
    while time.time() < deadline and lab.sh(f"kill -0 {pid} && echo alive", check=False).strip():
        time.sleep(0.2)
    assert not lab.sh(f"kill -0 {pid} && echo alive", check=False).strip()


def test_warm_runs_fork_from_the_zygote(lab):
    lab.run("print('warm-up')", echo=False)  # the first run in a fresh VM starts the zygote
    run = lab.run("import sys\nprint('bcc' in sys.modules)", echo=False)
    assert run.events[0]["warm"] is True and run.stdout == "True"
    lab.sh("pkill -f '[z]ygote.py'; rm -f /run/ebpf-lab/guest-*/zygote.sock")
    cold = lab.run("print('cold')", echo=False)  # falls back to a fresh interpreter, and restarts the zygote
    assert cold.events[0]["warm"] is False and cold.stdout == "cold"


def test_two_runs_at_once_do_not_interfere(lab, clean_kernel):
    a = lab.start("import time\nfor i in range(20):\n    print('A', i, flush=True)\n    emit('a', i)\n    time.sleep(0.05)\n")
    b = lab.start("import time\nfor i in range(20):\n    print('B', i, flush=True)\n    emit('b', i)\n    time.sleep(0.05)\n")
    a.wait(60), b.wait(60)
    assert [l.text for l in a.lines] == [f"A {i}" for i in range(20)]
    assert [l.text for l in b.lines] == [f"B {i}" for i in range(20)]
    assert [r.payload for r in a.records] == list(range(20)) and {r.name for r in b.records} == {"b"}


def test_compile_error_points_at_cell_line(lab, clean_kernel):
    source = 'from bcc import BPF\nprogram = r"""\nint hello(void *ctx) {\n    undeclared = 1;\n    return 0;\n}\n"""\nb = BPF(text=program)\n'
    with pytest.raises(ProgramFailed) as info:
        lab.run(source, echo=False)
    text = str(info.value)
    assert "does not compile" in text
    assert "cell line 4, column 5: use of undeclared identifier 'undeclared'" in text
    assert "    4 |     undeclared = 1;" in text


def test_verifier_rejection_shows_reason(lab, clean_kernel):
    with pytest.raises(ProgramFailed) as info:
        lab.run(NULL_DEREF, echo=False)
    assert "verifier rejected the program: R0 invalid mem access 'map_value_or_null'" in str(info.value)


def test_python_exception_traceback_trimmed_to_cell(lab, clean_kernel):
    with pytest.raises(ProgramFailed) as info:
        lab.run("from bcc import BPF\nb = BPF(text='int f(void *c) { return 0; }')\nb['nope']\n", echo=False)
    text = str(info.value)
    assert text.startswith("the program raised KeyError")
    assert 'File "<cell>", line 3' in text and "bcc/__init__.py" not in text


def test_100k_lines_and_records_are_capped_but_logged(lab):
    source = ("import sys\nfor i in range(100000):\n    sys.stdout.write(f'line {i}\\n')\n"
              "for i in range(100000):\n    emit('n', i)\n")
    run = lab.run(source, echo=False)
    assert run.line_count == 100000 and run.record_count == 100000
    assert len(run.lines) < 100000 and run.dropped_lines == 100000 - len(run.lines)
    assert run.lines[-1].text == "line 99999" and run.records[-1].payload == 99999
    assert sum(1 for x in run.read_log()) == 200000


def test_programs_that_end_at_once_report_their_status(lab):
    lab.run("pass", echo=False)  # make sure the zygote is up
    statuses = {lab.run(f"import sys\nsys.exit({n})", echo=False).status for n in (0, 3, 4, 5, 6, 7)}
    assert statuses == {0, 3, 4, 5, 6, 7}
