"""The host-side Run against a scripted stand-in for the guest supervisor (logic only; the VM tests cover the real one)."""
import json
import subprocess
import sys
import tempfile

import pytest

from ebpf_lab.runner import protocol
from ebpf_lab.runner.run import Line, Record, Run


def fake_supervisor(frames: list[bytes]) -> subprocess.Popen:
    """A process that writes `frames` to stdout, then waits for stdin to close."""
    data = tempfile.NamedTemporaryFile(delete=False)
    data.write(b"".join(f + b"\n" for f in frames))
    data.close()
    script = "import shutil, sys\nshutil.copyfileobj(open(sys.argv[1], 'rb'), sys.stdout.buffer)\nsys.stdout.flush()\nsys.stdin.read()\n"
    return subprocess.Popen([sys.executable, "-c", script, data.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def control(kind, **fields) -> bytes:
    return protocol.control_frame(kind, **fields).rstrip(b"\n")


def records(name, payloads) -> bytes:
    return protocol.records_frame(name, json.dumps(payloads)).rstrip(b"\n")


def record(name, payload) -> bytes:
    return records(name, [payload])


def out(text: bytes) -> bytes:
    return protocol.OUT + b" " + text


def err(text: bytes) -> bytes:
    return protocol.ERR + b" " + text


EXIT0 = control(protocol.EXIT, status=0)


def finished(tmp_path, frames, **kwargs) -> Run:
    proc = fake_supervisor(frames)
    proc.stdin.close()
    run = Run(proc, "src", tmp_path / "log", **kwargs)
    run.wait(30)
    return run


def test_frames_become_lines_records_and_status(tmp_path):
    run = finished(tmp_path, [control(protocol.STARTED, pid=1), out(b"hello"), err(b"warn"), record("ev", {"uid": 1001}),
                              control(protocol.COMPILING, text="int x;"), EXIT0])
    assert run.status == 0
    assert list(run.lines) == [Line("stdout", "hello"), Line("stderr", "warn")]
    assert [(r.name, r.payload) for r in run.records] == [("ev", {"uid": 1001})]
    assert [e["kind"] for e in run.events] == [protocol.STARTED, protocol.COMPILING, protocol.EXIT]
    run.raise_for_status()


def test_memory_is_capped_and_the_log_keeps_everything(tmp_path):
    frames = [out(b"line %d" % i) for i in range(5000)] + [records("e", list(range(i, i + 100))) for i in range(0, 3000, 100)]
    proc = fake_supervisor(frames + [EXIT0])
    proc.stdin.close()
    seen, batches = [], []
    run = Run(proc, "", tmp_path / "log", max_lines=100, max_records=10)
    run.subscribe(on_record=seen.append, on_records=batches.append)
    run.wait(30)
    assert (len(run.lines), run.dropped_lines) == (100, 4900)
    assert (len(run.records), run.dropped_records) == (10, 2990)
    assert run.lines[-1].text == "line 4999"
    logged = list(run.read_log())
    assert sum(isinstance(x, Line) for x in logged) == 5000
    assert sum(isinstance(x, Record) for x in logged) == 3000
    assert [r.payload for r in seen] == list(range(3000))
    assert len(batches) == 30 and [r.payload for r in batches[-1]] == list(range(2900, 3000))


def test_memory_is_capped_by_bytes_too(tmp_path):
    big = out(b"x" * 10_000)
    run = finished(tmp_path, [big] * 200 + [EXIT0], max_memory_bytes=100_000)
    assert run.line_count == 200 and 5 <= len(run.lines) <= 10


def test_the_run_log_has_a_size_cap(tmp_path):
    run = finished(tmp_path, [out(b"y" * 1000)] * 100 + [EXIT0], max_log_bytes=20_000)
    assert run.log_truncated and (tmp_path / "log").stat().st_size <= 20_000
    assert run.line_count == 100 and any("run log stopped" in w for w in run.warnings())


def test_malformed_frames_are_counted_not_fatal(tmp_path):
    frames = [b"garbage", protocol.RECORDS + b" {not json", protocol.RECORDS + b' {"name":"v2-style","payload":1}',
              protocol.CONTROL + b' {"status":0}', b"z what", out(b"still here"), record("ok", 1), EXIT0]
    run = finished(tmp_path, frames)
    assert run.malformed_frames == 5 and run.status == 0
    assert [l.text for l in run.lines] == ["still here"] and [r.payload for r in run.records] == [1]
    assert "5 malformed frame(s) from the VM were skipped" in run.warnings()


def test_long_lines_are_split_and_long_records_skipped(tmp_path):
    long_line = out(b"a" * (3 * 1024 * 1024))
    long_record = protocol.RECORDS + b" [" + b"b" * (2 * 1024 * 1024)
    run = finished(tmp_path, [long_line, long_record, record("after", 2), EXIT0])
    assert run.line_count == 3 and all(len(l.text) <= 1024 * 1024 + 1024 for l in run.lines)
    assert sum(len(l.text) for l in run.lines) == 3 * 1024 * 1024
    assert run.malformed_frames == 1 and [r.payload for r in run.records] == [2]


def test_a_failing_subscriber_does_not_stop_the_reader(tmp_path):
    proc = fake_supervisor([record("e", i) for i in range(10)] + [EXIT0])
    proc.stdin.close()
    run = Run(proc, "", tmp_path / "log")

    def broken(rec):
        raise RuntimeError("widget bug")
    run.subscribe(on_record=broken)
    run.wait(30)
    assert run.record_count == 10 and run.status == 0
    assert run.callback_errors and "RuntimeError: widget bug" in run.callback_errors[0]


def test_a_dying_reader_stops_the_ssh_process(tmp_path):
    class Exploding:
        def readline(self, limit=-1):
            raise MemoryError("simulated")

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout = Exploding()
    run = Run(proc, "", tmp_path / "log")
    run.wait(30)
    assert run.done and proc.poll() is not None
    assert "reader failed" in "\n".join(run._stderr)


def test_exception_event_raises_explained_failure(tmp_path):
    exc = control(protocol.EXCEPTION, type="ValueError", message="bad", traceback="ValueError: bad\n")
    run = finished(tmp_path, [exc, control(protocol.EXIT, status=1)])
    try:
        run.raise_for_status()
    except Exception as e:
        assert "the program raised ValueError: bad" in str(e)
    else:
        raise AssertionError("expected ProgramFailed")


def test_refused_and_compile_timeout_explain_themselves(tmp_path):
    from ebpf_lab.errors import ProgramFailed, RunRefused

    refused = finished(tmp_path, [control(protocol.REFUSED, message="workload: there is no user 'carol'", fix="use alice"),
                                  control(protocol.EXIT, status=2)])
    with pytest.raises(RunRefused) as refusal:
        refused.raise_for_status()
    assert str(refusal.value) == "workload: there is no user 'carol' — use alice"
    stalled = finished(tmp_path, [control(protocol.COMPILING, text="x"), control(protocol.COMPILE_TIMEOUT, after=5.0),
                                  control(protocol.EXIT, status=137)])
    with pytest.raises(ProgramFailed) as failure:
        stalled.raise_for_status()
    assert "did not get running within the 5 s compile limit (bcc was still compiling)" in str(failure.value)
    assert "--compile-timeout" in str(failure.value)


def test_late_subscribers_get_what_already_arrived(tmp_path):
    run = finished(tmp_path, [out(b"early"), record("e", 1), EXIT0])
    lines, records, events = [], [], []
    run.subscribe(on_line=lines.append, on_record=records.append, on_event=events.append)
    assert [l.text for l in lines] == ["early"] and [r.payload for r in records] == [1]
    assert [e["kind"] for e in events] == [protocol.EXIT]


def test_wait_for_returns_when_the_condition_holds(tmp_path):
    proc = fake_supervisor([out(b"one"), out(b"two")])
    run = Run(proc, "", tmp_path / "log")
    assert run.wait_for(lambda r: r.line_count >= 2, timeout=30)
    assert not run.wait_for(lambda r: r.line_count >= 3, timeout=0.5)
    proc.kill()
