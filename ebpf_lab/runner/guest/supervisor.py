"""Runs in the lab VM as root: supervises one program for the host (wire format: protocol.py).

Guarantees, whatever the program does:
- it runs in a cgroup of its own; when the run ends everything in it is killed, including
  children that left the process group with setsid() or a double fork;
- the time limit counts running time only: the clock starts once the program has attached
  (or loaded, or printed) and stops while bcc compiles; a separate compile limit stops a
  program that never gets there;
- signals come before words: a timeout, an interrupt or a lost host is acted on first and
  reported afterwards, and no thread that must signal ever blocks on the pipe to the host;
- after the run it reports any BPF object the run created that is still loaded.
"""
import collections
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import bpf_objects
import cgroup
import protocol
from pump import Pump

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_PDEATHSIG = 1
ATTACH_SETTLE_SECONDS = 0.3   # a program attaches several probes in a row: start the workload after the last
OUTBOX_BYTES = 4 * 1024 * 1024
WRITE_BYTES = 256 * 1024  # the outbox writes in pieces of this size, so that a slow host's progress shows
EMIT_MESSAGE_MAX = 2 * protocol.MAX_RECORD
CHANNEL_SECONDS = 10  # to reach the host's data channel and hear its answer; ssh is the way if not
PUMP_STALL_SECONDS = 30  # after the program's end, the pump may forward for as long as it makes progress
# A zygote forks in milliseconds; one that has not answered in this time is stuck (stopped, or wedged by a
# program in the VM), and the run starts in a fresh interpreter instead.
ZYGOTE_SECONDS = 10
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
TICK = 0.1
# The notes a program may send (bootstrap.py sends them), with the fields passed on to the host.
PROGRAM_NOTES = {
    protocol.COMPILING: ("text",),
    protocol.COMPILED: ("seconds", "ok"),
    protocol.ATTACHING: ("how",),
    protocol.ATTACHED: ("how",),
    protocol.LOADED: ("name",),
    protocol.EXCEPTION: ("type", "message", "traceback"),
}


class Outbox:
    """Frames to the host, written by one thread, so that no other thread blocks on the pipe to the host.

    Program output waits while the outbox is full (the program then blocks on its own pipe, and
    memory stays bounded); control events never wait.
    """

    def __init__(self, stream, on_host_gone, lock=contextlib.nullcontext, key=""):
        self._stream = stream
        self._key = key  # signs control events: the host takes no unsigned one for the runner's
        self._lock = lock  # held while a batch is written (see SharedPort)
        self._on_host_gone = on_host_gone
        self._frames = collections.deque()
        self._bytes = 0
        self._writing = False
        self._closed = False
        self._cond = threading.Condition()
        self.written = 0  # bytes the host has taken
        self.host_gone = threading.Event()
        self._thread = threading.Thread(target=self._write, name="outbox", daemon=True)
        self._thread.start()

    def data(self, data):
        with self._cond:
            while self._bytes > OUTBOX_BYTES and not self.host_gone.is_set():
                self._cond.wait(0.5)
            self._put(data)

    def control(self, kind, **fields):
        with self._cond:
            self._put(protocol.control_frame(kind, key=self._key, **fields))

    def _put(self, data):
        if not self.host_gone.is_set():
            self._frames.append(data)
            self._bytes += len(data)
            self._cond.notify_all()

    def drain(self):
        """Return once every frame put so far is written, or the host is gone."""
        with self._cond:
            while (self._frames or self._writing) and not self.host_gone.is_set():
                self._cond.wait(0.5)

    def close(self, timeout):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _write(self):
        while True:
            with self._cond:
                while not self._frames and not self._closed:
                    self._cond.wait()
                if not self._frames:
                    return
                batch = list(self._frames)
                self._frames.clear()
                self._bytes = 0
                self._writing = True
                self._cond.notify_all()
            try:
                for piece in _whole_frames(batch, WRITE_BYTES):
                    # Per piece, not per batch: the program's emit() waits while the lock is held.
                    with self._lock():
                        view = memoryview(piece)
                        for start in range(0, len(piece), WRITE_BYTES):
                            part = view[start:start + WRITE_BYTES]
                            self._stream.write(part)
                            self._stream.flush()
                            self.written += len(part)
            except (OSError, ValueError):
                self.host_gone.set()
                with self._cond:
                    self._frames.clear()
                    self._writing = False
                    self._cond.notify_all()
                self._on_host_gone()
                return
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _whole_frames(items, size):
    """Consecutive items (each whole frames) joined into pieces of at most `size` bytes, or one item if bigger."""
    piece, n = [], 0
    for item in items:
        if piece and n + len(item) > size:
            yield b"".join(piece)
            piece, n = [], 0
        piece.append(item)
        n += len(item)
    if piece:
        yield b"".join(piece)


