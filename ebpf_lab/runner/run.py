"""One BCC program running in the lab VM, seen from the host.

A reader thread parses the supervisor's frames into text lines, records and
control events. Everything is appended to a log file; memory keeps only the most
recent lines and records (capped), so a program printing millions of lines can
neither freeze the notebook nor exhaust memory.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import ProgramFailed
from .diagnostics import explain_failure

MAX_LINES = 10_000
MAX_RECORDS = 50_000


@dataclass(frozen=True)
class Line:
    stream: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True)
class Record:
    name: str
    payload: object
    time: float


LineCallback = Callable[[Line], None]
RecordCallback = Callable[[Record], None]


class Run:
    """A running (or finished) program. Create it with `Lab.start`."""

    def __init__(self, proc: subprocess.Popen, source: str, log_path: Path,
                 max_lines: int = MAX_LINES, max_records: int = MAX_RECORDS) -> None:
        self.source = source
        self.log_path = log_path
        self.lines: deque[Line] = deque(maxlen=max_lines)
        self.records: deque[Record] = deque(maxlen=max_records)
        self.line_count = 0
        self.record_count = 0
        self.events: list[dict] = []
        self.status: int | None = None
        self.timed_out = False
        self.interrupted = False
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.first_output_at: float | None = None
        self._proc = proc
        self._stderr: list[str] = []  # kept whole (bounded below) for diagnostics
        self._c_text: str | None = None
        self._exception: dict | None = None
        self._line_subs: list[LineCallback] = []
        self._record_subs: list[RecordCallback] = []
        self._event_subs: list[Callable[[dict], None]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._log = open(log_path, "wb")
        self._reader = threading.Thread(target=self._read, name="ebpf-lab-run-reader", daemon=True)
        self._reader.start()

    # -- observing -------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

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
        return "\n".join(l.text for l in self.lines if l.stream == "stdout")

    def subscribe(self, on_line: LineCallback | None = None, on_record: RecordCallback | None = None,
                  on_event: Callable[[dict], None] | None = None) -> Callable[[], None]:
        """Call back for every line/record/control event; returns an unsubscribe function.

        What already arrived (and is still in memory) is replayed first, so subscribing just after
        `Lab.start` misses nothing; later items come from the reader thread.
        """
        with self._lock:
            for cb, subs, seen in ((on_line, self._line_subs, self.lines), (on_record, self._record_subs, self.records),
                                   (on_event, self._event_subs, self.events)):
                if cb:
                    for item in list(seen):
                        cb(item)
                    subs.append(cb)

        def unsubscribe() -> None:
            with self._lock:
                for cb, subs in ((on_line, self._line_subs), (on_record, self._record_subs), (on_event, self._event_subs)):
                    if cb in subs:
                        subs.remove(cb)
        return unsubscribe

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.status

    def read_log(self) -> Iterator[Line | Record]:
        """Every line and record of the run, including those dropped from memory."""
        with open(self.log_path, "rb") as f:
            for raw in f:
                parsed = _parse_frame(raw.rstrip(b"\n"))
                if parsed and not isinstance(parsed, dict):
                    yield parsed

    # -- controlling -----------------------------------------------------------
    def interrupt(self, grace: float = 3.0) -> None:
        """Ctrl-C the program (its KeyboardInterrupt handlers run), SIGKILL after `grace` seconds."""
        self.interrupted = True
        self._send("INT")
        if not self._done.wait(grace):
            self._send("KILL")
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
        """Raise ProgramFailed if the program died of an exception or the link to the VM was lost.

        A plain non-zero exit status is the program's own answer, not a failure to explain.
        """
        if self._exception is not None:
            headline, details = explain_failure(self._stderr, self.source, self._c_text, self._exception)
            raise ProgramFailed(headline, details)
        if self.done and not any(e["k"] == "exit" for e in self.events):
            raise ProgramFailed(f"lost the ssh link to the lab VM (ssh exit {self.status})",
                                "\n".join(self._stderr[-5:]) + "\ncheck it with: ebpf-lab vm status")

    # -- reader thread ---------------------------------------------------------
    def _read(self) -> None:
        try:
            for raw in self._proc.stdout:
                self._log.write(raw)
                parsed = _parse_frame(raw.rstrip(b"\n"))
                if isinstance(parsed, Line):
                    self._on_line(parsed)
                elif isinstance(parsed, Record):
                    self._on_record(parsed)
                elif isinstance(parsed, dict):
                    self._on_event(parsed)
            self._proc.wait()
            if self.status is None:
                # No exit frame: the link died, or ssh itself failed.
                ssh_err = self._proc.stderr.read().decode(errors="replace").strip()
                if ssh_err:
                    self._stderr.extend(ssh_err.splitlines())
                self.status = self._proc.returncode
        finally:
            self._log.close()
            self.ended_at = time.time()
            self._done.set()

    def _on_line(self, line: Line) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.time()
        if line.stream == "stderr" and len(self._stderr) < 20_000:
            self._stderr.append(line.text)
        with self._lock:
            self.line_count += 1
            self.lines.append(line)
            for cb in self._line_subs:
                cb(line)

    def _on_record(self, record: Record) -> None:
        with self._lock:
            self.record_count += 1
            self.records.append(record)
            for cb in self._record_subs:
                cb(record)

    def _on_event(self, event: dict) -> None:
        kind = event.get("k")
        if kind == "bpf_text":
            self._c_text = event["text"]
            return
        if kind == "exception":
            self._exception = event
        elif kind == "timeout":
            self.timed_out = True
        elif kind == "exit":
            self.status = event["status"]
        with self._lock:
            self.events.append(event)
            for cb in self._event_subs:
                cb(event)


def _parse_frame(raw: bytes) -> Line | Record | dict | None:
    tag, payload = raw[:1], raw[2:]
    if tag == b"o":
        return Line("stdout", payload.decode(errors="replace"))
    if tag == b"e":
        return Line("stderr", payload.decode(errors="replace"))
    if tag == b"r":
        obj = json.loads(payload)
        return Record(obj["n"], obj["p"], time.time())
    if tag == b"c":
        return json.loads(payload)
    return None
