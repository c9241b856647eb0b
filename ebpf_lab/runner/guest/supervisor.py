"""Runs in the lab VM as root: supervises one BCC program for the host.

stdin  (host -> guest): a JSON header line with the program and its limits, then
       control lines: "INT" (interrupt), "KILL". EOF means the host is gone.
stdout (guest -> host): frames "<tag> <payload>\\n":  o/e = a stdout/stderr line,
       r = a record from emit(), c = a control event (JSON).

The program runs in its own process group and dies with this supervisor
(PR_SET_PDEATHSIG), so whatever way a run ends, its BPF objects are released.
"""
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_PDEATHSIG = 1
ATTACH_SETTLE_SECONDS = 0.3

out = sys.stdout.buffer
out_lock = threading.Lock()


def frame(tag, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    with out_lock:
        out.write(tag + b" " + payload + b"\n")
        out.flush()


def control(**event):
    frame(b"c", json.dumps(event))


class Supervisor:
    def __init__(self, header):
        self.header = header
        self.attached = threading.Event()
        self.last_attach = 0.0
        self.done = threading.Event()
        self.workdir = tempfile.mkdtemp(prefix="run-", dir="/run/ebpf-lab")
        self.child = None

    def start(self):
        path = os.path.join(self.workdir, "program.py")
        with open(path, "w") as f:
            f.write(self.header["source"])
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        emit_r, emit_w = os.pipe()
        self.child = WarmChild.spawn(path, self.header.get("filename", "<cell>"), self.workdir,
                                     out_w, err_w, emit_w) \
            or ColdChild.spawn(path, self.header.get("filename", "<cell>"), self.workdir, out_w, err_w, emit_w)
        for fd in (out_w, err_w, emit_w):
            os.close(fd)
        control(k="started", pid=self.child.pid, warm=isinstance(self.child, WarmChild))
        readers = [
            threading.Thread(target=self.pump_text, args=(os.fdopen(out_r, "rb"), b"o")),
            threading.Thread(target=self.pump_text, args=(os.fdopen(err_r, "rb"), b"e")),
            threading.Thread(target=self.pump_emit, args=(os.fdopen(emit_r, "rb"),)),
        ]
        for t in readers:
            t.daemon = True
            t.start()
        threading.Thread(target=self.read_host, daemon=True).start()
        if self.header.get("load"):
            threading.Thread(target=self.run_load, daemon=True).start()
        timeout = self.header.get("timeout")
        if timeout:
            threading.Thread(target=self.enforce_timeout, args=(timeout,), daemon=True).start()
        status = self.child.wait()
        self.done.set()
        self.signal_group(signal.SIGKILL)  # stragglers the program forked
        for t in readers:
            t.join(timeout=5)
        control(k="exit", status=status)

    def pump_text(self, pipe, tag):
        for line in pipe:
            frame(tag, line.rstrip(b"\n"))

    def pump_emit(self, pipe):
        for line in pipe:
            line = line.rstrip(b"\n")
            if line.startswith(b"c "):
                event = json.loads(line[2:])
                if event.get("k") == "attached":
                    self.last_attach = time.monotonic()
                    self.attached.set()
            with out_lock:
                out.write(line + b"\n")
            # Records arrive in bursts: flush once the burst is drained, not per record.
            if not pipe.peek(1):
                with out_lock:
                    out.flush()
        with out_lock:
            out.flush()

    def signal_group(self, sig):
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace):
        """SIGINT first so the program's own KeyboardInterrupt cleanup runs, then SIGKILL."""
        self.signal_group(signal.SIGINT)
        if not self.done.wait(grace):
            control(k="killed", after=grace)
            self.signal_group(signal.SIGKILL)

    def read_host(self):
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "INT":
                self.signal_group(signal.SIGINT)
            elif cmd == "KILL":
                self.signal_group(signal.SIGKILL)
        if not self.done.is_set():
            self.stop(self.header.get("grace", 3))  # the host went away

    def enforce_timeout(self, timeout):
        if not self.done.wait(timeout):
            control(k="timeout", after=timeout)
            self.stop(self.header.get("grace", 3))

    def run_load(self):
        """Exec commands as lab users once the program has attached its probes."""
        while not self.attached.wait(0.1):
            if self.done.is_set():
                return
        while time.monotonic() - self.last_attach < ATTACH_SETTLE_SECONDS:
            time.sleep(0.05)
        for spec in self.header["load"]:
            ran = 0
            for _ in range(spec["count"]):
                if self.done.is_set():
                    break
                subprocess.run(spec["command"], user=spec["user"], group=spec["user"], extra_groups=[],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                ran += 1
            control(k="load", user=spec["user"], command=spec["command"], count=ran)


class ColdChild:
    """The program in a fresh interpreter (used until the warm zygote is up)."""

    def __init__(self, proc):
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    def spawn(cls, path, filename, cwd, out_w, err_w, emit_w):
        libc = ctypes.CDLL(None, use_errno=True)

        def in_child():
            os.setsid()
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

        env = dict(os.environ, EBPF_LAB_EMIT_FD=str(emit_w), PYTHONUNBUFFERED="1")
        return cls(subprocess.Popen([sys.executable, "-u", os.path.join(HERE, "bootstrap.py"), path, filename],
                                    stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, env=env,
                                    pass_fds=(emit_w,), preexec_fn=in_child, cwd=cwd))

    def wait(self):
        status = self.proc.wait()
        return status if status >= 0 else 128 - status


class WarmChild:
    """The program forked from the zygote, which has bcc imported already (see zygote.py)."""

    SOCKET = os.path.join(HERE, "zygote.sock")

    def __init__(self, replies, pid, lifeline):
        self.replies, self.pid, self.lifeline = replies, pid, lifeline

    @classmethod
    def spawn(cls, path, filename, cwd, out_w, err_w, emit_w):
        conn = cls.connect()
        if conn is None:
            return None
        life_r, life_w = os.pipe()
        request = json.dumps({"path": path, "filename": filename, "cwd": cwd}).encode()
        socket.send_fds(conn, [request], [out_w, err_w, emit_w, life_r])
        os.close(life_r)
        # One buffered reader for both replies: a program that ends at once sends its status right behind its pid.
        replies = conn.makefile("rb")
        reply = replies.readline()
        if not reply:
            os.close(life_w)
            return None
        return cls(replies, json.loads(reply)["pid"], life_w)

    @classmethod
    def connect(cls):
        for attempt in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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


def main():
    header = json.loads(sys.stdin.readline())
    os.makedirs("/run/ebpf-lab", exist_ok=True)
    Supervisor(header).start()


if __name__ == "__main__":
    main()
