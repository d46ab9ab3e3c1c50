"""How messages name their writer schema, and what happens to bytes that are not ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import load_schema, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from aion import model as m
from aion.codec import Codec, CodecError

from codec_samples import EVENT_BODIES, TASKS, command, event

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
ROOTS = {
    "event": "aion.events.Event",
    "event_key": "aion.events.EventKey",
    "command": "aion.commands.Command",
    "reply": "aion.commands.Reply",
    "task": "aion.tasks.TaskMessage",
}


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) written from the Avro specification, independently of the codec."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty if fp & 1 else 0)
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def _canonical(name: str) -> str:
    return to_parsing_canonical_form(load_schema(str(SCHEMAS / f"{name}.avsc")))


@pytest.mark.parametrize("kind", sorted(ROOTS))
def test_single_object_header_is_marker_and_schema_fingerprint(codec: Codec, kind: str) -> None:
    samples = {
        "event": lambda: codec.encode_event(event(EVENT_BODIES[0])),
        "event_key": lambda: codec.encode_event_key(m.EventKey("wf", 1)),
        "command": lambda: codec.encode_command(command(m.GetResult())),
        "reply": lambda: codec.encode_reply(m.Reply("c", "wf", "ACCEPTED")),
        "task": lambda: codec.encode_task(TASKS[1]),
    }
    data = samples[kind]()
    canonical = _canonical(ROOTS[kind])
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert data[2:10].hex() == fastavro_fingerprint(canonical, "CRC-64-AVRO")
    assert codec.fingerprint(kind) == data[2:10]


def test_crc64_avro_reference_implementation_matches_spec_vectors() -> None:
    # Fingerprints (as Java longs) of primitive schemas from Avro's own test data.
    def as_long(v: int) -> int:
        return v - (1 << 64) if v >= 1 << 63 else v

    assert as_long(crc64_avro(b'"null"')) == 7195948357588979594
    assert as_long(crc64_avro(b'"boolean"')) == -6970731678124411036


def test_schema_json_is_self_contained_and_documents_timestamps(codec: Codec) -> None:
    schema = json.loads(codec.schema_json("event"))
    recorded = next(f for f in schema["fields"] if f["name"] == "recorded_at_ms")
    assert recorded["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    # Any Avro library can use it alone: fastavro re-parses it without the other files.
    from fastavro import parse_schema

    parse_schema(schema)


def test_unknown_fingerprint_is_a_codec_error_naming_it(codec: Codec) -> None:
    data = bytearray(codec.encode_event(event(EVENT_BODIES[1])))
    data[2:10] = bytes.fromhex("0123456789abcdef")
    with pytest.raises(CodecError) as err:
        codec.decode_event(bytes(data))
    assert err.value.fingerprint == "0123456789abcdef"
    assert "0123456789abcdef" in str(err.value) and "extra_schemas_dirs" in str(err.value)


def test_bytes_of_another_kind_are_refused(codec: Codec) -> None:
    data = codec.encode_command(command(m.GetResult()))
    with pytest.raises(CodecError, match="expected aion.events.Event but the bytes hold aion.commands.Command"):
        codec.decode_event(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01\x00", b"hello world, not avro", b"\xff" * 40, b'{"workflow_id": "x"}'],
    ids=["empty", "marker-only", "short-header", "text", "ff", "json"],
)
def test_garbage_is_a_codec_error(codec: Codec, data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_event(data)


def test_every_truncation_is_a_codec_error(codec: Codec) -> None:
    data = codec.encode_event(event(EVENT_BODIES[0]))
    for n in range(len(data)):
        with pytest.raises(CodecError):
            codec.decode_event(data[:n])


def test_trailing_bytes_are_a_codec_error(codec: Codec) -> None:
    data = codec.encode_event(event(m.TimerFired("t")))
    with pytest.raises(CodecError, match="bytes left"):
        codec.decode_event(data + b"\x00")


def test_decode_accepts_bytearray_and_memoryview(codec: Codec) -> None:
    ev = event(EVENT_BODIES[2])
    data = codec.encode_event(ev)
    assert codec.decode_event(bytearray(data)) == ev
    assert codec.decode_event(memoryview(data)) == ev
    with pytest.raises(CodecError, match="expected bytes"):
        codec.decode_event("not bytes")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200), flip=st.integers(min_value=0, max_value=10_000))
def test_random_bodies_behind_a_valid_header_never_crash(codec: Codec, body: bytes, flip: int) -> None:
    header = b"\xc3\x01" + codec.fingerprint("event")
    try:
        codec.decode_event(header + body)
    except CodecError:
        pass
    # And a single corrupted byte in a real record either decodes or is a CodecError.
    data = bytearray(codec.encode_event(event(EVENT_BODIES[flip % len(EVENT_BODIES)])))
    i = 10 + flip % (len(data) - 10)
    data[i] ^= 0x5A
    try:
        codec.decode_event(bytes(data))
    except CodecError:
        pass