class RunClock:
    """When the --timeout clock starts, what pauses it, which limit has run out, and when the workload may start."""

    def __init__(self, timeout, compile_timeout):
        self.timeout = timeout
        self.compile_timeout = compile_timeout
        self.started = time.monotonic()
        self.running_since = None
        self.compiling_since = None
        self.paused = 0.0
        self.attaching = 0
        self.last_attach = 0.0
        self.workload_ready = threading.Event()  # attached a probe, or printed while not compiling
        self._lock = threading.Lock()

    def on_compiling(self):
        with self._lock:
            self.compiling_since = time.monotonic()

    def on_compiled(self):
        with self._lock:
            now = time.monotonic()
            if self.compiling_since is not None and self.running_since is not None:
                self.paused += now - max(self.compiling_since, self.running_since)
            self.compiling_since = None

    def on_loaded(self):
        with self._lock:
            return self._start("loaded", time.monotonic())

    def on_attaching(self):
        with self._lock:
            self.attaching += 1

    def on_attached(self):
        with self._lock:
            now = time.monotonic()
            self.attaching = max(0, self.attaching - 1)
            self.last_attach = now
            self.workload_ready.set()
            return self._start("attached", now)

    def on_output(self):
        if self.running_since is not None:
            return None
        with self._lock:
            # Clang's warnings while bcc compiles are output too, but the program is not running yet.
            if self.compiling_since is not None:
                return None
            self.workload_ready.set()
            return self._start("output", time.monotonic())

    def settled(self):
        """No BPF() under way (bcc attaches TRACEPOINT_PROBE and kprobe__ functions inside it, verifying
        each one between two attaches: seconds under emulation), no attach under way, and the last one
        a moment ago: a program attaches its probes in a row."""
        with self._lock:
            return (self.compiling_since is None and self.attaching == 0
                    and time.monotonic() - self.last_attach >= ATTACH_SETTLE_SECONDS)

    def _start(self, reason, now):
        if self.running_since is not None:
            return None
        self.running_since = now
        return reason

    def expired(self):
        """(event kind, limit) once a limit has run out, else None."""
        with self._lock:
            now = time.monotonic()
            if self.compiling_since is not None and now - self.compiling_since > self.compile_timeout:
                return protocol.COMPILE_TIMEOUT, self.compile_timeout
            if self.timeout is None:
                return None
            if self.running_since is None:
                if now - self.started > self.compile_timeout:
                    return protocol.COMPILE_TIMEOUT, self.compile_timeout
                return None
            ran = now - self.running_since - self.paused
            if self.compiling_since is not None:
                ran -= now - max(self.compiling_since, self.running_since)
            return (protocol.TIMEOUT, self.timeout) if ran > self.timeout else None


class SharedPort:
    """The data channel, shared with the program, which writes its records there itself (see
    bootstrap.PortWriter), whole frames per transfer, holding a lock on the file at `lock_path`.
    The supervisor holds the same lock while it writes, since its frames may take several writes."""

    def __init__(self, stream):
        self.stream = stream
        self.fd = stream.fileno()
        self._lock_fd, self.lock_path = tempfile.mkstemp(prefix="port-", suffix=".lock", dir="/run/ebpf-lab")

    @contextlib.contextmanager
    def locked(self):
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def remove(self):
        os.unlink(self.lock_path)


