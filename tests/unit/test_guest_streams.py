"""The guest's stream code on the host (it is stdlib only): how records are batched into frames and
how the pump keeps output and notes in the order the program made them. The VM tests run the same
code with real programs."""
from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ebpf_lab.runner import protocol

@pytest.fixture
def guest(guest_import):
    return guest_import("bootstrap"), guest_import("pump")


def frames_of(data: bytes) -> list[tuple[bytes, object]]:
    return [protocol.decode_frame(raw) for raw in data.splitlines()]


def batching_channel(bootstrap, monkeypatch):
    """The supervisor's end of a socket, and a Channel on the other end that sends a batch when flushed (or full)."""
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return mine, bootstrap.Channel(theirs)


def test_records_are_batched_by_name_in_order(guest, monkeypatch):
    bootstrap, _ = guest
    mine, channel = batching_channel(bootstrap, monkeypatch)
    for i in range(3):
        channel.emit("n", i)
    channel.emit("n", {"uid": 1001})
    channel.emit("m", 2.5)
    channel.emit("n", None)
    channel.flush()
    assert frames_of(mine.recv(1 << 20)) == [
        (protocol.RECORDS, ("n", [0, 1, 2])), (protocol.RECORDS, ("n", [{"uid": 1001}])),
        (protocol.RECORDS, ("m", [2.5])), (protocol.RECORDS, ("n", [None]))]


def test_a_run_an_emit_still_holds_goes_with_the_next_batch(guest, monkeypatch):
    bootstrap, _ = guest
    mine, channel = batching_channel(bootstrap, monkeypatch)
    channel.emit("a", 1)
    channel.emit("a", 2)
    appending = channel._run  # what an emit() in another thread holds while it appends
    channel.flush()
    mine.setblocking(False)
    with pytest.raises(BlockingIOError):
        mine.recv(1 << 20)
    channel.emit("a", 3)
    appending.values.append(2.5)  # that emit() finishes
    del appending
    channel.flush()
    assert frames_of(mine.recv(1 << 20)) == [(protocol.RECORDS, ("a", [1, 2, 2.5])), (protocol.RECORDS, ("a", [3]))]


def test_a_note_or_the_programs_end_waits_for_a_run_another_emit_still_holds(guest, monkeypatch):
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "HOLD_SECONDS", 3600)  # however slow the machine, the wait is for the holder
    mine, channel = batching_channel(bootstrap, monkeypatch)
    channel.emit("a", 1)
    other_thread = [channel._run]  # lets go in 50 ms
    threading.Timer(0.05, other_thread.clear).start()
    channel.flush(wait=True)
    assert not other_thread
    mine.setblocking(False)
    assert frames_of(mine.recv(1 << 20)) == [(protocol.RECORDS, ("a", [1]))]


def test_a_run_held_by_a_dead_frame_goes_after_a_while(guest, monkeypatch):
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "HOLD_SECONDS", 0.05)
    mine, channel = batching_channel(bootstrap, monkeypatch)
    channel.emit("a", 1)
    kept_traceback = channel._run  # e.g. a frame kept alive by an exception the program stored
    channel.flush()
    channel.emit("b", 2)
    time.sleep(0.1)
    channel.flush()
    mine.setblocking(False)
    assert frames_of(mine.recv(1 << 20)) == [(protocol.RECORDS, ("a", [1])), (protocol.RECORDS, ("b", [2]))]
    assert kept_traceback.values == [1]


def test_a_struct_without_fields_travels_as_json(guest, monkeypatch):
    import ctypes as ct
    bootstrap, _ = guest

    class Empty(ct.Structure):
        _fields_ = []

    mine, channel = batching_channel(bootstrap, monkeypatch)
    channel.emit("e", Empty())
    channel.emit("e", Empty())
    channel.flush()
    assert frames_of(mine.recv(1 << 20)) == [(protocol.RECORDS, ("e", [{}, {}]))]


