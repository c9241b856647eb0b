"""The host-side Run against a scripted stand-in for the guest supervisor (logic only; the VM tests cover the real one)."""
import json
import subprocess
import sys

from ebpf_lab.runner.run import Line, Record, Run


def fake_supervisor(frames: list[bytes]) -> subprocess.Popen:
    script = "import sys\nsys.stdout.buffer.write(%r)\nsys.stdin.read()\n" % b"".join(f + b"\n" for f in frames)
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_frames_become_lines_records_and_status(tmp_path):
    frames = [b'c {"k":"started","pid":1}', b"o hello", b"e warn", b'r {"n":"ev","p":{"uid":1001}}',
              b'c {"k":"bpf_text","text":"int x;"}', b'c {"k":"exit","status":0}']
    proc = fake_supervisor(frames)
    proc.stdin.close()
    run = Run(proc, "src", tmp_path / "log")
    assert run.wait(10) == 0
    assert list(run.lines) == [Line("stdout", "hello"), Line("stderr", "warn")]
    assert [(r.name, r.payload) for r in run.records] == [("ev", {"uid": 1001})]
    assert [e["k"] for e in run.events] == ["started", "exit"]
    run.raise_for_status()


def test_memory_is_capped_and_the_log_keeps_everything(tmp_path):
    frames = [b"o line %d" % i for i in range(5000)] + [b'r {"n":"e","p":%d}' % i for i in range(3000)]
    proc = fake_supervisor(frames + [b'c {"k":"exit","status":0}'])
    proc.stdin.close()
    seen = []
    run = Run(proc, "", tmp_path / "log", max_lines=100, max_records=10)
    run.subscribe(on_record=seen.append)
    run.wait(30)
    assert (len(run.lines), run.dropped_lines) == (100, 4900)
    assert (len(run.records), run.dropped_records) == (10, 2990)
    assert run.lines[-1].text == "line 4999"
    logged = list(run.read_log())
    assert sum(isinstance(x, Line) for x in logged) == 5000
    assert sum(isinstance(x, Record) for x in logged) == 3000
    assert len(seen) == 3000


def test_exception_event_raises_explained_failure(tmp_path):
    exc = {"k": "exception", "type": "ValueError", "message": "bad", "traceback": "ValueError: bad\n"}
    proc = fake_supervisor([b"c " + json.dumps(exc).encode(), b'c {"k":"exit","status":1}'])
    proc.stdin.close()
    run = Run(proc, "", tmp_path / "log")
    run.wait(10)
    try:
        run.raise_for_status()
    except Exception as e:
        assert "the program raised ValueError: bad" in str(e)
    else:
        raise AssertionError("expected ProgramFailed")


def test_late_subscribers_get_what_already_arrived(tmp_path):
    proc = fake_supervisor([b"o early", b'r {"n":"e","p":1}', b'c {"k":"exit","status":0}'])
    proc.stdin.close()
    run = Run(proc, "", tmp_path / "log")
    run.wait(10)
    lines, records, events = [], [], []
    run.subscribe(on_line=lines.append, on_record=records.append, on_event=events.append)
    assert [l.text for l in lines] == ["early"] and [r.payload for r in records] == [1]
    assert [e["k"] for e in events] == ["exit"]
