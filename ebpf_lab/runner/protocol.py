"""The wire format between the host's `Run` and the guest's supervisor, in one place.

Stdlib only: this file is shipped into the VM beside the guest code and imported by both sides.

host -> guest (supervisor stdin): one JSON header line (see `RunHeader`), then control lines
    (`INTERRUPT`, `KILL`). EOF means the host is gone: the supervisor stops the program.
guest -> host (supervisor stdout): frames, one per line: a one-byte kind, a space, a payload.
    OUT / ERR   a line the program wrote to stdout / stderr (long lines arrive split)
    RECORDS     consecutive records from `emit(name, payload)` with the same name, batched:
                JSON [name, [payload, ...]] (one frame carries up to ~60 KiB of records)
    STRUCTS     the same for ctypes structs (BCC events) sent raw: JSON [name, layout, base64 of
                the zlib-compressed structs' bytes back to back]; `decode_structs` makes them dicts
    RAW_STRUCTS the same uncompressed, for a link that does not encrypt (the data channel below):
                JSON [name, layout, n], a newline, then n bytes of structs and a newline. Over ssh,
                compressing costs the guest less CPU than encrypting the raw bytes would; on the data
                channel, sending them as they are costs least.
    CONTROL     a control event: JSON {"kind": ..., ...}, kinds below
Output lines keep the order the program wrote them in, the records of one process the order they
were emitted in, and control events come in order with both (see runner/guest/pump.py); a record
and an output line made close together may arrive either way round (they travel through
different channels).

The frames travel over ssh (the supervisor's stdout), or, when the header names a data channel,
over that serial port of the VM, which the host holds open for the run: the supervisor writes the
channel's token and a newline, the host answers `channel_ack(token)`, the supervisor confirms with
`channel_open(token)`, and every frame then goes that way, ending with EXIT (ssh still carries the
header, the control lines and the link's life). The program writes its records to that port
itself, in whole frames between the supervisor's. A supervisor that does not hear the answer in
time confirms nothing and keeps the frames on stdout; the host reads the port only once it has the
confirmation, and stdout if that speaks first.
"""
from __future__ import annotations

import base64
import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field

VERSION = 5

OUT, ERR, RECORDS, STRUCTS, RAW_STRUCTS, CONTROL = b"o", b"e", b"r", b"s", b"b", b"c"


# Inside the VM, the supervisor answers each control frame the program sends with this, once the
# program's earlier output is forwarded (see runner/guest/pump.py).
NOTE_ACK = b"k"
# A program that writes its records to the data channel itself sends this and waits for NOTE_ACK:
# then everything it sent through the supervisor before is on the port.
SYNC = b"y\n"

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
MAX_STRUCTS_BYTES = 64 * 1024 * 1024  # a structs frame may unpack to this much at most
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
class DataChannel:
    """The serial port (its name in the guest) the run's frames may take, and the token that names the run."""

    port: str
    token: str


def channel_ack(token: str) -> bytes:
    """The host's answer on a data channel to the run's token: the port is this run's now."""
    return f"ok {token}\n".encode()


def channel_open(token: str) -> bytes:
    """The supervisor's confirmation on a data channel, once it heard the answer: its frames follow on the port."""
    return f"open {token}\n".encode()


@dataclass
class RunHeader:
    source: str
    filename: str = "<cell>"
    argv: list[str] = field(default_factory=list)
    timeout: float | None = None
    compile_timeout: float = DEFAULT_COMPILE_TIMEOUT
    grace: float = DEFAULT_GRACE
    workload: list[WorkloadSpec] = field(default_factory=list)
    data_channel: DataChannel | None = None
    version: int = VERSION

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> "RunHeader":
        obj = json.loads(line)
        if obj.get("version") != VERSION:
            raise ProtocolError(f"runner protocol {obj.get('version')} != {VERSION}")
        obj["workload"] = [WorkloadSpec(**w) for w in obj.get("workload", [])]
        if obj.get("data_channel") is not None:
            obj["data_channel"] = DataChannel(**obj["data_channel"])
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


def records_frame(name: str, payloads: str) -> bytes:
    """A RECORDS frame; `payloads` is the JSON text of the list of payloads."""
    return frame(RECORDS, f"[{json.dumps(name)},{payloads}]".encode())