def test_records_from_many_threads_arrive_once_each_in_each_threads_order(guest, monkeypatch):
    """emit() appends with no lock while senders (emit() in other threads, the flusher) take the runs
    away: threads switching as often as the interpreter allows lose, double and reorder nothing."""
    import ctypes as ct
    import sys
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 0.001)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    class Event(ct.Structure):
        _fields_ = [("thread", ct.c_uint), ("seq", ct.c_uint)]

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel = bootstrap.Channel(theirs)
    messages = []
    reader = threading.Thread(target=lambda: messages.extend(iter(lambda: mine.recv(1 << 22), b"")))
    reader.start()
    n = 30000

    def emitter(t):
        for i in range(n):
            channel.emit("ev", Event(t, i)) if i % 3 else channel.emit(f"n{t}", i)

    try:
        threads = [threading.Thread(target=emitter, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    channel.flush()
    theirs.close()
    reader.join()
    seen = {t: [] for t in range(4)}
    for message in messages:
        for kind, (name, payloads) in frames_of(message):
            for p in payloads:
                if kind == protocol.STRUCTS:
                    seen[p["thread"]].append(p["seq"])
                else:
                    seen[int(name[1:])].append(p)
    assert all(seen[t] == list(range(n)) for t in range(4))


def test_a_record_that_cannot_be_sent_fails_at_emit(guest):
    bootstrap, _ = guest
    channel = bootstrap.Channel(socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)[1])
    with pytest.raises(TypeError, match="cannot send object"):
        channel.emit("x", object())
    with pytest.raises(ValueError, match="over the 1048576 byte limit"):
        channel.emit("x", "z" * protocol.MAX_RECORD)


def test_ctypes_payloads_become_json(guest):
    import ctypes as ct
    bootstrap, _ = guest

    class Event(ct.Structure):
        _fields_ = [("pid", ct.c_uint32), ("comm", ct.c_char * 8), ("args", ct.c_uint64 * 2)]

    value = json.loads(json.dumps(Event(7, b"cat", (1, 2)), default=bootstrap._jsonable))
    assert value == {"pid": 7, "comm": "cat", "args": [1, 2]}


def run_pump(pump_module, program, on_sync=None, seen=None) -> list[bytes]:
    """Run `program(out_fd, err_fd, sock)` in a thread against a real Pump; the frames it forwarded (notes
    passed on as they came, as the supervisor passes them on signed). With `seen`, what the pump did is
    also logged there: ("forward", data), ("note", frame)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    forwarded, log = [], [] if seen is None else seen

    def forward(data, output):
        forwarded.append(data)
        log.append(("forward", data))

    def on_note(note):
        log.append(("note", note))
        if note != protocol.SYNC:
            forwarded.append(note + b"\n")
    pump = pump_module.Pump(out_r, err_r, mine, 1 << 20, forward, on_note, on_sync)

    def body():
        program(out_w, err_w, theirs)
        for fd in (out_w, err_w):
            os.close(fd)
        theirs.close()
    writer = threading.Thread(target=body)
    writer.start()
    pump.run()
    writer.join()
    return [raw for data in forwarded for raw in data.splitlines()]


def note(sock, kind):
    """What bootstrap does: send the note, wait for the acknowledgement."""
    sock.send(protocol.control_frame(kind))
    assert sock.recv(16) == protocol.NOTE_ACK


def test_a_note_comes_after_earlier_output_and_before_later_output(guest):
    _, pump = guest

    def program(out, err, sock):
        for i in range(50):
            os.write(err, b"warning %d\n" % i)
        note(sock, protocol.COMPILED)
        os.write(out, b"first line after the compile\n")
        note(sock, protocol.ATTACHED)
        os.write(out, b"partial")
    frames = run_pump(pump, program)
    kinds = [protocol.decode_frame(f) for f in frames]
    compiled = kinds.index((protocol.CONTROL, {"kind": protocol.COMPILED}))
    assert kinds[:compiled] == [(protocol.ERR, f"warning {i}") for i in range(50)]
    assert kinds[compiled + 1:] == [(protocol.OUT, "first line after the compile"),
                                    (protocol.CONTROL, {"kind": protocol.ATTACHED}), (protocol.OUT, "partial")]


def test_records_after_an_unread_acknowledgement_are_not_lost(guest):
    """A program that sends a note without waiting for its acknowledgement and ends: Linux reports
    ECONNRESET to the pump once, ahead of the program's last messages. They must still arrive."""
    import select
    _, pump_module = guest
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    program_ended, forwarded = threading.Event(), []

    def forward(data, output):
        forwarded.append(data)
        if data.startswith(protocol.OUT + b" hold"):
            program_ended.wait(5)  # the pump reads its socket again only once the program has ended

    def program():
        theirs.send(protocol.control_frame(protocol.ATTACHED))
        assert select.select([theirs], [], [], 5)[0]  # the acknowledgement is there, unread
        os.write(out_w, b"hold\n")
        theirs.send(protocol.records_frame("after", "[1]"))
        theirs.close()
        for fd in (out_w, err_w):
            os.close(fd)
        program_ended.set()

    pump = pump_module.Pump(out_r, err_r, mine, 1 << 20, forward, lambda note: None)
    writer = threading.Thread(target=program)
    writer.start()
    pump.run()
    writer.join()
    assert protocol.records_frame("after", "[1]") in forwarded


def test_the_pump_acknowledges_sync_once_what_it_forwarded_is_out(guest):
    _, pump_module = guest
    seen = []

    def program(out, err, sock):
        sock.send(protocol.records_frame("big", "[1]"))
        sock.send(protocol.SYNC)
        assert sock.recv(16) == protocol.NOTE_ACK
        seen.append(("acknowledged",))
    run_pump(pump_module, program, on_sync=lambda: seen.append(("out",)), seen=seen)
    assert seen == [("forward", protocol.records_frame("big", "[1]")), ("note", protocol.SYNC), ("out",),
                    ("acknowledged",)]


def test_long_lines_are_split_and_short_ones_kept_whole(guest):
    _, pump = guest
    splitter = pump.LineSplitter(protocol.OUT)
    data = b"a" * (protocol.MAX_LINE + 10) + b"\nb\nc"
    frames = splitter.feed(data[:7]) + splitter.feed(data[7:]) + splitter.end()
    texts = [protocol.decode_frame(f.rstrip(b"\n"))[1] for f in frames]
    assert texts == ["a" * protocol.MAX_LINE, "a" * 10, "b", "c"]


def test_bcc_style_events_travel_raw_and_arrive_as_dicts(guest, monkeypatch):
    import ctypes as ct
    bootstrap, _ = guest

    class Event(ct.Structure):  # what bcc builds from `struct data_t { u32 pid; u64 ts; char comm[16]; u16 ports[3]; }`
        _fields_ = [("pid", ct.c_uint), ("ts", ct.c_ulonglong), ("comm", ct.c_char * 16), ("ports", ct.c_ushort * 3),
                    ("ratio", ct.c_double), ("ok", ct.c_bool)]

    class Nested(ct.Structure):
        _fields_ = [("inner", Event)]

    mine, channel = batching_channel(bootstrap, monkeypatch)
    events = [Event(i, 10**12 + i, b"cat", (1, 2, i), 0.5, True) for i in range(3)]
    for e in events:
        channel.emit("ev", e)
    channel.emit("nested", Nested(events[0]))
    channel.flush()
    (kind, (name, got)), (kind2, (name2, nested)) = frames_of(mine.recv(1 << 20))
    assert (kind, name, kind2) == (protocol.STRUCTS, "ev", protocol.RECORDS)
    assert got == [{"pid": i, "ts": 10**12 + i, "comm": "cat", "ports": [1, 2, i], "ratio": 0.5, "ok": True}
                   for i in range(3)]
    assert nested[0]["inner"]["comm"] == "cat"  # not flat: sent as JSON


class SharedPort:
    """A Channel that writes to a data channel, with the supervisor's side played here.

    A SOCK_SEQPACKET pair stands for the serial port, so that every write() arrives as one message
    and its bounds show. The stand-in supervisor puts what comes through the socket on the same
    port and acknowledges notes and SYNC once it is there, as the real one's outbox does.
    """

    def __init__(self, bootstrap, tmp_path):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.host_end, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.lock_path = str(tmp_path / "port.lock")
        Path(self.lock_path).touch()
        self.through_supervisor = []
        supervisor_port = os.dup(guest_end.fileno())

        def supervise():
            while message := mine.recv(1 << 22):
                if message != protocol.SYNC:
                    self.through_supervisor.append(message)
                    os.write(supervisor_port, message)
                if message == protocol.SYNC or message.startswith(protocol.CONTROL):
                    mine.send(protocol.NOTE_ACK)
        threading.Thread(target=supervise, daemon=True).start()
        self.channel = bootstrap.Channel(theirs, port=(guest_end.detach(), self.lock_path))

    def writes(self) -> list[bytes]:
        self.host_end.setblocking(False)
        got = []
        while True:
            try:
                got.append(self.host_end.recv(1 << 22))
            except BlockingIOError:
                return got


def decoded(data: bytes) -> list[tuple[bytes, object]]:
    import io

    from ebpf_lab.runner.run import _frames
    return [protocol.decode_frame(raw) for raw in _frames(io.BytesIO(data))]


def test_on_a_data_channel_events_travel_uncompressed_and_arrive_alike(guest, monkeypatch, tmp_path):
    import ctypes as ct
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)

    class Event(ct.Structure):
        _fields_ = [("pid", ct.c_uint), ("comm", ct.c_char * 16)]

    port = SharedPort(bootstrap, tmp_path)
    for i in range(3):
        # Newlines inside the structs: the frame's length, not a line end, says where it stops.
        port.channel.emit("ev", Event(i, b"a\nb"))
    port.channel.emit("n", 7)
    port.channel.flush(wait=True)
    writes = port.writes()
    assert len(writes) == 1 and writes[0].startswith(protocol.RAW_STRUCTS + b" ")
    assert decoded(writes[0]) == [(protocol.STRUCTS, ("ev", [{"pid": i, "comm": "a\nb"} for i in range(3)])),
                                  (protocol.RECORDS, ("n", [7]))]
    assert port.through_supervisor == []


