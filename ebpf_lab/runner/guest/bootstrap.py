"""Runs in the lab VM as the program's process: executes the learner's code as __main__.

It adds what the host needs beside plain output: `emit(name, payload)` for structured
records, notes on bcc's compile and attach steps (the --timeout clock starts once the
program runs, not while clang compiles), the BPF C text (so compile errors map to cell
lines), and tracebacks trimmed to the cell.

Records and notes travel over a SOCK_SEQPACKET socket to the supervisor: every send is one
message, so records emitted by forked children can never interleave half-way with the parent's.
When the supervisor reaches the host over the data channel (a virtio serial port), the program
writes its own records there: the hop through the supervisor costs the guest as much CPU as
emit() itself, and under software emulation the guest's CPU is what the event source and the
consumer share.
"""
import builtins
import collections
import errno
import fcntl
import json
import linecache
import os
import re
import select
import socket
import sys
import threading
import time
import traceback
import weakref

import protocol
import struct_layout

BATCH_BYTES = 256 * 1024  # one message carries about this many bytes of records (emit() sends a bigger batch)
BATCH_RECORDS = 512       # emit() sends the batch itself once it holds this many records (or BATCH_BYTES)
HOLD_SECONDS = 1.0        # a run held longer than this by an emit() is held by a dead frame (a kept traceback)
FLUSH_SECONDS = 0.05      # a batch is sent within one to two of these periods (see _flush_periodically)
ACK_SECONDS = 30          # a supervisor that does not acknowledge a note in this time never will
SCALARS = (int, float, bool, type(None))  # immutable: kept as they are, encoded with their whole batch
PLAIN, JSON = "plain", "json"  # how a record is encoded, unless it is a struct (then: its layout)
MAX_PARTS = 1000               # buffers in one message (the kernel takes up to 1024)
# A virtio serial port takes at most this much per write(), as one buffer that nothing can split.
PORT_WRITE_MAX = 32 * 1024
PORT_FRAME_BYTES = 24 * 1024   # frames for the port are cut to about this size, so that most fit a write
PORT_QUEUE_BYTES = 4 * 1024 * 1024  # written to the port by its thread: emit() waits while more is queued
PIPE_BYTES = 1024 * 1024            # what one splice() hands the port, as one buffer
PORT_INTERVAL = 0.3                 # between two transfers to the port, unless someone waits or much is queued


class PortWriter:
    """Writes chunks of whole frames to the data channel from a thread of its own, in few buffers.

    Every buffer the port takes costs a virtio interrupt, and under software emulation (one host
    thread runs the vCPUs in turn) each interrupt hands the host thread to the other vCPU until its
    next timer tick: ~2 ms while the other vCPU is busy, e.g. making the events. So the chunks go
    into a pipe and from there, up to PIPE_BYTES at a time, to the port with one splice() each, which
    virtio_console sends as one buffer (~170 MB/s where 32 KiB writes made ~11 MB/s). Each buffer
    holds whole frames, sent under the lock the supervisor takes around its own writes, so a program
    killed at any point leaves no frame cut. The thread of its own lets the program go on taking
    events out of the kernel's buffer while a transfer waits. It makes at most about three transfers a
    second, unless a note or the program's end waits for it: the first records after a quiet spell
    go at once, a steady stream reaches the host every ~0.3 s. Measured under software emulation with
    a one-page ring buffer of 64-byte events (16 sweeps at 3,000 opens/s and the pacer's top speed),
    ten transfers a second lost 702 and 215 events in 12 and 8 sweeps, three lost 316 and 2 in 8 and
    1 (each transfer stalls the consumer while the vCPUs switch); a consumer inside the VM that sends
    nothing lost 96 and 0 in 7 and 0. One transfer a second did no better than three.
    """

    def __init__(self, fd, lock_fd):
        self._fd, self._lock_fd = fd, lock_fd
        self._pipe_r, self._pipe_w = os.pipe2(os.O_CLOEXEC)
        try:
            fcntl.fcntl(self._pipe_w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # a smaller pipe only means more transfers
        self._pipe_bytes = fcntl.fcntl(self._pipe_w, fcntl.F_GETPIPE_SZ)
        self._splice = True  # until the port refuses it (a port type without splice support)
        self._failed = False  # the port failed: what is queued is dropped (the supervisor ends the run)
        self._chunks = collections.deque()
        self._queued = 0
        self._busy = False
        self._waiting = 0  # threads in wait_until_written()
        self._last = float("-inf")  # when the last transfer started
        self._cond = threading.Condition()
        threading.Thread(target=self._write, name="ebpf-lab port", daemon=True).start()

    def _send(self, group):
        if self._splice:
            size = sum(map(len, group))
            os.writev(self._pipe_w, group)  # the pipe is empty and big enough: it takes the group whole
            try:
                while size:
                    size -= os.splice(self._pipe_r, self._fd, size)
                return
            except OSError as e:
                if e.errno != errno.EINVAL or size != sum(map(len, group)):
                    raise
                self._splice = False
                while size:  # still in the pipe: written below instead
                    size -= len(os.read(self._pipe_r, size))
        for chunk in group:  # one buffer of the port each
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view):]

    def put(self, chunks):
        with self._cond:
            while self._queued > PORT_QUEUE_BYTES:
                self._cond.wait()
            self._chunks.extend(chunks)
            self._queued += sum(map(len, chunks))
            self._cond.notify_all()

    def wait_until_written(self):
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
            while self._chunks or self._busy:
                self._cond.wait()
            self._waiting -= 1

    def _write(self):
        while True:
            with self._cond:
                while not self._chunks:
                    self._cond.wait()
                while not self._waiting and self._queued < self._pipe_bytes // 2:
                    left = self._last + PORT_INTERVAL - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._last = time.monotonic()
                chunks = list(self._chunks)
                self._chunks.clear()
                self._busy = True
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                for group in _groups(chunks, self._pipe_bytes):
                    if not self._failed:
                        self._send(group)
            except OSError:
                # The supervisor's writes fail too, and it stops the run. The pipe may still hold a
                # group: writing more into it could block this thread, and emit() behind it, for good.
                self._failed = True
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                with self._cond:
                    self._queued -= sum(map(len, chunks))
                    self._busy = False
                    self._cond.notify_all()


