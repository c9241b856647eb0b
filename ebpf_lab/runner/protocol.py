"""The wire format between the host's `Run` and the guest's supervisor, in one place.

Stdlib only: this file is shipped into the VM beside the guest code and imported by both sides.

host -> guest (supervisor stdin): one JSON header line (see `RunHeader`), then control lines
    (`INTERRUPT`, `KILL`). EOF means the host is gone: the supervisor stops the program.
guest -> host (supervisor stdout): frames, one per line: a one-byte kind, a space, a payload.
    OUT / ERR   a line the program wrote to stdout / stderr (long lines arrive split)
    RECORD      a structured record from `emit(name, payload)`: JSON {"name", "payload"}
    CONTROL     a control event: JSON {"kind": ..., ...}, kinds below
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

VERSION = 2

OUT, ERR, RECORD, CONTROL = b"o", b"e", b"r", b"c"

# Host -> guest commands.
INTERRUPT, KILL = "INT", "KILL"

# Control events. The supervisor sends STARTED first and EXIT last; the rest in between.
STARTED = "started"          # pid, warm, cgroup
REFUSED = "refused"          # message, fix: the run could not start (e.g. unknown workload user)
COMPILING = "compiling"      # text: bcc's BPF() was called with this C source
COMPILED = "compiled"        # seconds: BPF() returned (C compiled, programs loaded)
ATTACHING = "attaching"      # how: an attach_* call began (the workload waits until it returns)
ATTACHED = "attached"        # how: an attach_* call returned
LOADED = "loaded"            # name: load_func() loaded a program (e.g. for a tail call), not attached yet
RUNNING = "running"          # reason: the --timeout clock starts (attached, loaded or first output)
EXCEPTION = "exception"      # type, message, traceback: the program died of an exception
WORKLOAD = "workload"        # user, command, count: a workload spec finished
TIMEOUT = "timeout"          # after: the run time was used up; the program was signalled
COMPILE_TIMEOUT = "compile_timeout"  # after: the program never got running within the compile limit
KILLED = "killed"            # after: SIGINT was not enough; everything in the run's cgroup was killed
LEFT_LOADED = "left_loaded"  # objects: BPF programs/maps created by the run still loaded after it
LIMIT = "limit"              # memory, pids (counts), memory_max, pids_max: the run met its cgroup limits
EXIT = "exit"                # status

# Limits shared by both sides.
MAX_LINE = 64 * 1024           # a longer output line is split into several frames
MAX_RECORD = 1024 * 1024       # emit() refuses a bigger record
DEFAULT_GRACE = 3.0            # seconds between SIGINT and SIGKILL
DEFAULT_COMPILE_TIMEOUT = 300.0


class ProtocolError(ValueError):
    """A frame that does not follow this protocol."""


@dataclass
class WorkloadSpec:
    """Run `command` `count` times as `user` (at `rate` per second, or back to back)."""

    user: str
    count: int
    command: list[str]
    rate: float | None = None


@dataclass
class RunHeader:
    source: str
    filename: str = "<cell>"
    argv: list[str] = field(default_factory=list)
    timeout: float | None = None
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT
    grace: float = DEFAULT_GRACE
    workload: list[WorkloadSpec] = field(default_factory=list)
    version: int = VERSION

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> "RunHeader":
        obj = json.loads(line)
        if obj.get("version") != VERSION:
            raise ProtocolError(f"runner protocol {obj.get('version')} != {VERSION}")
        obj["workload"] = [WorkloadSpec(**w) for w in obj.get("workload", [])]
        return cls(**obj)


def check_seconds(value: float | None, what: str) -> float | None:
    """None, or a positive finite number of seconds; anything else is refused with ValueError."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return seconds


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + b" " + payload + b"\n"


def control_frame(kind: str, **fields: object) -> bytes:
    return frame(CONTROL, json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode())


def decode_frame(raw: bytes) -> tuple[bytes, object]:
    """(kind, value) for one frame without its newline: text for OUT/ERR, a dict for RECORD/CONTROL."""
    kind, sep, payload = raw[:1], raw[1:2], raw[2:]
    if sep != b" ":
        raise ProtocolError(f"not a frame: {raw[:40]!r}")
    if kind in (OUT, ERR):
        return kind, payload.decode(errors="replace")
    if kind in (RECORD, CONTROL):
        try:
            obj = json.loads(payload)
        except ValueError as e:
            raise ProtocolError(f"bad JSON in a {kind.decode()} frame: {e}") from None
        if kind == RECORD and not (isinstance(obj, dict) and isinstance(obj.get("name"), str) and "payload" in obj):
            raise ProtocolError("a record needs a string name and a payload")
        if kind == CONTROL and not (isinstance(obj, dict) and isinstance(obj.get("kind"), str)):
            raise ProtocolError("a control event needs a kind")
        return kind, obj
    raise ProtocolError(f"unknown frame kind {kind!r}")