def structs_frame(name: str, layout_json: str, data: bytes) -> bytes:
    """A STRUCTS frame: `data` is the structs' bytes back to back, `layout_json` their layout as JSON."""
    # Events are mostly zeros (the unused ends of char arrays): level 1 shrinks them for little CPU.
    packed = base64.b64encode(zlib.compress(data, 1))
    return frame(STRUCTS, f"[{json.dumps(name)},{layout_json},\"".encode() + packed + b'"]')


def raw_structs_parts(name: str, layout_json: str, structs: list[bytes]) -> list[bytes]:
    """A RAW_STRUCTS frame as buffers to send in one go: its header line, the structs as they are, a newline."""
    n = sum(map(len, structs))
    return [RAW_STRUCTS + f" [{json.dumps(name)},{layout_json},{n}]\n".encode(), *structs, b"\n"]


def raw_length(header_line: bytes) -> int:
    """How many bytes follow a RAW_STRUCTS frame's header line (without its newline), the final newline included."""
    try:
        n = json.loads(header_line[2:])[2]
    except (ValueError, TypeError, IndexError, KeyError):
        raise ProtocolError(f"bad raw structs header: {header_line[:60]!r}") from None
    if not isinstance(n, int) or not 0 <= n <= MAX_STRUCTS_BYTES:
        raise ProtocolError(f"a raw structs frame of {n!r} bytes")
    return n + 1


def decode_structs(layout: dict, data: bytes) -> list[dict]:
    """The structs of a STRUCTS frame as dicts: char arrays as text up to their NUL, other arrays as lists."""
    fields = [(name, count, kind) for name, count, kind in layout["fields"]]
    out = []
    for values in struct.iter_unpack(layout["format"], data):
        record, i = {}, 0
        for name, count, kind in fields:
            if kind == "text":
                record[name] = values[i].split(b"\0", 1)[0].decode(errors="replace")
            elif count == 1:
                record[name] = values[i]
            else:
                record[name] = list(values[i:i + count])
            i += count
        out.append(record)
    return out


def _inflate(packed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    data = inflater.decompress(packed, MAX_STRUCTS_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"a structs frame unpacks to more than {MAX_STRUCTS_BYTES} bytes")
    return data


def control_frame(kind: str, **fields: object) -> bytes:
    return frame(CONTROL, json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode())


def decode_frame(raw: bytes) -> tuple[bytes, object]:
    """(kind, value) for one frame without its newline: text for OUT/ERR, (name, [payload, ...]) for
    RECORDS and STRUCTS (RAW_STRUCTS decode as STRUCTS), a dict for CONTROL."""
    kind, sep, payload = raw[:1], raw[1:2], raw[2:]
    if sep != b" ":
        raise ProtocolError(f"not a frame: {raw[:40]!r}")
    if kind in (OUT, ERR):
        return kind, payload.decode(errors="replace")
    if kind == RAW_STRUCTS:
        head, _, data = payload.partition(b"\n")
        try:
            name, layout, n = json.loads(head)
            if len(data) != n:
                raise ValueError(f"{len(data)} bytes of structs where the header says {n}")
            return STRUCTS, (name, decode_structs(layout, data))
        except (ValueError, TypeError, KeyError, struct.error) as e:
            raise ProtocolError(f"bad raw structs frame: {e}") from None
    if kind == STRUCTS:
        try:
            name, layout, data = json.loads(payload)
            return kind, (name, decode_structs(layout, _inflate(base64.b64decode(data, validate=True))))
        except (ValueError, TypeError, KeyError, struct.error, zlib.error) as e:
            raise ProtocolError(f"bad structs frame: {e}") from None
    if kind in (RECORDS, CONTROL):
        try:
            obj = json.loads(payload)
        except ValueError as e:
            raise ProtocolError(f"bad JSON in a {kind.decode()} frame: {e}") from None
        if kind == RECORDS:
            if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], list)):
                raise ProtocolError("a records frame needs [name, [payload, ...]]")
            return kind, (obj[0], obj[1])
        if not (isinstance(obj, dict) and isinstance(obj.get("kind"), str)):
            raise ProtocolError("a control event needs a kind")
        return kind, obj
    raise ProtocolError(f"unknown frame kind {kind!r}")
