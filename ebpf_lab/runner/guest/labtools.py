"""Runs in the lab VM: small helpers that chapter programs and self-checks share.

Importable from any program the lab runs (`from labtools import syscall_numbers`), and
callable from the host as `python3 labtools.py COMMAND ...` (see `Lab.guest_tool`).
"""
import ctypes
import functools
import json
import os
import platform
import re
import socket
import struct
import subprocess
import sys

TRACE_BUFFER = "/sys/kernel/tracing/trace"


@functools.lru_cache(maxsize=None)
def _all_syscall_numbers(header="asm/unistd.h"):
    # The C preprocessor resolves <asm/unistd.h> the way the kernel's own build does on every
    # architecture (x86-64 lists numbers directly; arm64 goes through asm-generic and __NR3264_
    # aliases), so this is right wherever the lab runs, unlike one hard-coded header or table.
    defines = subprocess.run(["clang", "-E", "-dM", "-include", header, "-x", "c", "/dev/null"],
                             capture_output=True, text=True, check=True).stdout
    names = re.findall(r"#define __NR_(\w+) ", defines)
    probe = f"#include <{header}>\n" + "".join(f"NR {n} __NR_{n}\n" for n in names)
    expanded = subprocess.run(["clang", "-E", "-P", "-x", "c", "-"], input=probe,
                              capture_output=True, text=True, check=True).stdout
    numbers = {}
    for line in expanded.splitlines():
        parts = line.split(None, 2)
        # Names that are not plain numbers on this architecture (e.g. __NR_syscalls' helpers) are skipped.
        if len(parts) == 3 and parts[0] == "NR" and parts[2].isdigit():
            numbers[parts[1]] = int(parts[2])
    return numbers


def syscall_numbers(*names, header="asm/unistd.h"):
    """This kernel's syscall numbers, by name (all of them if no name is given).

    >>> syscall_numbers("openat", "execve")   # on x86-64; arm64 says {'openat': 56, 'execve': 221}
    {'openat': 257, 'execve': 59}

    `header` is for looking at another architecture's table, e.g. "asm-generic/unistd.h" (arm64, riscv).
    """
    table = _all_syscall_numbers(header)
    if not names:
        return dict(table)
    missing = [n for n in names if n not in table]
    if missing:
        raise KeyError(f"no syscall named {', '.join(missing)} on this architecture")
    return {n: table[n] for n in names}


def clear_trace_buffer():
    """Empty the kernel's trace buffer, which is global and keeps lines no one read yet
    (trace_print would replay an earlier program's leftovers as if they were new)."""
    with open(TRACE_BUFFER, "w"):
        pass


def send_udp(count, port=9, host="127.0.0.1", payload=b"x"):
    """Send `count` UDP datagrams (to the discard port by default) and return how many went out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return sum(s.sendto(payload, (host, port)) == len(payload) for _ in range(count))


def send_and_receive_udp(count, timeout=2.0):
    """Send `count` datagrams to a socket listening on 127.0.0.1; (sent, received): what an XDP
    program on lo let through (a listener, so no ICMP 'port unreachable' comes back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(timeout)
        sent = send_udp(count, port=rx.getsockname()[1])
        received = 0
        try:
            while received < sent:
                rx.recv(16)
                received += 1
        except socket.timeout:
            pass
        return sent, received


_SYSCALLS = {"x86_64": {"bpf": 321, "capset": 126}, "aarch64": {"bpf": 280, "capset": 91}}
BPF_PROG_TEST_RUN = 10
PR_SET_KEEPCAPS = 8
CAP_BPF = 39
_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(name, *args):
    rc = _libc.syscall(_SYSCALLS[platform.machine()][name], *args)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}(): {os.strerror(err)}")
    return rc


def prog_test_run(prog_fd):
    """Run a loaded program once with BPF_PROG_TEST_RUN in this task (a raw tracepoint program
    sees this process as `current`); its return value."""
    # union bpf_attr, the 'test' member: prog_fd, retval, then sizes and pointers left zero.
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<I", attr, 0, prog_fd)
    _syscall("bpf", BPF_PROG_TEST_RUN, attr, ctypes.sizeof(attr))
    return struct.unpack_from("<I", attr, 4)[0]