class Supervisor:
    def __init__(self, header, stream, port=None):
        """Frames go to `stream` (ssh), or to `port` (a SharedPort) when the host's data channel is open."""
        self.port = port
        self.records_flow = False  # the program writes records to the port itself (it said SYNC)
        self.header = header
        self.clock = RunClock(header.timeout, header.compile_timeout)
        self.outbox = Outbox(port.stream if port else stream, on_host_gone=lambda: self.stop_async(None),
                             lock=port.locked if port else contextlib.nullcontext, key=header.key)
        self.done = threading.Event()
        self.stopping = threading.Event()
        self.killed = False
        self.forwarded = 0  # bytes the pump has handed to the outbox
        self.cgroup = None
        self.child = None

    # -- the run -----------------------------------------------------------------
    def run(self):
        refusal = check_workload(self.header.workload)
        if refusal:
            self.outbox.control(protocol.REFUSED, message=refusal[0], fix=refusal[1])
            return self.finish(2, [])
        before = bpf_objects.snapshot()
        self.cgroup = cgroup.create(f"run-{os.getpid()}")
        workdir = tempfile.mkdtemp(prefix="run-", dir="/run/ebpf-lab")
        limits = {}
        try:
            status = self.supervise(workdir)
            left = bpf_objects.left_over(before)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if self.cgroup:
                limits = cgroup.limits_hit(self.cgroup)
                cgroup.remove(self.cgroup)
        if limits:
            self.outbox.control(protocol.LIMIT, memory_max=cgroup.memory_limit(), pids_max=cgroup.MAX_PIDS,
                                **limits)
        return self.finish(status, left)

    def supervise(self, workdir):
        path = os.path.join(workdir, "program.py")
        with open(path, "w") as f:
            f.write(self.header.source)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        emit_mine, emit_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Big enough for one record of MAX_RECORD bytes in one message (root may exceed wmem_max).
        emit_theirs.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUFFORCE", 32), EMIT_MESSAGE_MAX)
        spawn_args = (path, self.header.filename, self.header.argv, workdir, self.cgroup,
                      out_w, err_w, emit_theirs.fileno(), self.port and (self.port.fd, self.port.lock_path))
        # The host's commands and the clocks count from now: a zygote that never answers is stopped like
        # any program, and the run falls back to a fresh interpreter after ZYGOTE_SECONDS.
        threading.Thread(target=self.read_host, daemon=True).start()
        threading.Thread(target=self.watch_clock, daemon=True).start()
        self.child = WarmChild.spawn(*spawn_args, cancelled=self.stopping.is_set)
        if self.child is None and not self.stopping.is_set():
            if self.cgroup:
                cgroup.kill(self.cgroup)  # a child a stuck zygote forked after all
            self.child = ColdChild.spawn(*spawn_args)
        for fd in (out_w, err_w):
            os.close(fd)
        emit_theirs.close()
        if self.child is None:  # stopped before the program started
            for fd in (out_r, err_r):
                os.close(fd)
            emit_mine.close()
            self.done.set()
            self.kill_all()  # a child the zygote forked as the stop came
            return 128 + signal.SIGINT
        self.outbox.control(protocol.STARTED, pid=self.child.pid, warm=isinstance(self.child, WarmChild),
                            cgroup=self.cgroup is not None)
        pump = Pump(out_r, err_r, emit_mine, EMIT_MESSAGE_MAX, self.forward, self.note_control,
                    on_sync=self.outbox.drain if self.port else None)
        pumping = threading.Thread(target=pump.run, name="pump", daemon=True)
        pumping.start()
        for spec in self.header.workload:
            threading.Thread(target=self.run_workload, args=(spec,), daemon=True).start()
        status = self.child.wait()
        self.done.set()
        self.kill_all()  # whatever the program started and left behind
        self.wait_for_pump(pumping)
        return status

    def finish(self, status, left):
        if self.killed:
            self.outbox.control(protocol.KILLED, after=self.header.grace)
        if left:
            self.outbox.control(protocol.LEFT_LOADED, objects=left)
        self.outbox.control(protocol.EXIT, status=status)
        self.outbox.close(timeout=60)
        return status

    # -- output ------------------------------------------------------------------
    def wait_for_pump(self, pumping):
        """Until the pump has forwarded what the program wrote before it ended: 20 MB of output over a
        slow ssh link take a while, and a clock would cut it off. Progress is the pump handing frames
        to the outbox or the host taking them from it: the pump waits while the outbox is full, for
        as long as a slow host needs to read a full outbox. A pump and host that both stop (a host
        that no longer reads) are left behind."""
        def progress():
            return self.forwarded + self.outbox.written

        last, since = progress(), time.monotonic()
        while pumping.is_alive():
            pumping.join(0.5)
            if progress() != last:
                last, since = progress(), time.monotonic()
            elif time.monotonic() - since > PUMP_STALL_SECONDS:
                return

    def forward(self, data, output):
        self.outbox.data(data)
        self.forwarded += len(data)
        if output:
            self.note_output()

    def note_output(self):
        self.report_running(self.clock.on_output())

    def note_control(self, line):
        """A note the program sent: passed on to the host checked and signed, and its effect on the clock.
        A program may only say what a program does (compiling, attached, ...): an exit, a limit or a
        timeout comes from the supervisor alone, and a note that is not a program's is dropped."""
        if line == protocol.SYNC:
            self.records_flow = True  # the program's records go to the host from here on: output
            self.note_output()
            return
        try:
            event = json.loads(line[2:])
            kind = event["kind"]
            fields = {name: event[name] for name in PROGRAM_NOTES[kind] if name in event}
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        reason = None
        if kind == protocol.COMPILING:
            self.clock.on_compiling()
        elif kind == protocol.COMPILED:
            self.clock.on_compiled()
            if self.records_flow:  # records written while bcc compiled start the clock now
                reason = self.clock.on_output()
        elif kind == protocol.LOADED:
            reason = self.clock.on_loaded()
        elif kind == protocol.ATTACHING:
            self.clock.on_attaching()
        elif kind == protocol.ATTACHED:
            reason = self.clock.on_attached()
        self.forward(protocol.control_frame(kind, key=self.header.key, **fields), False)
        self.report_running(reason)

    def report_running(self, reason):
        """Tell the host the --timeout clock has started (`reason` is set only the first time)."""
        if reason:
            self.outbox.control(protocol.RUNNING, reason=reason)

    # -- stopping ----------------------------------------------------------------
    def signal_group(self, sig):
        try:
            os.killpg(self.child.pid, sig)
        except (ProcessLookupError, PermissionError, AttributeError):
            pass

    def kill_all(self):
        self.signal_group(signal.SIGKILL)
        if self.cgroup:
            cgroup.kill(self.cgroup)

    def stop(self, event):
        """SIGINT first so the program's KeyboardInterrupt cleanup runs; report; SIGKILL after the grace time."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.signal_group(signal.SIGINT)
        if event:
            self.outbox.control(event[0], after=event[1])
        if not self.done.wait(self.header.grace):
            self.killed = True  # reported by finish(), before the exit event
            self.kill_all()

    def stop_async(self, event):
        threading.Thread(target=self.stop, args=(event,), daemon=True).start()

    def watch_clock(self):
        while not self.done.wait(TICK):
            expired = self.clock.expired()
            if expired:
                self.stop(expired)
                return

    def read_host(self):
        for line in sys.stdin.buffer:
            command = line.strip().decode(errors="replace")
            if command in (protocol.INTERRUPT, protocol.KILL) and self.child is None:
                self.stopping.set()  # before the program started: it will not start
            elif command == protocol.INTERRUPT:
                self.signal_group(signal.SIGINT)
            elif command == protocol.KILL:
                self.kill_all()
        if not self.done.is_set():
            self.stop(None)  # the host went away

    # -- workload ----------------------------------------------------------------
    def run_workload(self, spec):
        """Exec the spec's command as its user, inside the run's cgroup, once the program's probes are attached."""
        while not (self.clock.workload_ready.is_set() and self.clock.settled()):
            if self.done.wait(0.05):
                return
        user = pwd.getpwnam(spec.user)
        env = {"HOME": user.pw_dir, "USER": spec.user, "LOGNAME": spec.user, "SHELL": user.pw_shell,
               "PATH": USER_PATH, "LANG": "C.UTF-8"}
        cwd = user.pw_dir if os.path.isdir(user.pw_dir) else "/"
        cg = self.cgroup

        def become_user():
            if cg:
                cgroup.join(cg)
            os.initgroups(spec.user, user.pw_gid)
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        pids, error, first = [], None, time.monotonic()
        for i in range(spec.count):
            if spec.rate:
                delay = first + i / spec.rate - time.monotonic()
                if delay > 0 and self.done.wait(delay):
                    break
            if self.done.is_set():
                break
            try:
                with subprocess.Popen(spec.command, env=env, cwd=cwd, preexec_fn=become_user,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) as proc:
                    pids.append(proc.pid)
            except (OSError, subprocess.SubprocessError) as e:
                error = f"{spec.command[0]}: {e}"
                break
        # The pids let a self-check tell what the kernel did for the workload from anything else on the machine.
        fields = {"user": spec.user, "command": spec.command, "count": len(pids), "pids": pids}
        if error:
            fields["error"] = error
        self.outbox.control(protocol.WORKLOAD, **fields)