class _Run:
    """Consecutive records of one name and encoding: their payloads in a list or, for flat structs, their
    bytes back to back in a bytearray (`size` bytes each)."""
    __slots__ = ("name", "how", "values", "size", "__weakref__")

    def __init__(self, name, how, values, size=0):
        self.name, self.how, self.values, self.size = name, how, values, size


_NO_RUN = _Run(None, None, None)  # matches no record: the next emit() starts a run


def _gone():
    """A weak reference to no run."""
    return None


def _references_of_a_free_run():
    """sys.getrefcount() of a run that only a list holds, asked as _send_records_locked asks it."""
    runs = [_Run(None, None, None)]
    return sys.getrefcount(runs[0])


FREE = _references_of_a_free_run()


class Channel:
    """Records and notes to the supervisor (records straight to the data channel, when there is one), safe
    across fork().

    emit() must cost little more than list.append, since a BCC callback may call it thousands of
    times a second in a VM without hardware acceleration. Consecutive records of one name and
    encoding form a run, and a record that continues the current run is appended to it with no lock:
    a list append, or for a flat ctypes struct (a BCC event) its bytes added to the run's bytearray,
    each done in one C call, atomic under the interpreter lock. Each run becomes a frame: one
    json.dumps call for scalar payloads, raw struct bytes unpacked on the host (compressed over ssh).
    A lock costs emit() as much again under software emulation, so the sender instead takes the runs
    away and leaves for later the first run whose reference count shows an emit() still holding it
    (it can only be finishing its one append), with the runs after it (see _free_prefix). Records
    of one thread keep their order; records of two threads emitted at the same time may arrive in
    either order. A stream sends its batches from emit() itself, when the batch is full or the
    flusher thread has marked it due; the flusher only sends a batch that no emit() came to in a
    whole period. Mutable payloads are encoded at emit() (what is sent is what was emitted, and a
    payload that cannot be sent fails there). A note first sends the records before it, then waits
    until the supervisor has forwarded the program's earlier output, so the host sees notes and
    output in program order.
    """

    def __init__(self, sock, port=None):
        """`port`: (fd, lock file) of the data channel when the supervisor shares it with the program."""
        self.sock = sock
        self._port = self._port_lock = self._writer = None
        if port is not None:
            self._port = port[0]
            os.set_inheritable(self._port, False)  # not for the commands the program runs
            # A lock of our own on the file the supervisor locks around its writes to the port.
            self._port_lock = os.open(port[1], os.O_RDONLY | os.O_CLOEXEC)
            self._writer = PortWriter(self._port, self._port_lock)
        self._synced = False  # whether the supervisor has heard that records flow (its clock starts on them)
        # Structs go uncompressed when the link to the host does not encrypt (protocol.py).
        self._raw_structs = port is not None
        self._frame_bytes = PORT_FRAME_BYTES if port is not None else BATCH_BYTES
        self._reset_runs()
        self._held = (_gone, 0.0)  # the run an emit() held at the last batch (a weak reference), and since when
        self._hows = dict.fromkeys(SCALARS, PLAIN)  # payload type -> PLAIN, JSON or its struct layout
        self._lock = threading.Lock()        # one sender at a time
        self._runs_lock = threading.Lock()   # held to start a run or to take the runs away
        self._due = False                    # set by the flusher: the next emit() sends the batch
        self._batch = True
        self._acks = True
        self._start_flusher()
        # Late-bound: the child replaces its lock, and a later fork in the child must use the new one.
        os.register_at_fork(before=lambda: self._lock.acquire(), after_in_parent=lambda: self._lock.release(),
                            after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self):
        # The child starts empty (the parent sends what it had) with a fresh lock. It sends each record
        # at once: forked children often end with os._exit(), which would lose a batch still buffered.
        # Its records go through the supervisor: the port is the parent's.
        self._reset_runs()
        self._lock, self._runs_lock = threading.Lock(), threading.Lock()
        self._batch = False
        if self._port is not None:
            os.close(self._port)
            os.close(self._port_lock)
            self._port = self._port_lock = self._writer = None

    def _reset_runs(self):
        self._runs = []      # the records not yet sent, as runs, oldest first
        self._run = _NO_RUN  # the last of them, which emit() appends to
        self._unsent = []    # runs taken for the last batch but not sent: an emit() held the first
        self._count = 0      # records and bytes (encoded) since the last batch: approximate, they only trigger one
        self._bytes = 0

    def _start_flusher(self):
        threading.Thread(target=self._flush_periodically, daemon=True).start()

    def _flush_periodically(self):
        # A batch that is growing goes with the next emit(), in the thread making the records. Sent from
        # here, its encoding would hold the interpreter lock that every BCC callback must take back, and
        # the two threads handing the lock to and fro stalled the consumer for ~10 ms per batch under
        # software emulation, long enough for a one-page perf buffer to overflow.
        while True:
            time.sleep(FLUSH_SECONDS)
            if self._due:
                self.flush()  # no emit() came in a whole period
            elif self._runs or self._unsent:
                self._due = True

    def emit(self, name, payload=None):
        """Send a record to the host (shown in widgets, kept in run.records). The program's `emit`."""
        if type(name) is not str:
            name = str(name)
        how = self._hows.get(type(payload))
        if how is None:
            how = self._learn(type(payload))
        # `run` is held from reading self._run until appended to or let go: while it is held, no batch
        # is sent, so nothing that could wait (or run a signal handler) comes between.
        if how is PLAIN or how is JSON:
            value = payload
            if how is JSON:
                value = json.dumps(payload, default=_jsonable, separators=(",", ":"))
                size = len(value) + len(name)
                if size > protocol.MAX_RECORD:
                    raise ValueError(f"emit(): a record of {size} bytes is over the {protocol.MAX_RECORD} byte "
                                     "limit; send a summary or split it into several records")
                self._bytes += size
            run = self._run
            if run.how is how and run.name == name:
                run.values.append(value)
            else:
                run = None  # let go before waiting for the lock
                self._start_run(name, how, [value])
        else:
            run = self._run
            if run.how is how and run.name == name:
                run.values += payload  # copied: a BCC event points into the buffer, which the kernel reuses
                self._bytes += run.size
            else:
                run = None  # let go before copying and waiting for the lock
                value = bytearray(payload)
                self._bytes += len(value)
                self._start_run(name, how, value, len(value))
        run = None
        self._count += 1
        if self._due or self._count >= BATCH_RECORDS or not self._batch or self._bytes >= BATCH_BYTES:
            self.flush()

    def _start_run(self, name, how, values, size=0):
        run = _Run(name, how, values, size)
        with self._runs_lock:
            self._runs.append(run)
            self._run = run

    def _learn(self, kind):
        """How payloads of this type travel: PLAIN, JSON, or (a flat ctypes struct) its layout as JSON text."""
        layout = struct_layout.layout_of(kind)
        self._hows[kind] = json.dumps(layout) if layout else JSON
        return self._hows[kind]

    def note(self, frame):
        with self._lock:
            self._send_records_locked(everything=True)
            if self._writer:
                self._writer.wait_until_written()  # the records before the note reach the host before it
            self._send_locked([frame])
            self._wait_for_ack()

    def _sync_locked(self):
        """Wait until what went through the supervisor is on the port: records written there next come after it."""
        self._send_locked([protocol.SYNC])
        self._wait_for_ack()
        self._synced = True

    def _wait_for_ack(self):
        if self._acks and not self._ack_arrived():
            self._acks = False  # an old or stuck supervisor: stop waiting, keep running

    def flush(self, wait=False):
        """Send the records queued so far; with `wait`, return once they are written (the process may end next)."""
        with self._lock:
            self._send_records_locked(everything=wait)
        if wait and self._writer:
            self._writer.wait_until_written()

    def _ack_arrived(self):
        ready, _, _ = select.select([self.sock], [], [], ACK_SECONDS)
        try:
            return bool(ready) and self.sock.recv(16) == protocol.NOTE_ACK
        except OSError:
            return False

    def _send_records_locked(self, everything=False):
        """Send the records queued so far. A run that an emit() in another thread still holds, and the
        runs after it, go with the next batch; with `everything` (a note or the program's end comes
        next), once that emit() lets go."""
        self._due = False
        if not self._runs and not self._unsent:
            return
        if self._port is not None and not self._synced:
            self._sync_locked()  # before the records leave the queue: an interrupt while waiting loses none
        taken = self._take_runs()
        left = len(taken)  # with `everything`, the runs queued when called must go
        while True:
            ready = self._free_prefix(taken)
            self._unsent = taken[ready:]
            self._send_runs_locked(taken[:ready])
            left -= ready
            if not everything or left <= 0:
                return
            time.sleep(0.001)  # the emit() holding a run gets the interpreter and lets go
            taken = self._take_runs()

    def _take_runs(self):
        """The runs not sent yet, oldest first; new records start new runs from now on."""
        with self._runs_lock:
            taken = self._unsent + self._runs
            self._reset_runs()
        return taken

    def _free_prefix(self, taken):
        """How many of the taken runs, from the first, no emit() holds.

        An emit() that read self._run before _take_runs may still be appending to one of them: it
        adds to that run's references until it lets go, a few instructions later. The runs from the
        first one held on must wait, since it may hold records of other threads too, whose later
        records are in the runs after it. A run held over HOLD_SECONDS is held by a dead frame (a kept
        traceback) and goes anyway."""
        ready = 0
        while ready < len(taken) and sys.getrefcount(taken[ready]) <= FREE:
            ready += 1
        if ready == len(taken):
            self._held = (_gone, 0.0)
            return ready
        held, since = self._held
        now = time.monotonic()
        if held() is not taken[ready]:
            self._held = (weakref.ref(taken[ready]), now)  # weak: a reference would count as held
        elif now - since > HOLD_SECONDS:
            self._held = (_gone, 0.0)
            return len(taken)
        return ready

    def _send_runs_locked(self, runs):
        frames = (frame for run in runs for frame in _frames(run, self._raw_structs, self._frame_bytes))
        if self._port is None:
            self._send_frames_locked(frames)
        else:
            self._write_frames_locked(frames)

    def _send_frames_locked(self, frames):
        # Frames are lists of buffers, sent with one sendmsg() per message: the structs are not copied again.
        parts, size = [], 0
        for frame in frames:
            if parts and (size >= BATCH_BYTES or len(parts) + len(frame) > MAX_PARTS):
                self._send_locked(parts)
                parts, size = [], 0
            parts += frame
            size += sum(map(len, frame))
        if parts:
            self._send_locked(parts)

    def _write_frames_locked(self, frames):
        """Frames straight to the port, as many whole frames per write() as fit PORT_WRITE_MAX: a program
        killed half-way through a batch leaves no frame cut in two. A bigger frame goes through the
        supervisor, and the next records written to the port wait until it is out."""
        chunks, chunk, size = [], [], 0  # chunk: the buffers of whole frames for one write()
        for frame in frames:
            n = sum(map(len, frame))
            if n > PORT_WRITE_MAX:
                self._write_chunks(chunks + [b"".join(chunk)])
                chunks, chunk, size = [], [], 0
                self._writer.wait_until_written()
                self._send_locked(frame)
                self._synced = False
                continue
            if size + n > PORT_WRITE_MAX:
                chunks.append(b"".join(chunk))
                chunk, size = [], 0
            chunk += frame
            size += n
        self._write_chunks(chunks + [b"".join(chunk)])

    def _write_chunks(self, chunks):
        chunks = [c for c in chunks if c]
        if not chunks:
            return
        if not self._synced:
            self._sync_locked()
        self._writer.put(chunks)

    def _send_locked(self, parts):
        try:
            self.sock.sendmsg(parts)
        except OSError:
            pass  # the supervisor is gone; the lifeline or cgroup ends this process