def in_child(prepare, fn, *args):
    """fn(*args) in a forked child after prepare() (entering a namespace, becoming another user), so
    that this process keeps its own; the child's JSON-able result comes back through a pipe, its
    exception as a RuntimeError here. A fork is far cheaper than starting another Python in the VM."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            prepare()
            os.write(w, json.dumps({"result": fn(*args)}).encode())
            code = 0
        except BaseException as e:  # the parent reports it; a forked child must never return
            os.write(w, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        answer = json.loads(f.read() or '{"error": "the child died"}')
    os.waitpid(pid, 0)
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer["result"]


def prog_test_run_as(prog_fd, uid, gid=None):
    """prog_test_run from a child that is `uid` and `gid` (default: the same number) but keeps
    CAP_BPF, so that bpf_get_current_uid_gid() in the program sees that user and group."""
    gid = uid if gid is None else gid
    if (uid, gid) == (os.getuid(), os.getgid()):
        return prog_test_run(prog_fd)

    def become_user_keeping_cap_bpf():
        _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        # After the switch only the permitted set survives: make CAP_BPF effective again.
        header = struct.pack("<Ii", 0x20080522, 0)
        bit = struct.pack("<III", 0, 0, 0) + struct.pack("<III", 1 << (CAP_BPF - 32), 1 << (CAP_BPF - 32), 0)
        _syscall("capset", header, bit)

    try:
        return in_child(become_user_keeping_cap_bpf, prog_test_run, prog_fd)
    except RuntimeError as e:
        raise RuntimeError(f"running the program as uid {uid}, gid {gid} failed: {e}") from None


BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 13, 14, 15


class _ProgInfo(ctypes.Structure):  # struct bpf_prog_info: the leading fields we need, in uapi order
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16)]


class _GetFdById(ctypes.Structure):
    _fields_ = [("prog_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _GetInfoByFd(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def _bpf(cmd, attr):
    return _syscall("bpf", cmd, ctypes.byref(attr), ctypes.sizeof(attr))


def call_targets(xlated, kallsyms_text):
    """{imm: kernel function} for the helper calls of translated bytecode: after loading, a call's
    imm is an offset from __bpf_call_base, so the targets are named through /proc/kallsyms."""
    offsets = {int.from_bytes(xlated[i + 4:i + 8], "little", signed=True)
               for i in range(0, len(xlated) - 7, 8) if xlated[i] == 0x85 and xlated[i + 1] >> 4 == 0}
    symbols, base = {}, None
    for line in kallsyms_text.splitlines():
        addr, _, name = line.split()[:3]
        symbols.setdefault(int(addr, 16), name)
        if name == "__bpf_call_base":
            base = int(addr, 16)
    return {o: symbols.get(base + o, "?") for o in offsets} if base is not None else {}


def prog_images(prog_id):
    """A loaded program's translated bytecode and JIT image, read from the kernel (Debian's bpftool
    cannot print JIT code: it is built without libbfd)."""
    try:
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, _GetFdById(prog_id=prog_id))
    except OSError:
        return {"error": f"no BPF program with id {prog_id}"}
    try:
        info = _ProgInfo()
        _bpf(BPF_OBJ_GET_INFO_BY_FD, _GetInfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)))
        jited = ctypes.create_string_buffer(info.jited_prog_len)
        xlated = ctypes.create_string_buffer(info.xlated_prog_len)
        again = _ProgInfo(jited_prog_len=info.jited_prog_len, xlated_prog_len=info.xlated_prog_len,
                          jited_prog_insns=ctypes.addressof(jited), xlated_prog_insns=ctypes.addressof(xlated))
        _bpf(BPF_OBJ_GET_INFO_BY_FD, _GetInfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(again),
                                                  info=ctypes.addressof(again)))
    finally:
        os.close(fd)
    with open("/proc/kallsyms") as f:
        calls = call_targets(xlated.raw, f.read())
    return {"id": info.id, "name": info.name.decode(), "tag": bytes(info.tag).hex(), "xlated": xlated.raw.hex(),
            "jited": jited.raw.hex(), "calls": {str(k): v for k, v in calls.items()}}


USER_PATH = "/usr/local/bin:/usr/bin:/bin"


def _as_user(user):
    """A preexec function that makes the child `user`, with their groups, and an environment for it."""
    import pwd

    entry = pwd.getpwnam(user)

    def become():
        os.initgroups(user, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    env = {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user, "PATH": USER_PATH, "LANG": "C.UTF-8"}
    return become, env, entry.pw_dir if os.path.isdir(entry.pw_dir) else "/"


def run_as(user, count, command):
    """Run `command` `count` times as `user`, one after the other; the pids it ran as."""
    become, env, cwd = _as_user(user)
    pids = []
    for _ in range(count):
        with subprocess.Popen(command, preexec_fn=become, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
            pids.append(proc.pid)
    return pids


def slow_open(user, delay, timeout=300.0):
    """`cat` a FIFO as `user`: its openat blocks until a writer comes, which comes `delay` seconds after
    cat is seen blocked in openat. That one openat takes at least `delay` however fast the machine is.
    {"pid": cat's pid, "blocked": seconds it waited in openat, measured here}."""
    import tempfile
    import time

    nr = syscall_numbers("openat")["openat"]
    folder = tempfile.mkdtemp(prefix="slow-open-")
    os.chmod(folder, 0o755)
    fifo = os.path.join(folder, "fifo")
    os.mkfifo(fifo, 0o644)
    become, env, cwd = _as_user(user)
    try:
        with subprocess.Popen(["/bin/cat", fifo], preexec_fn=become, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
            deadline = time.monotonic() + timeout
            while not _in_syscall(proc.pid, nr):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("cat never blocked opening the FIFO")
                time.sleep(0.01)
            started = time.monotonic()
            time.sleep(delay)
            os.close(os.open(fifo, os.O_WRONLY))  # cat's openat returns now; it reads EOF and ends
            blocked = time.monotonic() - started
        return {"pid": proc.pid, "blocked": blocked}
    finally:
        os.unlink(fifo)
        os.rmdir(folder)


def _in_syscall(pid, nr):
    """Is `pid` asleep in syscall `nr` waiting for a FIFO's other end (fs/pipe.c's wait_for_partner)?"""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        with open(f"/proc/{pid}/wchan") as f:
            waiting = f.read()
    except OSError:
        return False
    return bool(fields) and fields[0] == str(nr) and ("partner" in waiting or "pipe" in waiting)


def ringbuf_positions(map_id):
    """(consumer, producer): how far a ring buffer map's reader has read and its writers have written, in
    bytes since the map was created, read from the map's first two pages (mapped read-only, as a reader
    maps them). What went through a ring buffer, whoever read it."""
    import mmap

    fd = _bpf(BPF_MAP_GET_FD_BY_ID, _GetFdById(prog_id=map_id))
    try:
        page = mmap.PAGESIZE
        with mmap.mmap(fd, 2 * page, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            return struct.unpack_from("<Q", m, 0)[0], struct.unpack_from("<Q", m, page)[0]
    finally:
        os.close(fd)


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "syscall-numbers":  # [--generic] [NAME ...]
        header = "asm-generic/unistd.h" if args[:1] == ["--generic"] else "asm/unistd.h"
        names = [a for a in args if a != "--generic"]
        for name, number in sorted(syscall_numbers(*names, header=header).items(), key=lambda kv: kv[1]):
            print(number, name)
    elif command == "clear-trace":
        clear_trace_buffer()
    elif command == "send-udp":
        print(send_udp(int(args[0]), *(int(a) for a in args[1:2])))
    elif command == "prog-images":
        print(json.dumps(prog_images(int(args[0]))))
    elif command == "run-as":  # USER COUNT COMMAND...
        print(json.dumps(run_as(args[0], int(args[1]), args[2:])))
    elif command == "slow-open":  # USER DELAY
        print(json.dumps(slow_open(args[0], float(args[1]))))
    elif command == "ringbuf-positions":
        print(*ringbuf_positions(int(args[0])))
    elif command == "send-receive-udp":
        print(*send_and_receive_udp(int(args[0])))
    else:
        raise SystemExit(f"labtools: unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