def test_on_a_data_channel_every_write_is_whole_frames_and_order_holds(guest, monkeypatch, tmp_path):
    """A program killed between two transfers must leave no frame cut: each transfer (one splice, one
    buffer of the port) carries whole frames, as many as the pipe holds; a record too big for one
    write goes through the supervisor, and the records after it wait until it is on the port."""
    import ctypes as ct
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)

    class Event(ct.Structure):
        _fields_ = [("seq", ct.c_uint), ("pad", ct.c_char * 252)]

    spliced = []

    def splice(src, dst, count, *args):
        spliced.append(count)
        return real_splice(src, dst, count, *args)
    real_splice = os.splice
    monkeypatch.setattr(os, "splice", splice)
    port = SharedPort(bootstrap, tmp_path)
    for i in range(300):
        port.channel.emit("ev", Event(i, b"x"))
    port.channel.emit("big", "b" * (bootstrap.PORT_WRITE_MAX + 1))
    port.channel.emit("ev", Event(300, b"x"))
    port.channel.flush(wait=True)
    # The 300 events (77 KB) in one transfer; the last event after the big record.
    assert len(spliced) == 2 and 300 * 256 < spliced[0] < 300 * 256 + 1024
    # (A socket stands in for the port here, and splits what one splice sends into 64 KiB messages.)
    frames = decoded(b"".join(port.writes()))  # decoded() raises on a frame cut short
    assert [name for _, (name, _) in frames][-2:] == ["big", "ev"]
    assert [e["seq"] for _, (name, events) in frames if name == "ev" for e in events] == list(range(301))
    assert len(port.through_supervisor) == 1 and b'"big"' in port.through_supervisor[0]