def check_workload(specs):
    """(message, fix) for a workload that cannot run, before anything is compiled; None if it can."""
    lab_users = sorted(p.pw_name for p in pwd.getpwall() if 1000 <= p.pw_uid < 65534)
    for spec in specs:
        try:
            pwd.getpwnam(spec.user)
        except KeyError:
            return (f"workload: there is no user {spec.user!r} in the lab VM",
                    f"use one of the lab users: {', '.join(lab_users) or 'root'}")
        exe = spec.command[0] if spec.command else ""
        found = (os.access(exe, os.X_OK) and os.path.isfile(exe)) if "/" in exe else shutil.which(exe, path=USER_PATH)
        if not found:
            return (f"workload: command {exe!r} not found in the lab VM",
                    "give a program that exists there, by its full path (e.g. /bin/cat /etc/hostname)")
    return None


class ColdChild:
    """The program in a fresh interpreter (used until the warm zygote is up)."""

    def __init__(self, proc):
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    def spawn(cls, path, filename, argv, cwd, cg, out_w, err_w, emit_fd, port):
        """`port`: (fd, lock path) of the data channel the program writes its records to, or None."""
        libc = ctypes.CDLL(None, use_errno=True)

        def in_child():
            if cg:
                cgroup.join(cg)
            os.setsid()
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

        env = dict(os.environ, EBPF_LAB_EMIT_FD=str(emit_fd), EBPF_LAB_ARGV=json.dumps(argv), PYTHONUNBUFFERED="1",
                   EBPF_LAB_PORT=json.dumps(port))
        return cls(subprocess.Popen([sys.executable, "-u", os.path.join(HERE, "bootstrap.py"), path, filename],
                                    stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, env=env,
                                    pass_fds=(emit_fd, port[0]) if port else (emit_fd,), preexec_fn=in_child,
                                    cwd=cwd))

    def wait(self):
        status = self.proc.wait()
        return status if status >= 0 else 128 - status


