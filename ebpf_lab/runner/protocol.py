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
    CONTROL     a control event: the hex MAC of its JSON (HMAC-SHA256 with the run's key, which only the
                host and the supervisor know), a space, JSON {"kind": ..., ...}; kinds below
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

Everything the guest sends is untrusted: the program runs as root, writes its own records to the data
channel, and could write any bytes there. So every frame decodes to a value or a ProtocolError within
bounded memory (`MAX_DECODED_BYTES` for the worst frame), and only control events signed with the run's
key count as the runner's: a program never sees the key (it is forked from the zygote, not from the
supervisor), so what it writes can pass for its own output and records, never for an exit or a limit.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import struct
import sys
import zlib
from dataclasses import asdict, dataclass, field

VERSION = 6

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
WORKLOAD = "workload"        # user, command, count, pids: a workload spec finished
TIMEOUT = "timeout"          # after: the run time was used up; the program was signalled
COMPILE_TIMEOUT = "compile_timeout"  # after: the program never got running within the compile limit
KILLED = "killed"            # after: SIGINT was not enough; everything in the run's cgroup was killed
LEFT_LOADED = "left_loaded"  # objects: BPF programs/maps created by the run still loaded after it
LIMIT = "limit"              # memory, pids (counts), memory_max, pids_max: the run met its cgroup limits
EXIT = "exit"                # status

# Limits shared by both sides.
MAX_LINE = 64 * 1024           # a longer output line is split into several frames
MAX_RECORD = 1024 * 1024       # emit() refuses a bigger record
# The guest cuts struct frames to about 256 KiB (one record may be up to MAX_RECORD) and to at most
# MAX_STRUCTS_PER_FRAME structs; a frame beyond either is not the runner's.
MAX_STRUCTS_BYTES = 2 * 1024 * 1024
MAX_STRUCTS_PER_FRAME = 4096
# What one frame may cost the host once decoded into Python objects (dicts, strings, lists): checked
# before a structs frame is unpacked, from its layout; a JSON frame is bounded by its length (MAX_RECORD).
MAX_DECODED_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 64                 # records nested deeper than this are refused (a reader would recurse)
DEFAULT_GRACE = 3.0            # seconds between SIGINT and SIGKILL
DEFAULT_COMPILE_TIMEOUT = 300.0


class ProtocolError(ValueError):
    """A frame that does not follow this protocol."""


class UnsignedControl(ProtocolError):
    """A control event without the run's signature: written by the program, not by the runner."""


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
    key: str = ""  # hex; signs the supervisor's control events (see control_frame)
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


class StructLayout:
    """A structs frame's layout, checked against its format: each field names a run of the format's values."""

    def __init__(self, layout: object) -> None:
        try:
            self.codec = struct.Struct(layout["format"])
            fields = [(str(name), int(count), str(kind)) for name, count, kind in layout["fields"]]
        except (TypeError, KeyError, ValueError, struct.error) as e:
            raise ProtocolError(f"bad struct layout: {e!r}"[:200]) from None
        if not 0 < self.codec.size <= MAX_RECORD:  # before a struct's worth of zeros is made below
            raise ProtocolError(f"a struct layout of {self.codec.size} bytes (a record is 1 to {MAX_RECORD})")
        zero = self.codec.unpack(bytes(self.codec.size))
        if sum(count for _, count, _ in fields) != len(zero) or any(count < 1 for _, count, _ in fields):
            raise ProtocolError("a struct layout whose fields do not match its format")
        i, self.bound = 0, sys.getsizeof({name: 0 for name, _, _ in fields})
        for name, count, kind in fields:
            values = zero[i:i + count]
            if kind == "text":
                if count != 1 or not isinstance(values[0], bytes):
                    raise ProtocolError(f"a text field {name!r} that is not a char array")
                # errors="replace" may widen each byte to a 2-byte character (U+FFFD)
                self.bound += sys.getsizeof("") + 2 * len(values[0]) + 28
            elif kind == "int":
                if any(isinstance(v, bytes) for v in values):
                    raise ProtocolError(f"a number field {name!r} over bytes")
                self.bound += 36 * count + (sys.getsizeof([0] * count) if count > 1 else 0)
            else:
                raise ProtocolError(f"a struct field of unknown kind {kind!r}")
            i += count
        self.fields = fields

    def decode(self, data: bytes) -> list[dict]:
        """The structs as dicts: char arrays as text up to their NUL, other arrays as lists."""
        n, rest = divmod(len(data), self.codec.size)
        if rest:
            raise ProtocolError(f"{len(data)} bytes of structs of {self.codec.size} bytes each")
        if n > MAX_STRUCTS_PER_FRAME or n * self.bound > MAX_DECODED_BYTES:
            raise ProtocolError(f"a structs frame of {n} structs (at most {MAX_STRUCTS_PER_FRAME}, and "
                                f"{MAX_DECODED_BYTES >> 20} MiB once decoded)")
        out = []
        for values in self.codec.iter_unpack(data):
            record, i = {}, 0
            for name, count, kind in self.fields:
                if kind == "text":
                    record[name] = values[i].split(b"\0", 1)[0].decode(errors="replace")
                elif count == 1:
                    record[name] = values[i]
                else:
                    record[name] = list(values[i:i + count])
                i += count
            out.append(record)
        return out