def test_a_port_that_refuses_splice_gets_plain_writes(guest, monkeypatch, tmp_path):
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)
    lock = tmp_path / "port.lock"
    lock.touch()
    # splice() refuses a file opened for appending (EINVAL), as it refuses a port type without splice support.
    port = os.open(tmp_path / "port", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    threading.Thread(target=lambda: mine.recv(64) and mine.send(protocol.NOTE_ACK), daemon=True).start()  # SYNC
    channel = bootstrap.Channel(theirs, port=(port, str(lock)))
    for batch in range(2):
        channel.emit("n", batch)
        channel.flush(wait=True)
    assert decoded((tmp_path / "port").read_bytes()) == [(protocol.RECORDS, ("n", [0])), (protocol.RECORDS, ("n", [1]))]


def test_the_port_writer_sends_after_a_quiet_spell_at_once_and_a_steady_stream_at_its_pace(guest, monkeypatch,
                                                                                           tmp_path):
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "PORT_INTERVAL", 3600)  # the next transfer could only come from a waiter
    lock = tmp_path / "port.lock"
    lock.touch()
    port_r, port_w = os.pipe()
    paces, pacing = [], threading.Event()

    class Condition(threading.Condition):
        """The writer's: says when it waits with a deadline, i.e. for the interval to pass."""

        def wait(self, timeout=None):
            if timeout is not None:
                paces.append(timeout)
                pacing.set()
            return super().wait(timeout)

    with monkeypatch.context() as m:
        m.setattr(bootstrap, "threading", SimpleNamespace(Condition=Condition, Thread=threading.Thread))
        writer = bootstrap.PortWriter(port_w, os.open(lock, os.O_RDONLY))
    writer.put([b"first"])
    assert select.select([port_r], [], [], 60)[0], "the first transfer must not wait: nothing went before it"
    assert os.read(port_r, 100) == b"first" and not paces
    writer.put([b"second"])
    assert pacing.wait(60), "the writer sent the second chunk without waiting for the interval"
    assert 3000 < paces[0] <= 3600  # a stream waits PORT_INTERVAL between transfers
    os.set_blocking(port_r, False)
    with pytest.raises(BlockingIOError):
        os.read(port_r, 100)
    writer.wait_until_written()  # ... unless someone waits for it
    assert os.read(port_r, 100) == b"second"


