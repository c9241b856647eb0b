"""Runner logic that needs no VM: the protocol, argument checks, ssh options, the compile progress line,
and the guest supervisor's clock and outbox (imported here as the guest imports them)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ebpf_lab.errors import BadArgument, UnsafeRuntimeDir
from ebpf_lab.lab import Lab
from ebpf_lab.runner import protocol
from ebpf_lab.runner.follow import CompileProgress, LivePrinter, drain
from ebpf_lab.runner.run import Line
from ebpf_lab.transport.ssh import SshTransport
from ebpf_lab.transport.target import SshTarget


@pytest.fixture
def guest_modules(guest_import):
    return guest_import("supervisor")


def test_header_round_trip_and_version_check():
    header = protocol.RunHeader(source="print(1)", timeout=5.0,
                                workload=[protocol.WorkloadSpec("alice", 3, ["/bin/true"], 2.0)])
    assert protocol.RunHeader.decode(header.encode()) == header
    old = header.encode().replace(b'"version": %d' % protocol.VERSION, b'"version": 1')
    with pytest.raises(protocol.ProtocolError, match="protocol 1"):
        protocol.RunHeader.decode(old)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "soon"])
def test_bad_timeouts_are_refused_before_anything_starts(bad, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    lab = Lab(SshTarget(kind="ssh", host="nowhere.invalid", port=22, user="root"))
    for kwargs in ({"timeout": bad}, {"compile_timeout": bad}):
        with pytest.raises(BadArgument, match="positive number of seconds|number of seconds"):
            lab.start("print(1)", **kwargs)  # no ssh attempted: nowhere.invalid would fail differently


def test_ssh_ignores_user_config_for_lab_vms_and_never_forwards(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    vm = SshTransport(SshTarget(kind="embedded", host="127.0.0.1", port=2222, user="root")).argv("true")
    assert vm[:3] == ["ssh", "-F", "none"]
    for option in ("ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes"):
        assert option in vm
    assert vm[-3:] == ["--", "127.0.0.1", "true"]
    remote = SshTransport(SshTarget(kind="ssh", host="lab.example", port=22, user="me", use_ssh_config=True)).argv("x")
    assert "-F" not in remote and "ForwardAgent=no" in remote and remote[-3] == "--"


def test_runtime_dir_refuses_symlinks_and_open_directories(short_tmp, monkeypatch):
    from ebpf_lab.paths import runtime_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))
    (short_tmp / "elsewhere").mkdir(mode=0o700)
    (short_tmp / "ebpf-lab").symlink_to(short_tmp / "elsewhere")
    with pytest.raises(UnsafeRuntimeDir, match="not a plain directory"):
        runtime_dir()
    (short_tmp / "ebpf-lab").unlink()
    (short_tmp / "ebpf-lab").mkdir()
    os.chmod(short_tmp / "ebpf-lab", 0o777)
    with pytest.raises(UnsafeRuntimeDir, match="chmod 700"):
        runtime_dir()
    os.chmod(short_tmp / "ebpf-lab", 0o700)
    assert runtime_dir() == short_tmp / "ebpf-lab"


def test_a_runtime_dir_too_long_for_sockets_falls_back_to_tmp(tmp_path, monkeypatch):
    from ebpf_lab.paths import RUNTIME_DIR_MAX, runtime_dir
    from ebpf_lab.transport.ssh import SshTransport
    from ebpf_lab.transport.target import SshTarget

    long = tmp_path / ("x" * RUNTIME_DIR_MAX)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(long))
    assert runtime_dir() == Path(f"/tmp/ebpf-lab-{os.getuid()}")
    argv = SshTransport(SshTarget(kind="ssh", host="h", port=22, user="u")).argv("true")
    control = next(a for a in argv if a.startswith("ControlPath=")).split("=", 1)[1]
    # ssh appends '.' and 16 random characters to the master's socket while it sets it up.
    assert len(control) + 17 < 104


class FakeRun:
    """What the follow module reads of a run: its compile clock, and subscriptions fed by the test."""

    def __init__(self):
        self.compiling_for: float | None = None
        self.on_line = self.on_event = None

    def subscribe(self, on_line=None, on_event=None):
        self.on_line, self.on_event = on_line, on_event
        return lambda: None


def test_compile_progress_rewrites_one_line_then_says_how_long():
    run, written = FakeRun(), []
    progress = CompileProgress(run, written.append, live=True)
    progress.tick()
    assert written == []  # nothing to say for a program that is not compiling
    run.compiling_for = 0.2
    progress.tick()
    run.compiling_for = 1.5
    progress.tick()
    progress.tick()
    run.compiling_for = None
    progress.ended({"kind": protocol.COMPILED, "seconds": 21.34, "ok": True})
    progress.tick()
    assert "".join(written) == ("compiling the BPF program… 0 s\rcompiling the BPF program… 1 s\r"
                                + "compiled in 21.3 s".ljust(30) + "\n")
    assert on_screen("".join(written)) == ["compiled in 21.3 s"]


def on_screen(text: str) -> list[str]:
    """What a terminal or JupyterLab shows for `text`: a carriage return goes back to the line's start and
    the characters written after it replace the old ones, one for one; the rest of the old line stays."""
    lines = []
    for line in text.split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return lines[:-1] if lines and not lines[-1] else lines


def test_a_shorter_progress_line_leaves_nothing_of_the_longer_one_on_screen():
    """JupyterLab showed "compiled in 2.4 s program… 2 s": the end of the line it rewrote."""
    run, written = FakeRun(), []
    progress = CompileProgress(run, written.append, live=True)
    run.compiling_for = 12.0
    progress.tick()
    run.compiling_for = None
    progress.ended({"kind": protocol.COMPILED, "seconds": 2.4, "ok": True})
    assert on_screen("".join(written)) == ["compiled in 2.4 s"]


def test_compile_progress_on_a_plain_stream_and_around_output():
    run, written = FakeRun(), []
    progress = CompileProgress(run, written.append, live=False)
    run.compiling_for = 3.0
    progress.tick()
    progress.tick()
    run.compiling_for = None
    progress.ended({"kind": protocol.COMPILED, "seconds": 3.0, "ok": True})
    progress.tick()
    assert written == ["compiling the BPF program…\n", "compiled in 3.0 s\n"]
    live, out = FakeRun(), []
    progress = CompileProgress(live, out.append, live=True)
    live.compiling_for = 2.0
    progress.tick()
    progress.break_line()  # the program printed something: it starts on its own line
    assert "".join(out) == "compiling the BPF program… 2 s\n"


@pytest.mark.parametrize("drains_between", [False, True])
def test_compile_end_comes_before_later_output_however_drains_fall(drains_between):
    """The guest says "compiled" before the program prints: the cell shows them in that order and the
    progress line collapses into "compiled in", whether or not a drain fell between the two."""
    run, out, err = FakeRun(), [], []
    printer = LivePrinter(run, out.append, err.append)
    progress = CompileProgress(run, out.append, live=True)
    run.compiling_for = 1.2
    drain(printer, progress)
    run.compiling_for = None
    run.on_event({"kind": protocol.COMPILED, "seconds": 2.0, "ok": True})
    if drains_between:
        drain(printer, progress)
    run.on_line(Line("stderr", "bpf: Failed to load program: Invalid argument"))
    run.on_line(Line("stdout", "after"))
    drain(printer, progress)
    assert on_screen("".join(out)) == ["compiled in 2.0 s", "after"]
    assert err == ["bpf: Failed to load program: Invalid argument\n"]


def test_output_during_a_compile_starts_on_its_own_line_and_the_limit_holds():
    run, out, err = FakeRun(), [], []
    printer = LivePrinter(run, out.append, err.append, limit=1)
    progress = CompileProgress(run, out.append, live=True)
    run.compiling_for = 0.5
    drain(printer, progress)
    run.on_line(Line("stderr", "warning: unused variable"))
    run.on_line(Line("stderr", "warning: over the limit"))
    run.compiling_for = None
    run.on_event({"kind": protocol.COMPILED, "seconds": 1.0, "ok": False})
    drain(printer, progress)
    assert "".join(out) == "compiling the BPF program… 0 s\n"
    assert err == ["warning: unused variable\n"]


def test_warnings_in_bursts_do_not_repeat_the_progress_line():
    run, out, err = FakeRun(), [], []
    printer = LivePrinter(run, out.append, err.append)
    progress = CompileProgress(run, out.append, live=True)
    run.compiling_for = 1.1
    drain(printer, progress)
    for text in ("main.c:17:32: warning: cannot use several %s conversion specifiers", "1 warning generated."):
        run.on_line(Line("stderr", text))
        drain(printer, progress)
    run.compiling_for = 2.3
    drain(printer, progress)
    run.compiling_for = None
    run.on_event({"kind": protocol.COMPILED, "seconds": 2.5, "ok": True})
    drain(printer, progress)
    assert on_screen("".join(out)) == ["compiling the BPF program… 1 s", "compiled in 2.5 s"]


def test_clock_starts_at_attach_and_pauses_while_compiling(guest_modules, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(guest_modules.time, "monotonic", lambda: now[0])
    clock = guest_modules.RunClock(timeout=10, compile_timeout=300)
    clock.on_compiling()
    now[0] += 250  # a very slow compile: neither limit is reached
    assert clock.expired() is None
    clock.on_output()  # clang's warnings: not running yet
    assert clock.running_since is None
    clock.on_compiled()
    now[0] += 30  # compiled, not attached: the run time has not started
    assert clock.expired() is None and not clock.workload_ready.is_set()
    assert clock.on_attached() == "attached"
    now[0] += 6
    clock.on_compiling()  # a second BPF() later: its compile time does not count either
    now[0] += 100
    clock.on_compiled()
    assert clock.expired() is None
    now[0] += 4.5
    assert clock.expired() == (protocol.TIMEOUT, 10)


def test_workload_waits_for_every_probe_bpf_attaches_itself(guest_modules, monkeypatch):
    # TRACEPOINT_PROBE functions are loaded and attached one by one inside BPF(): the gap between two
    # attaches (a verification) can be long, but the workload must wait for the last one.
    now = [0.0]
    monkeypatch.setattr(guest_modules.time, "monotonic", lambda: now[0])
    clock = guest_modules.RunClock(timeout=10, compile_timeout=300)
    clock.on_compiling()
    clock.on_attaching()
    clock.on_attached()
    now[0] += 5  # verifying the next function
    assert clock.workload_ready.is_set() and not clock.settled()
    clock.on_attaching()
    clock.on_attached()
    clock.on_compiled()
    assert not clock.settled()  # the last attach was just now
    now[0] += 1
    assert clock.settled()


def test_clock_compile_limit(guest_modules, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(guest_modules.time, "monotonic", lambda: now[0])
    stuck = guest_modules.RunClock(timeout=None, compile_timeout=60)
    stuck.on_compiling()
    now[0] = 61
    assert stuck.expired() == (protocol.COMPILE_TIMEOUT, 60)
    silent = guest_modules.RunClock(timeout=5, compile_timeout=60)
    now[0] = 130
    assert silent.expired() == (protocol.COMPILE_TIMEOUT, 60)  # never attached, never printed
    free = guest_modules.RunClock(timeout=None, compile_timeout=60)
    assert free.expired() is None  # no --timeout: a program that never attaches may run on


def test_outbox_control_events_never_wait_for_a_stalled_host(guest_modules, monkeypatch):
    monkeypatch.setattr(guest_modules, "OUTBOX_BYTES", 1000)
    writing, unblock = threading.Event(), threading.Event()
    written = []

    class StalledHost:
        def write(self, data):
            writing.set()
            unblock.wait()
            written.append(bytes(data))

        def flush(self):
            pass

    box = guest_modules.Outbox(StalledHost(), on_host_gone=lambda: None)
    box.data(protocol.frame(protocol.OUT, b"x" * 2000))
    assert writing.wait(60), "the writer never took the first frame"  # it now blocks on the host
    box.data(protocol.frame(protocol.OUT, b"y" * 2000))  # queued: the outbox is now over its limit
    blocked = threading.Thread(target=box.data, args=(protocol.frame(protocol.OUT, b"more"),), daemon=True)
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive(), "program output must wait while the host does not read"
    control = threading.Thread(target=box.control, args=(protocol.TIMEOUT,), kwargs={"after": 5}, daemon=True)
    control.start()
    control.join(60)  # a guard against a hang only: it returns at once
    assert not control.is_alive(), "a control event must not wait for a host that does not read"
    assert blocked.is_alive()  # the host still reads nothing
    unblock.set()
    blocked.join(60)
    assert not blocked.is_alive()
    box.drain()
    # The control event got out, ahead of the output that was waiting for room.
    last = protocol.control_frame(protocol.TIMEOUT, after=5) + protocol.frame(protocol.OUT, b"more")
    assert b"".join(written).endswith(last)


def test_the_supervisor_waits_for_a_pump_held_up_by_a_slow_host(guest_modules, monkeypatch):
    """The pump's last record waits for room in a full outbox while a slow host reads: no hand-over to
    the outbox for longer than the stall limit, yet the host makes progress, so the record must get out."""
    monkeypatch.setattr(guest_modules, "OUTBOX_BYTES", 1000)
    monkeypatch.setattr(guest_modules, "WRITE_BYTES", 100)
    monkeypatch.setattr(guest_modules, "PUMP_STALL_SECONDS", 0.8)
    received = []

    class SlowHost:
        def write(self, data):
            time.sleep(len(data) / 500)  # 500 bytes a second
            received.append(bytes(data))

        def flush(self):
            pass

    supervisor = guest_modules.Supervisor(protocol.RunHeader(source=""), SlowHost())
    record = protocol.records_frame("after", "[1]")

    def pump():
        supervisor.forward(protocol.frame(protocol.OUT, b"x" * 1000), True)  # the writer takes this one
        supervisor.forward(protocol.frame(protocol.OUT, b"y" * 1000), True)  # fills the outbox
        supervisor.forward(record, False)  # waits ~2 s for the first 1000 bytes to reach the host

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    supervisor.wait_for_pump(pumping)
    assert not pumping.is_alive()
    supervisor.outbox.close(timeout=30)
    assert b"".join(received).endswith(record)


def test_records_on_the_data_channel_start_the_clock_and_wait_for_the_outbox(guest_modules, monkeypatch):
    """A program's first records written to the port itself: the supervisor hears SYNC, starts the
    --timeout clock as it does for output, and (through the pump) acknowledges once its outbox is out."""
    unblock, written = threading.Event(), []

    class SlowHost:
        def write(self, data):
            unblock.wait()
            written.append(bytes(data))

        def flush(self):
            pass

    supervisor = guest_modules.Supervisor(protocol.RunHeader(source="", timeout=5), SlowHost())
    supervisor.note_control(protocol.control_frame(protocol.COMPILING).rstrip(b"\n"))
    supervisor.note_control(protocol.SYNC)  # records while bcc compiles (from another thread)
    assert supervisor.clock.running_since is None
    supervisor.note_control(protocol.control_frame(protocol.COMPILED).rstrip(b"\n"))
    assert supervisor.clock.running_since is not None
    drained = threading.Thread(target=supervisor.outbox.drain, daemon=True)
    drained.start()
    drained.join(0.3)
    assert drained.is_alive(), "the RUNNING event is not with the host yet"
    unblock.set()
    drained.join(5)
    running = protocol.control_frame(protocol.RUNNING, reason="output").rstrip(b"\n")
    assert not drained.is_alive() and running in b"".join(written)


def test_outbox_reports_a_vanished_host(guest_modules):
    gone = threading.Event()

    class ClosedPipe:
        def write(self, data):
            raise BrokenPipeError

        def flush(self):
            pass

    box = guest_modules.Outbox(ClosedPipe(), on_host_gone=gone.set)
    box.data(protocol.frame(protocol.OUT, b"hi"))
    assert gone.wait(5) and box.host_gone.is_set()
    box.data(protocol.frame(protocol.OUT, b"z" * 10_000_000))  # dropped, never waits


def test_stale_vm_state_after_a_host_reboot(tmp_path, monkeypatch):
    import json

    from ebpf_lab.vm import embedded

    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded, "_alive", lambda pid: True)  # as if some process had that pid again
    embedded.vm_dir().mkdir(parents=True)
    me = os.getpid()
    base = {"pid": me, "port": 1, "accel": "tcg", "image_dir": "/x", "console": "c", "qmp": "q", "started": 0}
    (embedded.vm_dir() / "state.json").write_text(json.dumps({**base, "boot_id": "another-boot", "pid_start": 1}))
    assert embedded.state() is None and not (embedded.vm_dir() / "state.json").exists()
    (embedded.vm_dir() / "state.json").write_text(json.dumps(
        {**base, "boot_id": embedded._boot_id(), "pid_start": embedded._start_time(me) + 1}))
    assert embedded.state() is None
    (embedded.vm_dir() / "state.json").write_text(json.dumps(
        {**base, "boot_id": embedded._boot_id(), "pid_start": embedded._start_time(me)}))
    assert embedded.state().pid == me


def test_image_builds_leave_no_debris_and_spare_the_running_image(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ebpf_lab.errors import ImageBuildFailed
    from ebpf_lab.vm import embedded, image

    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    images = image.images_dir()
    for name in (".build-aaaa-x1", "old1", "inuse", "current"):
        (images / name).mkdir(parents=True)
        (images / name / "lab.img").write_bytes(b"\0" * 10)
    image._remove_stale_builds()  # what a crash or a reboot left behind
    assert not (images / ".build-aaaa-x1").exists()
    monkeypatch.setattr(embedded, "state", lambda: SimpleNamespace(image_dir=str(images / "inuse")))
    image._remove_unused_images(keep="current")
    assert sorted(p.name for p in images.iterdir()) == ["current", "inuse"]
    with pytest.raises(ImageBuildFailed, match="ebpf-lab vm down"):
        image._refuse_if_in_use(images / "inuse")
    image._refuse_if_in_use(images / "current")


def test_an_interrupted_build_removes_its_work_dir(tmp_path, monkeypatch):
    from ebpf_lab.vm import image
    from ebpf_lab.vm.archive import Resolution

    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(image.shutil, "which", lambda name: "/usr/bin/" + name)

    def interrupted(key, today, work, final, log):
        (work / "lab.img").write_bytes(b"\0" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(image, "archive_today", lambda: Resolution({"linux-image-6.1.0-57-cloud-amd64": "1"}))
    monkeypatch.setattr(image, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        image.build_image(log=lambda *_: None)
    assert not list(image.images_dir().glob(".build-*"))