def _groups(chunks, size):
    """Consecutive chunks in lists of at most `size` bytes (and at most MAX_PARTS chunks)."""
    group, n = [], 0
    for chunk in chunks:
        if group and (n + len(chunk) > size or len(group) >= MAX_PARTS):
            yield group
            group, n = [], 0
        group.append(chunk)
        n += len(chunk)
    if group:
        yield group


def _frames(run, raw_structs, frame_bytes):
    """Frames (each a list of buffers) of about `frame_bytes` at most for a run (a single record may be bigger)."""
    name, how, values = run.name, run.how, run.values
    if how is PLAIN:
        step = max(1, frame_bytes // 32)  # numbers as JSON: rarely more than 24 characters
        for i in range(0, len(values), step):
            yield [protocol.records_frame(name, json.dumps(values[i:i + step]))]
    elif how is JSON:
        start, size = 0, 0
        for end, value in enumerate(values, 1):
            size += len(value) + 1
            if end == len(values) or size + len(values[end]) >= frame_bytes:
                yield [protocol.records_frame(name, "[" + ",".join(values[start:end]) + "]")]
                start, size = end, 0
    else:
        per_frame = min(protocol.MAX_STRUCTS_PER_FRAME, max(1, (frame_bytes - len(how) - len(name)) // max(1, run.size)))
        step = per_frame * run.size
        for i in range(0, len(values), step):
            chunk = values[i:i + step]
            if raw_structs:
                yield protocol.raw_structs_parts(name, how, [chunk])
            else:
                yield [protocol.structs_frame(name, how, chunk)]


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
    bcc.BPF.trace_readline = _lines_of_this_run(bcc.BPF.trace_readline)


TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_TRACE_TIME = re.compile(rb"\s(\d+\.\d+):\s")
_started_at_trace_time = None  # the kernel's trace clock when this program started


def trace_clock_now():
    """The trace clock's time now, or None without tracefs."""
    for root in TRACEFS:
        try:
            with open(os.path.join(root, "per_cpu", "cpu0", "stats"), "rb") as f:
                now = now_in_stats(f.read())
        except OSError:
            continue
        if now is not None:
            return now
    return None


def now_in_stats(stats):
    """The "now ts" a per-CPU trace buffer's stats file gives ("now ts:   233.978993"), or None."""
    found = re.search(rb"^now ts:\s+(\d+\.\d+)", stats, re.M)
    return float(found.group(1)) if found else None


def _lines_of_this_run(readline):
    """bcc's trace_readline, skipping lines older than this program: the kernel's trace buffer is one for
    the whole machine, and an earlier program may have left lines in it that nobody read (they would be
    printed as this program's). Once per program, stderr says how many were skipped."""
    skipped = 0

    def trace_readline(self, nonblocking=False):
        nonlocal skipped
        while True:
            line = readline(self, nonblocking)
            stamp = _TRACE_TIME.search(line[:80]) if line else None
            if stamp is None or _started_at_trace_time is None or float(stamp.group(1)) >= _started_at_trace_time:
                if skipped:
                    print(f"ebpf-lab: skipped {skipped} trace line(s) an earlier program left in the kernel's "
                          "trace buffer", file=sys.stderr, flush=True)
                    skipped = -1
                return line
            if skipped >= 0:
                skipped += 1
    return trace_readline


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


def run(path, filename, argv, emit_fd, port=None):
    """Run the program at `path` as __main__ and exit the process with its status; `port`: see Channel."""
    global _channel, _started_at_trace_time
    _started_at_trace_time = trace_clock_now()
    _channel = Channel(socket.socket(fileno=emit_fd), port)
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
    _channel.flush(wait=True)
    os._exit(status)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], json.loads(os.environ.pop("EBPF_LAB_ARGV")), int(os.environ.pop("EBPF_LAB_EMIT_FD")),
        json.loads(os.environ.pop("EBPF_LAB_PORT", "null")))
