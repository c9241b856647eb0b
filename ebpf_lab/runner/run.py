"""One program running in the lab VM, seen from the host.

A reader thread turns the supervisor's frames (protocol.py) into text lines, records and
control events. It survives anything the guest sends: over-long lines are split,
malformed frames are counted, a subscriber that raises is counted and skipped. Memory
keeps only recent lines and records, capped by count and by bytes; the run log on disk
keeps everything up to its own size cap.
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import ProgramFailed, RunRefused
from . import protocol
from .data_channel import DataChannel
from .diagnostics import explain_failure

MAX_LINES = 10_000
MAX_RECORDS = 50_000
MAX_MEMORY_BYTES = 64 * 1024 * 1024   # lines + records kept in memory
MAX_LOG_BYTES = 256 * 1024 * 1024
MAX_EVENTS = 10_000
MAX_FRAME = protocol.MAX_RECORD + 1024  # one readline; a longer frame arrives in pieces
RECORD_OVERHEAD = 96  # a Record, its time and its slot in the deque
# Once ssh has ended, how long the data channel may still deliver what was in flight: a guest that
# hangs keeps its connection open, and the run must end as it does when ssh's keepalive gives up.
CHANNEL_DRAIN_SECONDS = 30


@dataclass(frozen=True)
class Line:
    stream: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    payload: object
    time: float


LineCallback = Callable[[Line], None]
RecordCallback = Callable[[Record], None]
RecordsCallback = Callable[[list[Record]], None]
EventCallback = Callable[[dict], None]


class Run:
    """A running (or finished) program. Create it with `Lab.start`."""

    def __init__(self, proc: subprocess.Popen, source: str, log_path: Path, timeout: float | None = None,
                 channel: DataChannel | None = None, max_lines: int = MAX_LINES, max_records: int = MAX_RECORDS,
                 max_memory_bytes: int = MAX_MEMORY_BYTES, max_log_bytes: int = MAX_LOG_BYTES,
                 key: str | None = None) -> None:
        """`key`: the run's key (protocol.RunHeader.key); control events not signed with it are the
        program's own writes and are ignored. Without one (tests of the stream alone) none is checked."""
        self.source = source
        self._key = key
        self.timeout = timeout
        self.log_path = log_path
        self._kept_lines = _Kept(max_lines)
        self._kept_records = _Kept(max_records)
        self.lines: deque[Line] = self._kept_lines.items
        self.records: deque[Record] = self._kept_records.items
        self.events: list[dict] = []
        self.status: int | None = None
        self.timed_out = False
        self.interrupted = False
        self.malformed_frames = 0
        self.unsigned_controls = 0  # control events the runner did not sign (written by the program)
        self.callback_errors: list[str] = []
        self.log_truncated = False
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.first_output_at: float | None = None
        self.compile_seconds = 0.0
        self._compiling_since: float | None = None
        self._running = False
        self._stalled_in: str | None = None
        self._proc = proc
        self._channel = channel
        # How the frames came: "data channel" (see data_channel.py) or "ssh".
        self.link = "ssh"
        self._stderr: deque[str] = deque(maxlen=2_000)  # the tail, for diagnostics
        self._c_text: str | None = None
        self._exception: dict | None = None
        self._refused: dict | None = None
        self._max_memory = max_memory_bytes
        self._max_log = max_log_bytes
        self._log_bytes = 0
        self._subs: dict[str, list[Callable]] = {"line": [], "record": [], "records": [], "event": []}
        self._done = threading.Event()
        self._changed = threading.Condition()
        self._lock = threading.RLock()
        self._log = open(log_path, "wb")
        self._reader = threading.Thread(target=self._read, name="ebpf-lab-run-reader", daemon=True)
        self._reader.start()

    # -- observing -------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def line_count(self) -> int:
        return self._kept_lines.count

    @property
    def record_count(self) -> int:
        return self._kept_records.count

    @property
    def dropped_lines(self) -> int:
        return self.line_count - len(self.lines)

    @property
    def dropped_records(self) -> int:
        return self.record_count - len(self.records)

    @property
    def duration(self) -> float:
        return (self.ended_at or time.time()) - self.started_at

    @property
    def stdout(self) -> str:
        return "\n".join(l.text for l in list(self.lines) if l.stream == "stdout")

    @property
    def phase(self) -> str:
        """"starting", "compiling" (bcc's BPF() is at work), "running" (the --timeout clock runs) or "ended"."""
        if self.done:
            return "ended"
        if self._compiling_since is not None:
            return "compiling"
        return "running" if self._running else "starting"

    @property
    def compiling_for(self) -> float | None:
        """Seconds the current compile has taken so far, or None when not compiling."""
        since = self._compiling_since
        return None if since is None or self.done else time.monotonic() - since

    def has_event(self, kind: str) -> bool:
        return any(e.get("kind") == kind for e in list(self.events))

    def subscribe(self, on_line: LineCallback | None = None, on_record: RecordCallback | None = None,
                  on_event: EventCallback | None = None,
                  on_records: RecordsCallback | None = None) -> Callable[[], None]:
        """Call back for every line/record/control event; returns an unsubscribe function.

        `on_records` gets records as they arrive, a batch at a time (the cheaper way to follow a
        fast stream); `on_record` gets them one by one. What already arrived (and is still in
        memory) is replayed first, so subscribing just after `Lab.start` misses nothing; later
        items come from the reader thread. A callback that raises is skipped for that item and
        counted in `callback_errors`.
        """
        pairs = (("line", on_line, self.lines), ("record", on_record, self.records), ("event", on_event, self.events))
        subscribed = [(name, cb) for name, cb, _ in pairs] + [("records", on_records)]
        with self._lock:
            for name, cb, seen in pairs:
                if cb:
                    for item in list(seen):
                        self._call(cb, item)
            if on_records and self.records:
                self._call(on_records, list(self.records))
            for name, cb in subscribed:
                if cb:
                    self._subs[name].append(cb)

        def unsubscribe() -> None:
            with self._lock:
                for name, cb in subscribed:
                    if cb in self._subs[name]:
                        self._subs[name].remove(cb)
        return unsubscribe

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.status

    def wait_for(self, predicate: Callable[["Run"], bool], timeout: float) -> bool:
        """Wait until `predicate(run)` holds (checked as each line, record or event arrives); False if the
        run ended or `timeout` passed first. Tests and checks wait for what the kernel did, not for a clock."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if predicate(self):
                    return True
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    return predicate(self)
                self._changed.wait(min(left, 1.0))

    def read_log(self) -> Iterator[Line | Record]:
        """Every line and record of the run, including those dropped from memory (up to the log's cap)."""
        with open(self.log_path, "rb") as f:
            for raw in _frames(f):
                if raw is None:
                    continue  # a frame too long to keep
                try:
                    kind, value = protocol.decode_frame(raw, self._key)
                except protocol.ProtocolError:
                    continue
                if kind in (protocol.OUT, protocol.ERR):
                    yield Line("stdout" if kind == protocol.OUT else "stderr", value)
                elif kind in (protocol.RECORDS, protocol.STRUCTS):
                    name, payloads = value
                    yield from (Record(name, payload, 0.0) for payload in payloads)

    # -- controlling -----------------------------------------------------------
    def interrupt(self, grace: float = protocol.DEFAULT_GRACE) -> None:
        """Ctrl-C the program (its KeyboardInterrupt handlers run), SIGKILL after `grace` seconds.

        Called from the main thread (a notebook cell, the CLI), a further Ctrl-C meanwhile cannot
        abandon the stop half-way: it only hurries it (SIGKILL at once).
        """
        self.interrupted = True
        with self.ctrl_c_hurries():
            self.stop(grace)

    @contextlib.contextmanager
    def ctrl_c_hurries(self) -> Iterator[None]:
        """While inside, Ctrl-C (in the main thread) kills the program at once instead of raising."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda *_: self.kill())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def kill(self) -> None:
        """SIGKILL everything in the program's cgroup at once."""
        self._send(protocol.KILL)

    def stop(self, grace: float = protocol.DEFAULT_GRACE) -> None:
        """End the program as --timeout does: SIGINT, then SIGKILL of its whole cgroup after `grace` s."""
        self._send(protocol.INTERRUPT)
        if not self._done.wait(grace):
            self._send(protocol.KILL)
            if not self._done.wait(grace):
                self._proc.kill()  # the supervisor sees EOF and kills the program
        self._done.wait(grace)

    def _send(self, command: str) -> None:
        try:
            self._proc.stdin.write(command.encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def raise_for_status(self) -> None:
        """Raise if the run could not start, the program died of an exception, never got running within
        the compile limit, or the link to the VM was lost. A plain non-zero exit status is the program's
        own answer, not a failure to explain."""
        if self._refused is not None:
            raise RunRefused(self._refused.get("message", "the run was refused"), self._refused.get("fix"))
        if self._exception is not None:
            headline, details = explain_failure(list(self._stderr), self.source, self._c_text, self._exception)
            raise ProgramFailed(headline, details)
        stalled = next((e for e in self.events if e.get("kind") == protocol.COMPILE_TIMEOUT), None)
        if stalled is not None:
            what = ("bcc was still compiling" if self._stalled_in == "compiling"
                    else "it never attached a probe, loaded a program or printed anything")
            raise ProgramFailed(f"the program was stopped: it did not get running within the "
                                f"{stalled.get('after', 0):g} s compile limit ({what})",
                                "if the machine is just slow, raise the limit: --compile-timeout SECONDS "
                                "(compile_timeout= in Python)")
        if self.done and not self.has_event(protocol.EXIT):
            raise ProgramFailed(f"lost the ssh link to the lab VM (ssh exit {self.status})",
                                "\n".join(list(self._stderr)[-5:]) + "\ncheck it with: ebpf-lab vm status")

    def stopped_message(self) -> str:
        """What to tell a learner who stopped the run: was everything unloaded?"""
        if self.has_event(protocol.LEFT_LOADED):
            return "the program was stopped in the VM, but it left BPF objects loaded (see the warning above)"
        return "the program was stopped in the VM and its BPF programs unloaded"

    def warnings(self) -> list[str]:
        """What went wrong on the side: BPF objects left loaded, malformed frames, failing subscribers."""
        found = []
        for event in self.events:
            if event.get("kind") == protocol.LEFT_LOADED:
                objs = ", ".join(_describe_object(o) for o in event.get("objects", []))
                found.append(f"still loaded after the run: {objs} (pinned or attached without a file "
                             "descriptor; remove it with bpftool, or rm its pin in /sys/fs/bpf)")
            elif event.get("kind") == protocol.LIMIT:
                found.extend(_describe_limits(event))
            elif event.get("kind") == protocol.WORKLOAD and event.get("error"):
                found.append(f"workload as {event.get('user')} stopped: {event['error']}")
        if self.malformed_frames:
            found.append(f"{self.malformed_frames} malformed frame(s) from the VM were skipped")
        if self.unsigned_controls:
            found.append(f"{self.unsigned_controls} control event(s) the runner did not sign were ignored (the "
                         "program wrote them to the data channel itself)")
        if self.callback_errors:
            found.append(f"a live view or callback failed {len(self.callback_errors)} time(s): {self.callback_errors[0]}")
        if self.log_truncated:
            found.append(f"the run log stopped at {self._max_log // 2**20} MiB: {self.log_path}")
        return found

    # -- reader thread ---------------------------------------------------------
    def _streams(self) -> Iterator:
        """Where the frames come from: the data channel if the supervisor opened it (up to EXIT: a port
        has no end of its own), then ssh's stdout (all of them when there is no channel)."""
        if self._channel is not None:
            stream = self._channel.wait(self._proc.stdout)
            if stream is not None:
                self.link = "data channel"
                threading.Thread(target=self._cut_channel_after_ssh, daemon=True).start()
                yield stream
            self._channel.close()  # the port is free for the next run
        yield self._proc.stdout

    def _cut_channel_after_ssh(self) -> None:
        # A supervisor that died without EXIT leaves the port open: once ssh has ended too, what was
        # in flight has this long to arrive.
        self._proc.wait()
        if not self._done.wait(CHANNEL_DRAIN_SECONDS) and self.status is None:
            self._channel.cut()

    def _read(self) -> None:
        try:
            for stream in self._streams():
                for raw in _frames(stream):
                    if raw is None:
                        self._malformed()
                        continue
                    self._write_log(raw)
                    try:
                        kind, value = protocol.decode_frame(raw, self._key)
                    except protocol.UnsignedControl:
                        with self._lock:
                            self.unsigned_controls += 1
                        continue
                    except protocol.ProtocolError:
                        self._malformed()
                        continue
                    if kind == protocol.OUT or kind == protocol.ERR:
                        self._on_line(Line("stdout" if kind == protocol.OUT else "stderr", value), len(raw))
                    elif kind in (protocol.RECORDS, protocol.STRUCTS):
                        name, payloads = value
                        self._on_records(name, payloads, len(raw))
                    else:
                        self._on_event(value)
                        if value["kind"] == protocol.EXIT and stream is not self._proc.stdout:
                            break
            self._proc.wait()
            if self.status is None:
                # No exit frame: the link died, or ssh itself failed.
                err = self._proc.stderr.read(64 * 1024).decode(errors="replace").strip()
                self._stderr.extend(err.splitlines())
                self.status = self._proc.returncode
        except protocol.ProtocolError as e:
            # A stream that cannot be followed any more (a raw structs frame of a bad length): the frames
            # after it cannot be found. The program wrote to the data channel what the runner never would.
            self._stderr.append(f"ebpf-lab: the VM sent what the host cannot read ({e}); the run was stopped")
            self._proc.kill()
            self.status = self._proc.wait()
        except BaseException as e:  # noqa: BLE001 -- the reader must never leave the program running unseen
            self._stderr.append(f"ebpf-lab: the run's reader failed: {e!r}")
            self._proc.kill()  # the supervisor sees EOF and stops the program
            self.status = self._proc.wait()
        finally:
            if self._channel is not None:
                self._channel.close()
            self._log.close()
            self.ended_at = time.time()
            self._done.set()
            self._notify()

    def _write_log(self, raw: bytes) -> None:
        if self._log_bytes + len(raw) + 1 > self._max_log:
            self.log_truncated = True
            return
        self._log.write(raw + b"\n")
        self._log_bytes += len(raw) + 1

    def _malformed(self) -> None:
        with self._lock:
            self.malformed_frames += 1

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _call(self, cb: Callable, item: object) -> None:
        try:
            cb(item)
        except Exception as e:  # noqa: BLE001 -- one bad subscriber must not stop the run's reader
            if len(self.callback_errors) < 100:
                self.callback_errors.append(f"{getattr(cb, '__qualname__', cb)}: {type(e).__name__}: {e}")

    def _on_line(self, line: Line, size: int) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.time()
        if line.stream == "stderr":
            self._stderr.append(line.text)
        self._keep(self._kept_lines, [line], size, self._subs["line"])

    def _on_records(self, name: str, payloads: list, size: int) -> None:
        now = time.time()
        records = [Record(name, payload, now) for payload in payloads]
        # What the records hold in memory, not their size on the wire: a few bytes of a crafted frame
        # can decode to much more (protocol.MAX_DECODED_BYTES bounds one frame).
        each = max(1, size, protocol.memory_of(payloads)) // max(1, len(records)) + RECORD_OVERHEAD
        self._keep(self._kept_records, records, each, self._subs["record"], self._subs["records"])

    def _keep(self, kept: "_Kept", items: list, size: int, subscribers: list[Callable],
              batch_subscribers: list[Callable] = ()) -> None:
        """Keep `items` (each about `size` bytes) and hand them to the subscribers."""
        with self._lock:
            for item in items:
                kept.append(item, size)
            # Lines and records share one memory budget; the newest item of each kind always stays.
            while self._kept_lines.bytes + self._kept_records.bytes > self._max_memory and len(kept.items) > 1:
                kept.drop_oldest()
            for cb in subscribers:
                for item in items:
                    self._call(cb, item)
            for cb in batch_subscribers:
                self._call(cb, items)
        self._notify()

    def _on_event(self, event: dict) -> None:
        kind = event["kind"]
        if kind == protocol.COMPILING:
            self._c_text = event.get("text")
            self._compiling_since = time.monotonic()
        elif kind == protocol.COMPILED:
            self._compiling_since = None
            if event.get("ok"):
                self.compile_seconds += float(event.get("seconds") or 0)
        elif kind == protocol.RUNNING:
            self._running = True
        elif kind == protocol.EXCEPTION:
            self._exception = event
        elif kind == protocol.REFUSED:
            self._refused = event
        elif kind == protocol.TIMEOUT:
            self.timed_out = True
        elif kind == protocol.COMPILE_TIMEOUT:
            self._stalled_in = self.phase
        elif kind == protocol.EXIT:
            self.status = event.get("status")
        with self._lock:
            if len(self.events) < MAX_EVENTS or kind == protocol.EXIT:
                self.events.append(event)
            for cb in self._subs["event"]:
                self._call(cb, event)
        self._notify()


class _Kept:
    """The newest items of one kind, capped by count, with their total size for the memory budget."""

    def __init__(self, maxlen: int) -> None:
        self.items: deque = deque(maxlen=maxlen)
        self._sizes: deque[int] = deque()
        self.bytes = 0
        self.count = 0  # every item ever appended, kept or not

    def append(self, item: object, size: int) -> None:
        if len(self.items) == self.items.maxlen:
            self.bytes -= self._sizes.popleft()  # the deque drops its oldest item itself
        self.items.append(item)
        self._sizes.append(size)
        self.bytes += size
        self.count += 1

    def drop_oldest(self) -> None:
        self.items.popleft()
        self.bytes -= self._sizes.popleft()


def _describe_limits(event: dict) -> list[str]:
    said = []
    if event.get("memory"):
        said.append(f"the run used all the memory it may use in the VM ({event.get('memory_max', 0) // 2**20} MiB) "
                    "and the kernel killed it: look for a map, list or buffer that grows without end")
    if event.get("pids"):
        said.append(f"the run reached its limit of {event.get('pids_max')} processes: {event['pids']} fork(s) "
                    "were refused; look for a loop that starts processes")
    return said


def _describe_object(obj: dict) -> str:
    text = f"{obj.get('kind', 'object')} {obj.get('id')}"
    details = [str(obj[k]) for k in ("type", "name") if obj.get(k)]
    if details:
        text += f" ({' '.join(details)})"
    if obj.get("pinned"):
        text += f" pinned at {', '.join(obj['pinned'])}"
    return text


def _frames(stream) -> Iterator[bytes | None]:
    """Frames without their newline, read in bounded pieces; None stands for a frame too long to keep.

    An over-long output line becomes several lines of the same stream; an over-long record or
    control frame is skipped whole (it cannot be decoded from a piece). A RAW_STRUCTS frame is its
    header line and the bytes it announces, newlines and all.
    """
    pending_kind: bytes | None = None  # the kind of an output line being split
    skipping = False
    while True:
        raw = stream.readline(MAX_FRAME)
        if not raw:
            return
        complete = raw.endswith(b"\n")
        piece = raw[:-1] if complete else raw
        if skipping:
            skipping = not complete
            continue
        if pending_kind is not None:
            yield pending_kind + b" " + piece
            if complete:
                pending_kind = None
            continue
        if complete and piece[:2] == protocol.RAW_STRUCTS + b" ":
            # A bad length leaves the rest of the stream unreadable: the reader gives up on the run.
            data = stream.read(protocol.raw_length(piece))
            if not data.endswith(b"\n"):
                raise protocol.ProtocolError("a raw structs frame ends early")
            yield piece + b"\n" + data[:-1]
        elif complete:
            yield piece
        elif piece[:2] in (protocol.OUT + b" ", protocol.ERR + b" "):
            yield piece
            pending_kind = piece[:1]
        else:
            skipping = True
            yield None