def test_records_for_a_failed_port_are_dropped_and_emit_goes_on(guest, monkeypatch, tmp_path):
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)
    monkeypatch.setattr(bootstrap, "PORT_QUEUE_BYTES", 100_000)
    lock = tmp_path / "port.lock"
    lock.touch()
    port = os.open(tmp_path / "port", os.O_RDONLY | os.O_CREAT)  # every write fails (EBADF)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    threading.Thread(target=lambda: mine.recv(64) and mine.send(protocol.NOTE_ACK), daemon=True).start()  # SYNC
    channel = bootstrap.Channel(theirs, port=(port, str(lock)))
    emitting = threading.Thread(target=lambda: [channel.emit("s", "x" * 1000) for _ in range(5000)]
                                + [channel.flush(wait=True)], daemon=True)
    emitting.start()
    emitting.join(10)
    assert not emitting.is_alive(), "emit() must not hang behind a port that failed"


def test_the_program_waits_while_the_supervisor_writes_to_the_port(guest, monkeypatch, tmp_path):
    import fcntl
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)
    port = SharedPort(bootstrap, tmp_path)
    port.channel.emit("n", 0)
    port.channel.flush(wait=True)  # the first batch tells the supervisor that records flow
    assert len(port.writes()) == 1
    with open(port.lock_path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the supervisor is half-way through a frame
        port.channel.emit("n", 1)
        flushing = threading.Thread(target=port.channel.flush, kwargs={"wait": True})
        flushing.start()
        flushing.join(0.3)
        assert flushing.is_alive() and port.writes() == []
    flushing.join(5)
    assert [decoded(w) for w in port.writes()] == [[(protocol.RECORDS, ("n", [1]))]]


def test_runs_of_structs_and_other_records_keep_the_order_they_were_emitted_in(guest, monkeypatch, tmp_path):
    import ctypes as ct
    bootstrap, _ = guest
    monkeypatch.setattr(bootstrap, "FLUSH_SECONDS", 3600)

    class A(ct.Structure):
        _fields_ = [("a", ct.c_uint)]

    class B(ct.Structure):
        _fields_ = [("b", ct.c_ushort)]

    port = SharedPort(bootstrap, tmp_path)
    channel = port.channel
    event = A(1)
    channel.emit("s", event)
    event.a = 2  # the kernel reuses an event's memory: what was emitted is what was sent
    channel.emit("s", event)
    channel.emit("n", 3)
    channel.emit("s", A(4))
    channel.emit("s", B(5))
    channel.emit(6, A(7))  # a name that is not text becomes text
    channel.emit("j", {"k": 8})
    channel.flush(wait=True)
    got = [value for write in port.writes() for _, value in decoded(write)]
    assert got == [("s", [{"a": 1}, {"a": 2}]), ("n", [3]), ("s", [{"a": 4}]), ("s", [{"b": 5}]),
                   ("6", [{"a": 7}]), ("j", [{"k": 8}])]


def test_a_raw_structs_frame_with_a_bad_length_ends_the_stream():
    import io

    from ebpf_lab.runner.run import _frames
    layout = {"format": "<I", "fields": [["pid", 1, "int"]]}
    short = protocol.RAW_STRUCTS + b" " + json.dumps(["ev", layout, 8]).encode() + b"\n" + b"\0" * 4
    with pytest.raises(protocol.ProtocolError, match="ends early"):
        list(_frames(io.BytesIO(short)))
    huge = protocol.RAW_STRUCTS + b" " + json.dumps(["ev", layout, protocol.MAX_STRUCTS_BYTES + 1]).encode() + b"\n"
    with pytest.raises(protocol.ProtocolError):
        list(_frames(io.BytesIO(huge)))
    with pytest.raises(protocol.ProtocolError, match="header says"):
        protocol.decode_frame(protocol.RAW_STRUCTS + b" " + json.dumps(["ev", layout, 8]).encode() + b"\n" + bytes(4))


def test_the_supervisor_keeps_ssh_without_the_port_or_the_hosts_answer(guest, tmp_path):
    import pty
    import tty

    import supervisor
    where = protocol.DataChannel("ebpf-lab.data1", "0" * 32)
    assert supervisor.open_data_channel(where, timeout=1) is None  # this machine has no such port
    # A port that exists (a pty stands in for it) but where nobody answers the token.
    host_end, device = pty.openpty()
    (tmp_path / "vport1p1").mkdir()
    (tmp_path / "vport1p1" / "name").write_text("ebpf-lab.data1\n")
    assert supervisor.port_device("ebpf-lab.data1", str(tmp_path)) == "/dev/vport1p1"
    assert supervisor.port_device("ebpf-lab.data2", str(tmp_path)) is None
    assert not supervisor._answered(device, "0" * 32, deadline=0)
    os.close(host_end)
    os.close(device)
    # The host's answer, after one meant for an earlier run.
    import time
    host_end, device = pty.openpty()
    tty.setraw(device)  # no echo, newlines as they are: a port passes bytes through
    os.write(host_end, protocol.channel_ack("1" * 32) + protocol.channel_ack("0" * 32))
    assert supervisor._answered(device, "0" * 32, deadline=time.monotonic() + 5)
    said = b""
    while not said.endswith(b"\n" + protocol.channel_open("0" * 32)) and select.select([host_end], [], [], 5)[0]:
        said += os.read(host_end, 100)
    # The token, then, after the answer, the confirmation: the host reads the port from now on.
    assert said == b"0" * 32 + b"\n" + protocol.channel_open("0" * 32)
    os.close(host_end)
    os.close(device)


def test_a_structs_frame_that_unpacks_to_too_much_is_refused():
    import base64
    import zlib
    bomb = base64.b64encode(zlib.compress(bytes(protocol.MAX_STRUCTS_BYTES + 1), 9)).decode()
    raw = protocol.STRUCTS + b" " + json.dumps(["ev", {"format": "<I", "fields": [["pid", 1, "int"]]}, bomb]).encode()
    with pytest.raises(protocol.ProtocolError, match="unpacks to more than"):
        protocol.decode_frame(raw)
