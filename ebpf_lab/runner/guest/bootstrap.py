"""Runs in the lab VM as the program's process: executes the learner's code as __main__.

It adds what the host needs beside plain output: `emit(name, payload)` for structured
records, a note each time a BPF program is attached (so load starts only then), the
BPF C text (so compile errors map to cell lines), and tracebacks trimmed to the cell.
"""
import builtins
import json
import linecache
import os
import sys
import threading
import time
import traceback

_emit_file = None  # opened by run(): the pipe to the supervisor
_emit_lock = threading.Lock()


def _send(tag, obj):
    data = tag + b" " + json.dumps(obj, default=_jsonable, separators=(",", ":")).encode() + b"\n"
    with _emit_lock:
        _emit_file.write(data)


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
    _send(b"r", {"n": name, "p": payload})


def _flush_periodically():
    while True:
        time.sleep(0.05)
        with _emit_lock:
            _emit_file.flush()


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
        if text is not None:
            _send(b"c", {"k": "bpf_text", "text": text})
        original_init(self, *args, **kwargs)

    bcc.BPF.__init__ = init
    for name in dir(bcc.BPF):
        if name.startswith("attach_"):
            _wrap_attach(bcc.BPF, name)


def _wrap_attach(cls, name):
    original = getattr(cls, name)

    def attach(*args, **kwargs):
        result = original(*args, **kwargs)
        _send(b"c", {"k": "attached", "how": name[len("attach_"):]})
        with _emit_lock:
            _emit_file.flush()
        return result

    setattr(cls, name, attach)


def _report_exception(exc, filename):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    text = "".join(traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc))
    _send(b"c", {"k": "exception", "type": type(exc).__name__, "message": str(exc), "traceback": text})


def run(path, filename, emit_fd):
    """Run the program at `path` as __main__ and exit the process with its status."""
    global _emit_file
    _emit_file = os.fdopen(emit_fd, "wb", buffering=1 << 16)
    with open(path) as f:
        source = f.read()
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.argv = [filename]
    builtins.emit = emit
    threading.Thread(target=_flush_periodically, daemon=True).start()
    _instrument_bcc()
    status = 0
    try:
        exec(compile(source, filename, "exec"), {"__name__": "__main__", "__file__": filename, "emit": emit})
    except KeyboardInterrupt:
        status = 130
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # noqa: BLE001 -- reported to the host, which explains it
        _report_exception(e, filename)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    with _emit_lock:
        _emit_file.flush()
    os._exit(status)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(os.environ["EBPF_LAB_EMIT_FD"]))
