"""Runs in the lab VM as the program's process: executes the learner's code as __main__.

It adds what the host needs beside plain output: `emit(name, payload)` for structured
records, notes on bcc's compile and attach steps (the --timeout clock starts once the
program runs, not while clang compiles), the BPF C text (so compile errors map to cell
lines), and tracebacks trimmed to the cell.

Records and notes travel over a SOCK_SEQPACKET socket: every send is one message, so
records emitted by forked children can never interleave half-way with the parent's.
"""
import builtins
import collections
import itertools
import json
import linecache
import operator
import os
import select
import socket
import sys
import threading
import time
import traceback

import protocol
import struct_layout

BATCH_BYTES = 256 * 1024  # one message carries about this many bytes of records
BATCH_RECORDS = 512       # emit() sends the batch itself once it holds this many records (or BATCH_BYTES)
FLUSH_SECONDS = 0.05      # a batch that stops growing is sent by the flusher thread after this long
ACK_SECONDS = 30          # a supervisor that does not acknowledge a note in this time never will
SCALARS = (int, float, bool, type(None))  # immutable: kept as they are, encoded with their whole batch
PLAIN, JSON = "plain", "json"  # how a record is encoded, unless it is a struct (then: its layout)
MAX_PARTS = 1000               # buffers in one message (the kernel takes up to 1024)


class Channel:
    """Records and notes to the supervisor, safe across fork().

    emit() must cost little more than list.append, since a BCC callback may call it thousands of
    times a second in a VM without hardware acceleration: a record is queued with no lock (a deque
    append is atomic) and sent with its batch. A fast stream sends its batches from emit() itself; the
    flusher thread only sends a batch that stopped growing. Were the flusher to send busy batches
    too, it would hold the interpreter lock that every BCC callback must take back, stalling the
    consumer while the kernel's buffer fills. Consecutive records with
    the same name become one frame: one json.dumps call for scalar payloads, and a flat ctypes
    struct (a BCC event) travels as raw bytes, unpacked on the host (compressed over ssh, as they are on
    the data channel). Mutable payloads
    are encoded at emit() (what is sent is what was emitted, and a payload that cannot be sent
    fails there). A note first sends the records before it, then waits until the supervisor has
    forwarded the program's earlier output, so the host sees notes and output in program order.
    """

    def __init__(self, sock, raw_structs=False):
        self.sock = sock
        # Structs go uncompressed when the supervisor's link to the host does not encrypt (protocol.py).
        self._raw_structs = raw_structs
        self._pending = collections.deque()  # (name, how, value) not yet sent
        self._pending_bytes = 0              # of encoded payloads: approximate, it bounds memory only
        self._hows = dict.fromkeys(SCALARS, PLAIN)  # payload type -> PLAIN, JSON or its struct layout
        self._lock = threading.Lock()        # one sender at a time
        self._flushes = 0                    # batches sent: the flusher leaves a growing batch alone
        self._batch = True
        self._acks = True
        self._start_flusher()
        # Late-bound: the child replaces its lock, and a later fork in the child must use the new one.
        os.register_at_fork(before=lambda: self._lock.acquire(), after_in_parent=lambda: self._lock.release(),
                            after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self):
        # The child starts empty (the parent sends what it had) with a fresh lock. It sends each record
        # at once: forked children often end with os._exit(), which would lose a batch still buffered.
        self._pending = collections.deque()
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._batch = False

    def _start_flusher(self):
        threading.Thread(target=self._flush_periodically, daemon=True).start()

    def _flush_periodically(self):
        seen = -1
        while True:
            time.sleep(FLUSH_SECONDS)
            if self._flushes == seen:
                self.flush()
            seen = self._flushes

    def emit(self, name, payload=None):
        """Send a record to the host (shown in widgets, kept in run.records). The program's `emit`."""
        if type(name) is not str:
            name = str(name)
        how = self._hows.get(type(payload))
        if how is None:
            how = self._learn(type(payload))
        if how is PLAIN:
            self._pending.append((name, PLAIN, payload))
            if not self._batch or len(self._pending) >= BATCH_RECORDS:
                self.flush()
            return
        if how is JSON:
            value = json.dumps(payload, default=_jsonable, separators=(",", ":"))
            size = len(value) + len(name)
            if size > protocol.MAX_RECORD:
                raise ValueError(f"emit(): a record of {size} bytes is over the {protocol.MAX_RECORD} byte "
                                 "limit; send a summary or split it into several records")
        else:
            value = bytes(payload)  # a BCC event points into the buffer, which the kernel reuses
        self._pending.append((name, how, value))
        self._pending_bytes += len(value)
        if self._pending_bytes >= BATCH_BYTES or not self._batch or len(self._pending) >= BATCH_RECORDS:
            self.flush()

    def _learn(self, kind):
        """How payloads of this type travel: PLAIN, JSON, or (a flat ctypes struct) its layout as JSON text."""
        layout = struct_layout.layout_of(kind)
        self._hows[kind] = json.dumps(layout) if layout else JSON
        return self._hows[kind]

    def note(self, frame):
        with self._lock:
            self._send_records_locked()
            self._send_locked([frame])
            if self._acks and not self._ack_arrived():
                self._acks = False  # an old or stuck supervisor: stop waiting, keep running

    def flush(self):
        with self._lock:
            self._send_records_locked()

    def _ack_arrived(self):
        ready, _, _ = select.select([self.sock], [], [], ACK_SECONDS)
        try:
            return bool(ready) and self.sock.recv(16) == protocol.NOTE_ACK
        except OSError:
            return False

    def _send_records_locked(self):
        pending = self._pending
        if not pending:
            return
        take = pending.popleft
        # Only what is queued now: emit() in other threads keeps appending meanwhile.
        records = [take() for _ in range(len(pending))]
        self._pending_bytes = 0
        self._flushes += 1
        # Frames are lists of buffers, sent with one sendmsg() per message: the structs are not copied again.
        parts, size = [], 0
        for (name, how), run in itertools.groupby(records, key=_NAME_AND_HOW):
            for frame in _frames(name, how, list(map(_VALUE, run)), self._raw_structs):
                if parts and (size >= BATCH_BYTES or len(parts) + len(frame) > MAX_PARTS):
                    self._send_locked(parts)
                    parts, size = [], 0
                parts += frame
                size += sum(map(len, frame))
        if parts:
            self._send_locked(parts)

    def _send_locked(self, parts):
        try:
            self.sock.sendmsg(parts)
        except OSError:
            pass  # the supervisor is gone; the lifeline or cgroup ends this process