class WarmChild:
    """The program forked from the zygote, which has bcc imported already (see zygote.py)."""

    SOCKET = os.path.join(HERE, "zygote.sock")

    def __init__(self, replies, pid, lifeline):
        self.replies, self.pid, self.lifeline = replies, pid, lifeline

    @classmethod
    def spawn(cls, path, filename, argv, cwd, cg, out_w, err_w, emit_fd, port, cancelled=lambda: False):
        """The child, or None: no zygote, one that did not answer within ZYGOTE_SECONDS (it is killed and
        the next run starts another), or `cancelled()` turned true while waiting for it."""
        conn = cls.connect()
        if conn is None:
            return None
        life_r, life_w = os.pipe()
        request = json.dumps({"path": path, "filename": filename, "argv": argv, "cwd": cwd, "cgroup": cg,
                              "port_lock": port and port[1]}).encode()
        deadline = time.monotonic() + ZYGOTE_SECONDS
        try:
            conn.settimeout(ZYGOTE_SECONDS)
            socket.send_fds(conn, [request], [out_w, err_w, emit_fd, life_r] + ([port[0]] if port else []))
            while not select.select([conn], [], [], TICK)[0] and not cancelled():
                if time.monotonic() > deadline:
                    raise TimeoutError
            # One buffered reader for both replies: a program that ends at once sends its status right behind its pid.
            replies = conn.makefile("rb")
            reply = b"" if cancelled() else replies.readline()
        except OSError:  # TimeoutError included
            cls.kill_zygote(conn)
            reply = b""
        finally:
            os.close(life_r)
        if not reply:
            os.close(life_w)
            conn.close()
            return None
        conn.settimeout(None)  # the exit status comes when the program ends, however long it runs
        return cls(replies, json.loads(reply)["pid"], life_w)

    @classmethod
    def kill_zygote(cls, conn):
        """A zygote that does not answer will not answer the next run either: end it (the peer of the
        connection, SO_PEERCRED) and remove its socket, so that the next run starts a fresh one."""
        try:
            pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.unlink(cls.SOCKET)

    @classmethod
    def connect(cls):
        for attempt in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(ZYGOTE_SECONDS)
            try:
                s.connect(cls.SOCKET)
                return s
            except OSError:
                s.close()
                if attempt == 0:
                    cls.start_zygote()
        return None

    @classmethod
    def start_zygote(cls):
        """Start it for the next runs; this run does not wait for bcc to import."""
        subprocess.Popen([sys.executable, os.path.join(HERE, "zygote.py"), cls.SOCKET], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        deadline = time.monotonic() + 0.2
        while not os.path.exists(cls.SOCKET) and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait(self):
        reply = self.replies.readline()
        os.close(self.lifeline)
        return json.loads(reply)["status"] if reply else 137


def open_data_channel(where, timeout=CHANNEL_SECONDS):
    """The host's data channel (a serial port) as a binary stream, or None: then the frames go over
    ssh, as they always can."""
    device = port_device(where.port)
    if device is None:
        return None
    deadline = time.monotonic() + timeout
    fd = None
    while fd is None:
        try:
            # One opener at a time: the run before may not have let go of the port yet.
            fd = os.open(device, os.O_RDWR | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                return None
            time.sleep(0.05)
    if not _answered(fd, where.token, deadline):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


def port_device(name, ports="/sys/class/virtio-ports"):
    """/dev/vportNpM for the serial port named `name`, or None if this machine has no such port."""
    try:
        entries = os.listdir(ports)
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(ports, entry, "name")) as f:
                if f.read().strip() == name:
                    return os.path.join("/dev", entry)
        except OSError:
            continue
    return None


def _answered(fd, token, deadline):
    """Say the token on the port once the host holds it, wait for the host's answer, and confirm it:
    from the confirmation on, the host reads the port; without it (no answer in time), ssh."""
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    while any(revents & select.POLLHUP for _, revents in poll.poll(0)):  # the host end is not connected yet
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    try:
        os.write(fd, token.encode() + b"\n")
    except OSError:
        return False
    said, answer = b"", protocol.channel_ack(token)
    while answer not in said:  # an answer meant for an earlier run may come first
        left = deadline - time.monotonic()
        if left <= 0 or not poll.poll(left * 1000):
            return False
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            continue
        except OSError:
            return False
        said = (said + data)[-4096:]
    try:
        os.write(fd, protocol.channel_open(token))
    except OSError:
        return False
    return True


def main():
    stream = sys.stdout.buffer
    line = sys.stdin.buffer.readline()
    try:
        header = protocol.RunHeader.decode(line)
    except (ValueError, TypeError) as e:
        try:
            key = str(json.loads(line).get("key", ""))
        except (ValueError, AttributeError):
            key = ""
        stream.write(protocol.control_frame(protocol.REFUSED, key=key, message=f"the lab VM's runner does not "
                                            f"understand this host's request ({e})", fix="restart the lab VM"))
        stream.write(protocol.control_frame(protocol.EXIT, key=key, status=2))
        stream.flush()
        return
    os.makedirs("/run/ebpf-lab", exist_ok=True)
    channel = open_data_channel(header.data_channel) if header.data_channel else None
    port = SharedPort(channel) if channel else None
    try:
        Supervisor(header, stream, port).run()
    finally:
        if port:
            port.remove()
    # Everything is reported (the exit frame is out). A normal interpreter exit would wait a second
    # for the stdin reader thread's lock on sys.stdin before finalizing: every run would end late.
    os._exit(0)


if __name__ == "__main__":
    main()
