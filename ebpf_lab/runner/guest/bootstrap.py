"""Runs in the lab VM as the program's process: executes the learner's code as __main__.

It adds what the host needs beside plain output: `emit(name, payload)` for structured
records, notes on bcc's compile and attach steps (the --timeout clock starts once the
program runs, not while clang compiles), the BPF C text (so compile errors map to cell
lines), and tracebacks trimmed to the cell.

Records and notes travel over a SOCK_SEQPACKET socket: every send is one message, so
records emitted by forked children can never interleave half-way with the parent's.
"""
import builtins
import json
import linecache
import os
import socket
import sys
import threading
import time
import traceback

import protocol

BATCH_BYTES = 60 * 1024   # one message carries up to this many bytes of records
FLUSH_SECONDS = 0.05      # and waits at most this long for more


class Channel:
    """Frames to the supervisor, batched, safe across fork()."""

    def __init__(self, sock):
        self.sock = sock
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._batch = True
        self._start_flusher()
        # Late-bound: the child replaces its lock, and a later fork in the child must use the new one.
        os.register_at_fork(before=lambda: self._lock.acquire(), after_in_parent=lambda: self._lock.release(),
                            after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self):
        # The child starts empty (the parent sends what it had) with a fresh lock. It sends each record
        # at once: forked children often end with os._exit(), which would lose a batch still buffered.
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._batch = False

    def _start_flusher(self):
        threading.Thread(target=self._flush_periodically, daemon=True).start()

    def _flush_periodically(self):
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def send(self, data, urgent=False):
        with self._lock:
            if self._buf and len(self._buf) + len(data) > BATCH_BYTES:
                self._send_locked()
            self._buf += data
            if urgent or not self._batch or len(self._buf) >= BATCH_BYTES:
                self._send_locked()

    def flush(self):
        with self._lock:
            self._send_locked()

    def _send_locked(self):
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            try:
                self.sock.send(data)
            except OSError:
                pass  # the supervisor is gone; the lifeline or cgroup ends this process


_channel = None


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "value"):  # ctypes scalars, as found in BCC map keys and values
        return value.value
    if hasattr(value, "_fields_"):  # ctypes structs, as BCC perf events are
        return {name: getattr(value, name) for name, *_ in value._fields_}
    raise TypeError(f"emit(): cannot send {type(value).__name__} to the host")


def emit(name, payload=None):
    """Send a record to the host (shown in widgets, kept in run.records)."""
    data = json.dumps({"name": str(name), "payload": payload}, default=_jsonable, separators=(",", ":")).encode()
    if len(data) > protocol.MAX_RECORD:
        raise ValueError(f"emit(): a record of {len(data)} bytes is over the {protocol.MAX_RECORD} byte limit; "
                         "send a summary or split it into several records")
    _channel.send(protocol.frame(protocol.RECORD, data))


def note(kind, **fields):
    _channel.send(protocol.control_frame(kind, **fields), urgent=True)


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


def run(path, filename, argv, emit_fd):
    """Run the program at `path` as __main__ and exit the process with its status."""
    global _channel
    _channel = Channel(socket.socket(fileno=emit_fd))
    with open(path) as f:
        source = f.read()
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.argv = [filename, *argv]
    builtins.emit = emit
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
    run(sys.argv[1], sys.argv[2], json.loads(os.environ.pop("EBPF_LAB_ARGV")), int(os.environ.pop("EBPF_LAB_EMIT_FD")))