_NAME_AND_HOW = operator.itemgetter(0, 1)
_VALUE = operator.itemgetter(2)


def _frames(name, how, values, raw_structs):
    """Frames (each a list of buffers) of about BATCH_BYTES at most for consecutive records of one name
    and encoding."""
    if how is PLAIN:
        step = BATCH_BYTES // 8
        for i in range(0, len(values), step):
            yield [protocol.records_frame(name, json.dumps(values[i:i + step]))]
    elif how is JSON:
        start, size = 0, 0
        for end, value in enumerate(values, 1):
            size += len(value)
            if size >= BATCH_BYTES or end == len(values):
                yield [protocol.records_frame(name, "[" + ",".join(values[start:end]) + "]")]
                start, size = end, 0
    else:
        step = max(1, min(BATCH_BYTES // max(1, len(values[0])), MAX_PARTS - 2))
        for i in range(0, len(values), step):
            chunk = values[i:i + step]
            if raw_structs:
                yield protocol.raw_structs_parts(name, how, chunk)
            else:
                yield [protocol.structs_frame(name, how, b"".join(chunk))]


_channel = None


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "value"):  # ctypes scalars, as found in BCC map keys and values
        return value.value
    if hasattr(value, "_fields_"):  # ctypes structs, as BCC perf events are
        return {name: getattr(value, name) for name, *_ in value._fields_}
    if hasattr(value, "_length_"):  # ctypes arrays, as struct fields often are
        return list(value)
    raise TypeError(f"emit(): cannot send {type(value).__name__} to the host")


def note(kind, **fields):
    _channel.note(protocol.control_frame(kind, **fields))


def _instrument_bcc():
    try:
        import bcc
    except ImportError:
        return
    original_init = bcc.BPF.__init__

    def init(self, *args, **kwargs):
        text = kwargs.get("text")
        if text is None and args and kwargs.get("src_file") is None:
            text = args[0] if isinstance(args[0], (str, bytes)) and "\n" in str(args[0]) else None
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        note(protocol.COMPILING, text=text)
        started = time.monotonic()
        ok = False
        try:
            original_init(self, *args, **kwargs)
            ok = True
        finally:
            note(protocol.COMPILED, seconds=round(time.monotonic() - started, 3), ok=ok)

    bcc.BPF.__init__ = init
    for name in dir(bcc.BPF):
        if name.startswith("attach_"):
            _wrap_attach(bcc.BPF, name)
    original_load = bcc.BPF.load_func

    def load_func(self, func_name, *args, **kwargs):
        fn = original_load(self, func_name, *args, **kwargs)
        note(protocol.LOADED, name=func_name.decode() if isinstance(func_name, bytes) else str(func_name))
        return fn

    bcc.BPF.load_func = load_func
    bcc.BPF.trace_print = _trace_print


def _trace_print(self, fmt=None):
    """bcc's trace_print, printing each trace line as text: bcc prints the bytes it read, which
    Python 3 shows as b'...' reprs."""
    while True:
        if fmt:
            fields = self.trace_fields(nonblocking=False)
            if not fields:
                continue
            line = fmt.format(*fields)
        else:
            line = self.trace_readline(nonblocking=False)
        print(line.decode(errors="replace") if isinstance(line, bytes) else line, flush=True)


def _wrap_attach(cls, name):
    original = getattr(cls, name)
    how = name[len("attach_"):]

    def attach(*args, **kwargs):
        note(protocol.ATTACHING, how=how)
        try:
            return original(*args, **kwargs)
        finally:
            note(protocol.ATTACHED, how=how)

    setattr(cls, name, attach)


def _report_exception(exc, filename):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    text = "".join(traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc))
    note(protocol.EXCEPTION, type=type(exc).__name__, message=str(exc), traceback=text)


def run(path, filename, argv, emit_fd, raw_structs=False):
    """Run the program at `path` as __main__ and exit the process with its status."""
    global _channel
    _channel = Channel(socket.socket(fileno=emit_fd), raw_structs)
    with open(path) as f:
        source = f.read()
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.argv = [filename, *argv]
    emit = builtins.emit = _channel.emit
    _instrument_bcc()
    status = 0
    try:
        exec(compile(source, filename, "exec"), {"__name__": "__main__", "__file__": filename, "emit": emit})
    except KeyboardInterrupt:
        status = 130
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 -- reported to the host, which explains it
        _report_exception(e, filename)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _channel.flush()
    os._exit(status)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], json.loads(os.environ.pop("EBPF_LAB_ARGV")), int(os.environ.pop("EBPF_LAB_EMIT_FD")),
        os.environ.pop("EBPF_LAB_RAW_STRUCTS", "") == "1")
