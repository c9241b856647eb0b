"""Whatever the VM sends, the host decodes it to a value or a ProtocolError within bounded memory, and only the
runner's signed control events count as the runner's (logic only; tests/vm/test_untrusted_guest.py sends the
same things from a real program in the VM)."""
from __future__ import annotations

import base64
import json
import sys
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf_lab.runner import protocol
from ebpf_lab.runner.run import Run

from .test_run_stream import fake_supervisor

KEY = protocol.new_key()
ONE_BYTE = {"format": "<B", "fields": [["b", 1, "int"]]}


def structs_frame(layout: dict, data: bytes) -> bytes:
    return protocol.structs_frame("ev", json.dumps(layout), data).rstrip(b"\n")


def raw_structs_frame(layout: dict, data: bytes) -> bytes:
    return b"".join(protocol.raw_structs_parts("ev", json.dumps(layout), [data])).rstrip(b"\n")


def decoding_peak(raw: bytes) -> tuple[int, object]:
    """Peak bytes allocated while decoding `raw`, and what came of it (a value or the exception)."""
    tracemalloc.start()
    try:
        result = protocol.decode_frame(raw)
    except Exception as e:  # noqa: BLE001 -- the test looks at which one
        result = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, result


def test_a_small_frame_of_a_million_tiny_structs_is_refused_before_it_is_unpacked():
    """11.7 KB of zlib on the wire used to unpack into ~2 M dicts (+392 MiB)."""
    raw = structs_frame(ONE_BYTE, bytes(protocol.MAX_STRUCTS_BYTES))
    assert len(raw) < 20_000
    peak, result = decoding_peak(raw)
    assert isinstance(result, protocol.ProtocolError) and "structs" in str(result)
    assert peak < protocol.MAX_STRUCTS_BYTES + 8 * 2**20


