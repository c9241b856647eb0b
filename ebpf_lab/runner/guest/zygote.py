"""Runs in the lab VM: a warm Python with bcc already imported that forks one child per program.

Starting Python and importing bcc costs ~0.6 s under software emulation; a fork costs
milliseconds. A supervisor connects to the Unix socket, passes the program's stdout,
stderr and emit channel plus a lifeline pipe and, with a data channel, its port (SCM_RIGHTS), and gets back the child's pid
and, when it ends, its exit status. The child joins the run's cgroup before anything
else, so `cgroup.kill` reaches it and everything it starts. When the supervisor dies
its end of the lifeline closes, and the child kills its whole process group.
"""
import io
import json
import os
import signal
import socket
import sys
import threading
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bcc  # noqa: E402,F401 -- the point of this process: imported once, inherited by every child
import bootstrap  # noqa: E402
import cgroup  # noqa: E402


REQUEST_SECONDS = 5


def serve(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    srv.bind(tmp)
    os.rename(tmp, path)
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        # Anyone root in the VM can connect: one that says nothing, or nonsense, must not stop the next run.
        conn.settimeout(REQUEST_SECONDS)
        fds = []
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 5)
            request = json.loads(msg)
            if len(fds) not in (4, 5) or not isinstance(request, dict):
                raise ValueError("not a request")
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            continue
        conn.settimeout(None)
        pid = os.fork()
        if pid == 0:
            srv.close()
            conn.close()
            try:
                child(request, fds)  # ends the process itself (bootstrap.run exits)
            except BaseException:  # noqa: BLE001 -- never back into this loop, a second zygote
                traceback.print_exc()
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            # The supervisor stopped waiting (a stop, or its patience ran out): the child's lifeline is
            # closed, so it ends itself; this zygote serves the next run.
            conn.close()
            threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
            continue
        threading.Thread(target=report_exit, args=(conn, pid), daemon=True).start()


def report_exit(conn, pid):
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        conn.sendall(json.dumps({"status": code if code >= 0 else 128 - code}).encode() + b"\n")
    except OSError:
        pass  # the supervisor is gone
    finally:
        conn.close()


def child(request, fds):
    out, err, emit_fd, lifeline, *port_fd = fds
    if request.get("cgroup"):
        cgroup.join(request["cgroup"])
    os.setsid()
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    # Unbuffered like `python -u`: a plain print() reaches the host at once, as in a terminal.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True, line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True, line_buffering=True)
    os.environ["PYTHONUNBUFFERED"] = "1"  # and the same for Python programs it starts
    os.chdir(request["cwd"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=watch_lifeline, args=(lifeline,), daemon=True).start()
    port = (port_fd[0], request["port_lock"]) if port_fd else None
    bootstrap.run(request["path"], request["filename"], request.get("argv", []), emit_fd, port)


def watch_lifeline(fd):
    while os.read(fd, 1):
        pass
    os.killpg(0, signal.SIGKILL)  # the supervisor is gone


if __name__ == "__main__":
    serve(sys.argv[1])