def decode_structs(layout: object, data: bytes) -> list[dict]:
    """The structs of a STRUCTS frame as dicts (ProtocolError for anything that is not one)."""
    return StructLayout(layout).decode(data)


def memory_of(value: object, max_depth: int = MAX_DEPTH) -> int:
    """About how many bytes `value` (decoded JSON or structs) holds, walked without recursion; ProtocolError
    if it nests deeper than `max_depth`."""
    total, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        total += sys.getsizeof(item)
        if isinstance(item, (list, dict)):
            if depth >= max_depth:
                raise ProtocolError(f"a record nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return total


def _inflate(packed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    data = inflater.decompress(packed, MAX_STRUCTS_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"a structs frame unpacks to more than {MAX_STRUCTS_BYTES} bytes")
    return data


MAC_CHARS = 32


def _mac(key: str, body: bytes) -> bytes:
    return hmac.new(bytes.fromhex(key), body, hashlib.sha256).hexdigest()[:MAC_CHARS].encode()


def new_key() -> str:
    """A fresh key for one run's control events."""
    return secrets.token_hex(32)


def control_frame(kind: str, *, key: str = "", **fields: object) -> bytes:
    """A control frame; signed when `key` is given (the supervisor's), plain otherwise (a program's note,
    which the supervisor checks and signs before it goes on)."""
    body = json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode()
    return frame(CONTROL, _mac(key, body) + b" " + body if key else body)


# The fields the host reads from control events, by kind, and the types they must have.
_CONTROL_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    STARTED: {"pid": (int,)},
    REFUSED: {"message": (str,), "fix": (str, type(None))},
    COMPILING: {"text": (str, type(None))},
    COMPILED: {"seconds": (int, float, type(None)), "ok": (bool, type(None))},
    EXCEPTION: {"type": (str,), "message": (str,), "traceback": (str, type(None))},
    TIMEOUT: {"after": (int, float)},
    COMPILE_TIMEOUT: {"after": (int, float)},
    KILLED: {"after": (int, float)},
    LEFT_LOADED: {"objects": (list,)},
    LIMIT: {"memory_max": (int,), "pids_max": (int,), "memory": (int,), "pids": (int,)},
    WORKLOAD: {"user": (str,), "error": (str, type(None)), "pids": (list,)},
    EXIT: {"status": (int, type(None))},
}


def _check_control(event: dict) -> dict:
    for name, types in _CONTROL_FIELDS.get(event["kind"], {}).items():
        value = event.get(name)
        if name in event and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            raise ProtocolError(f"a {event['kind']} event whose {name} is {type(value).__name__}")
    if event["kind"] == LIMIT and not ("memory_max" in event and "pids_max" in event):
        raise ProtocolError("a limit event without its limits")
    return event


def decode_frame(raw: bytes, key: str | None = None) -> tuple[bytes, object]:
    """(kind, value) for one frame without its newline: text for OUT/ERR, (name, [payload, ...]) for
    RECORDS and STRUCTS (RAW_STRUCTS decode as STRUCTS), a dict for CONTROL. Anything else, or a frame
    that would decode to more than MAX_DECODED_BYTES, raises ProtocolError. With `key`, a control event
    must carry the run's signature (UnsignedControl otherwise)."""
    try:
        return _decode(raw, key)
    except ProtocolError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, struct.error,
            zlib.error) as e:
        raise ProtocolError(f"bad {raw[:1]!r} frame: {e!r}"[:200]) from None


def _decode(raw: bytes, key: str | None) -> tuple[bytes, object]:
    kind, sep, payload = raw[:1], raw[1:2], raw[2:]
    if sep != b" ":
        raise ProtocolError(f"not a frame: {raw[:40]!r}")
    if kind in (OUT, ERR):
        return kind, payload.decode(errors="replace")
    if kind == RAW_STRUCTS:
        head, _, data = payload.partition(b"\n")
        name, layout, n = json.loads(head)
        if len(data) != n:
            raise ProtocolError(f"{len(data)} bytes of structs where the header says {n}")
        return STRUCTS, (_name(name), decode_structs(layout, data))
    if kind == STRUCTS:
        name, layout, data = json.loads(payload)
        if not isinstance(data, str):
            raise ProtocolError("a structs frame without its base64 data")
        return kind, (_name(name), decode_structs(layout, _inflate(base64.b64decode(data, validate=True))))
    if kind == RECORDS:
        obj = json.loads(payload)
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], list)):
            raise ProtocolError("a records frame needs [name, [payload, ...]]")
        memory_of(obj[1], MAX_DEPTH + 1)  # the depth check: the list itself is one level
        return kind, (obj[0], obj[1])
    if kind == CONTROL:
        body = payload
        if payload[:1] != b"{":
            mac, _, body = payload.partition(b" ")
            if key and not hmac.compare_digest(mac, _mac(key, body)):
                raise UnsignedControl("a control event with a signature that is not the run's")
        elif key:
            raise UnsignedControl("a control event without the run's signature")
        obj = json.loads(body)
        if not (isinstance(obj, dict) and isinstance(obj.get("kind"), str)):
            raise ProtocolError("a control event needs a kind")
        return kind, _check_control(obj)
    raise ProtocolError(f"unknown frame kind {kind!r}")


def _name(name: object) -> str:
    if not isinstance(name, str):
        raise ProtocolError("a structs frame whose name is not text")
    return name