@pytest.mark.parametrize("layout", [
    ONE_BYTE,
    {"format": "<16s", "fields": [["text", 1, "text"]]},
    {"format": "<64Q", "fields": [["many", 64, "int"]]},
    {"format": "<" + "B" * 200, "fields": [[f"f{i}", 1, "int"] for i in range(200)]},
])
def test_the_biggest_frame_the_protocol_allows_costs_a_bounded_amount_to_decode(layout):
    size = protocol.StructLayout(layout).codec.size
    count = min(protocol.MAX_STRUCTS_PER_FRAME, protocol.MAX_STRUCTS_BYTES // size)
    per_record = protocol.StructLayout(layout).bound
    count = min(count, protocol.MAX_DECODED_BYTES // per_record)
    for raw in (structs_frame(layout, bytes(size * count)), raw_structs_frame(layout, bytes(size * count))):
        peak, result = decoding_peak(raw)
        assert not isinstance(result, Exception), result
        assert len(result[1][1]) == count
        assert peak < protocol.MAX_DECODED_BYTES + protocol.MAX_STRUCTS_BYTES + 8 * 2**20, peak
    one_more = structs_frame(layout, bytes(size * (count + 1)))
    if (count + 1) * size <= protocol.MAX_STRUCTS_BYTES:
        assert isinstance(decoding_peak(one_more)[1], protocol.ProtocolError)


@pytest.mark.parametrize("layout", [
    {"format": "<I", "fields": [["comm", 1, "text"]]},          # text over a number
    {"format": "<I", "fields": [["a", 1, "int"], ["b", 1, "int"]]},  # more fields than values
    {"format": "<II", "fields": [["a", 1, "int"]]},              # fewer
    {"format": "<4s", "fields": [["a", 1, "int"]]},              # a number over bytes
    {"format": "<I", "fields": [["a", 1, "blob"]]},              # an unknown kind
    {"format": "<I", "fields": [["a", 0, "int"], ["b", 1, "int"]]},
    {"format": "", "fields": []},
    {"format": "<1000000000x", "fields": []},                     # a billion bytes of padding
    {"format": "<2000000B", "fields": [["a", 2000000, "int"]]},   # over a record's size
    {"format": "<Z", "fields": []},
    {"format": 7, "fields": []},
    {"fields": []},
    ["<I"],
])
def test_a_layout_that_disagrees_with_its_format_is_a_protocol_error(layout):
    for raw in (structs_frame(layout, bytes(8)), raw_structs_frame(layout, bytes(8))):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_frame(raw)


def test_deeply_nested_records_are_a_protocol_error():
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_frame(protocol.records_frame("x", f"[{deep}]").rstrip(b"\n"))
    nested = "[" * (protocol.MAX_DEPTH + 1) + "]" * (protocol.MAX_DEPTH + 1)
    with pytest.raises(protocol.ProtocolError, match="nested"):
        protocol.decode_frame(protocol.records_frame("x", f"[{nested}]").rstrip(b"\n"))
    shallow = "[" * 10 + "]" * 10
    assert protocol.decode_frame(protocol.records_frame("x", f"[{shallow}]").rstrip(b"\n"))[0] == protocol.RECORDS


def test_control_events_count_only_with_the_runs_signature():
    signed = protocol.control_frame(protocol.EXIT, key=KEY, status=0).rstrip(b"\n")
    assert protocol.decode_frame(signed, KEY) == (protocol.CONTROL, {"kind": protocol.EXIT, "status": 0})
    unsigned = protocol.control_frame(protocol.EXIT, status=0).rstrip(b"\n")
    other_key = protocol.control_frame(protocol.EXIT, key=protocol.new_key(), status=0).rstrip(b"\n")
    tampered = signed.replace(b'"status":0', b'"status":1')
    for forged in (unsigned, other_key, tampered):
        with pytest.raises(protocol.UnsignedControl):
            protocol.decode_frame(forged, KEY)


@pytest.mark.parametrize("event", [
    {"kind": protocol.LIMIT, "memory": 1},                       # no limits: warnings() read memory_max
    {"kind": protocol.EXIT, "status": "0"},
    {"kind": protocol.COMPILED, "seconds": "fast"},
    {"kind": protocol.LEFT_LOADED, "objects": "all"},
    {"kind": protocol.EXCEPTION, "type": 1, "message": "m"},
])
def test_control_events_with_fields_of_the_wrong_kind_are_protocol_errors(event):
    raw = protocol.control_frame(key=KEY, **event).rstrip(b"\n")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_frame(raw, KEY)


def test_a_run_ignores_what_the_program_forged_and_says_so(tmp_path):
    def control(kind, **fields):
        return protocol.control_frame(kind, key=KEY, **fields).rstrip(b"\n")
    forged_exit = protocol.control_frame(protocol.EXIT, status=7).rstrip(b"\n")
    forged_limit = protocol.control_frame(protocol.LIMIT, memory=1).rstrip(b"\n")
    frames = [control(protocol.STARTED, pid=1), forged_exit, forged_limit, b"o after the forgeries",
              control(protocol.EXIT, status=0)]
    proc = fake_supervisor(frames)
    proc.stdin.close()
    run = Run(proc, "src", tmp_path / "log", key=KEY)
    run.wait(30)
    assert run.status == 0 and run.stdout == "after the forgeries"
    assert [e["kind"] for e in run.events] == [protocol.STARTED, protocol.EXIT]
    assert run.unsigned_controls == 2
    assert any("did not sign" in w for w in run.warnings())


def test_a_records_charge_is_what_it_holds_not_its_size_on_the_wire(tmp_path):
    """1 KiB of `{}` on the wire is ~20 KiB of dicts: the run's memory budget counts the dicts."""
    empty_dicts = protocol.records_frame("x", "[" + ",".join(["{}"] * 300) + "]").rstrip(b"\n")
    proc = fake_supervisor([empty_dicts] * 20 + [protocol.control_frame(protocol.EXIT, status=0).rstrip(b"\n")])
    proc.stdin.close()
    run = Run(proc, "src", tmp_path / "log", max_memory_bytes=256 * 1024)
    run.wait(30)
    assert run.record_count == 6000
    assert 0 < len(run.records) < 6000  # the budget dropped the oldest: dicts, not wire bytes, were counted
    held = sum(sys.getsizeof(r.payload) for r in run.records)
    assert held <= 256 * 1024


def frames_to_mutate() -> list[bytes]:
    event = {"format": "<IQ16s3H", "fields": [["pid", 1, "int"], ["ts", 1, "int"], ["comm", 1, "text"],
                                               ["ports", 3, "int"]]}
    one = bytes(range(36))
    return [
        structs_frame(event, one * 3), raw_structs_frame(event, one * 2),
        protocol.records_frame("ev", json.dumps([{"a": [1, 2, {"b": "c"}]}, 3, "x"])).rstrip(b"\n"),
        protocol.control_frame(protocol.LIMIT, key=KEY, memory=1, memory_max=2, pids_max=3).rstrip(b"\n"),
        protocol.control_frame(protocol.EXIT, status=0).rstrip(b"\n"),
        b"o some output", b"e some error",
    ]


def decodes_or_refuses(raw: bytes) -> None:
    tracemalloc.start()
    try:
        protocol.decode_frame(raw, KEY)
    except protocol.ProtocolError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < protocol.MAX_DECODED_BYTES + protocol.MAX_STRUCTS_BYTES + 4 * len(raw) + 8 * 2**20


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_decode_to_a_value_or_a_protocol_error(raw):
    decodes_or_refuses(raw)
    for kind in (protocol.STRUCTS, protocol.RAW_STRUCTS, protocol.RECORDS, protocol.CONTROL):
        decodes_or_refuses(kind + b" " + raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(frames_to_mutate()), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                     max_size=8), st.integers(0, 10_000))
def test_any_mutation_of_a_valid_frame_decodes_or_is_refused(raw, flips, cut):
    mutated = bytearray(raw)
    for position, value in flips:
        if mutated:
            mutated[position % len(mutated)] = value
    decodes_or_refuses(bytes(mutated))
    decodes_or_refuses(bytes(mutated[:cut % (len(mutated) + 1)]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
                    max_leaves=50),
       st.text(max_size=10), st.sampled_from(["format", "fields", "kind", "status", "memory_max"]))
def test_any_json_in_any_frame_kind_decodes_or_is_refused(value, name, field):
    text = json.dumps(value)
    decodes_or_refuses(protocol.records_frame(name, text).rstrip(b"\n"))
    decodes_or_refuses(protocol.STRUCTS + b" " + json.dumps([name, {field: value}, "AAAA"]).encode())
    decodes_or_refuses(protocol.RAW_STRUCTS + b" " + json.dumps([name, value, 4]).encode() + b"\n\0\0\0\0")
    body = json.dumps({"kind": "exit", field: value}).encode()  # a "kind" that is not text, too
    decodes_or_refuses(protocol.CONTROL + b" " + protocol._mac(KEY, body) + b" " + body)


def test_a_zlib_bomb_is_refused_at_the_limit():
    bomb = base64.b64encode(zlib.compress(bytes(protocol.MAX_STRUCTS_BYTES * 8), 9)).decode()
    raw = protocol.STRUCTS + b" " + json.dumps(["ev", ONE_BYTE, bomb]).encode()
    peak, result = decoding_peak(raw)
    assert isinstance(result, protocol.ProtocolError)
    assert peak < 2 * protocol.MAX_STRUCTS_BYTES + 8 * 2**20


def test_the_supervisor_passes_on_a_programs_notes_signed_and_drops_what_only_it_may_say(guest_import):
    supervisor = guest_import("supervisor")
    header = protocol.RunHeader(source="", key=KEY)
    sup = supervisor.Supervisor.__new__(supervisor.Supervisor)
    sup.header, sup.records_flow = header, False
    sup.clock = supervisor.RunClock(None, 300)
    forwarded = []
    sup.forward = lambda data, output: forwarded.append(data)
    sup.report_running = lambda reason: None
    for kind, fields in [(protocol.EXIT, {"status": 0}), (protocol.LIMIT, {"memory": 1}),
                         (protocol.TIMEOUT, {"after": 1}), (protocol.STARTED, {"pid": 1}), ("nonsense", {})]:
        sup.note_control(protocol.control_frame(kind, **fields).rstrip(b"\n"))
    sup.note_control(b"c [not a note]")
    assert forwarded == []
    sup.note_control(protocol.control_frame(protocol.COMPILED, seconds=1.5, ok=True, extra="dropped").rstrip(b"\n"))
    assert len(forwarded) == 1
    assert protocol.decode_frame(forwarded[0].rstrip(b"\n"), KEY) == (
        protocol.CONTROL, {"kind": protocol.COMPILED, "seconds": 1.5, "ok": True})
