"""The codec's compiled writers and readers (``_fastwrite.py``, ``_fastread.py``) encode and
decode exactly as its fastavro way does: the same bytes and the same values for every model
type, full and minimal, and for wrong values or damaged bytes the same error."""

from __future__ import annotations

import random
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aion import model as m
from aion.codec import Codec, CodecError

from codec_samples import COMMAND_BODIES, EVENT_BODIES, REPLY, TASKS, T, command, event, minimal
from test_codec_roundtrip import _events


@pytest.fixture(scope="module")
def slow() -> Codec:
    """A codec without its compiled paths: fastavro's way only (as before they existed)."""
    c = Codec()
    c._fast_enc.clear()
    c._fast_dec.clear()
    return c


def _values() -> list[tuple[str, typing.Any]]:
    out: list[tuple[str, typing.Any]] = []
    for b in EVENT_BODIES:
        out += [("event", event(b)), ("event", event(minimal(b), seq=2**40, command_id=None))]
    for b in COMMAND_BODIES:
        out += [("command", command(b)), ("command", command(minimal(b), reply_to=None))]
    out += [("task", t) for t in TASKS] + [("task", minimal(t)) for t in TASKS]
    out += [("reply", REPLY), ("reply", minimal(REPLY))]
    out += [("event_key", m.EventKey("order-1", s)) for s in (1, 63, 64, 2**40, -1, 2**63 - 1, -(2**63))]
    out += [("deployment", m.DeploymentRecord(m.TypeRouted("OrderWorkflow", "v2", T)))]
    return out


def test_every_kind_has_a_compiled_writer_and_reader(codec: Codec) -> None:
    kinds = {"event", "event_key", "command", "reply", "task", "deployment"}
    assert set(codec._fast_enc) == kinds and set(codec._fast_dec) == kinds


@pytest.mark.parametrize("kind,value", _values(), ids=lambda v: v if isinstance(v, str) else type(getattr(v, "body", v)).__name__)
def test_same_bytes_and_values_as_fastavro(codec: Codec, slow: Codec, kind: str, value: typing.Any) -> None:
    raw = getattr(codec, f"encode_{kind}")(value)
    assert raw == getattr(slow, f"encode_{kind}")(value)
    assert getattr(codec, f"decode_{kind}")(raw) == getattr(slow, f"decode_{kind}")(raw) == value


@settings(max_examples=200, deadline=None)
@given(ev=_events)
def test_same_bytes_as_fastavro_property(codec: Codec, slow: Codec, ev: m.Event) -> None:
    raw = codec.encode_event(ev)
    assert raw == slow.encode_event(ev)
    assert codec.decode_event(raw) == ev


def _outcome(fn: typing.Callable[[typing.Any], typing.Any], arg: typing.Any) -> object:
    try:
        return fn(arg)
    except CodecError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("kind", ["event", "command"])
def test_damaged_bytes_give_the_same_answer(codec: Codec, slow: Codec, kind: str) -> None:
    rnd = random.Random(7)
    raws = [getattr(codec, f"encode_{kind}")(v) for k, v in _values() if k == kind]
    decode, decode_slow = getattr(codec, f"decode_{kind}"), getattr(slow, f"decode_{kind}")
    for _ in range(3000):
        raw = bytearray(rnd.choice(raws))
        for _ in range(rnd.randint(1, 3)):
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
        if rnd.random() < 0.2:
            raw = raw[:rnd.randrange(len(raw))]
        data = bytes(raw)
        assert _outcome(decode, data) == _outcome(decode_slow, data)


@pytest.mark.parametrize("value", [
    event(m.TimerFired("t"), seq=2**63),  # beyond Avro long
    event(m.FireTimer("r", "t", 1)),  # a command body in an event
    event(m.TimerFired(b"t")),  # type: ignore[arg-type]  # bytes for a string
    event(m.ActivityCompleted("a", 1, m.Payload("x", "text"))),  # type: ignore[arg-type]  # str for bytes
    event(m.ActivityCompleted("a", 1.5, m.Payload("x", b""))),  # type: ignore[arg-type]  # float for a long
    event(m.SearchAttributesUpserted({1: "x"})),  # type: ignore[dict-item]  # a map key that is no string
    event(m.WorkflowCompleted(None)),  # null for a record
], ids=["overflow", "union member", "bytes for string", "str for bytes", "float for long", "map key",
        "null for record"])
def test_wrong_values_give_the_same_answer(codec: Codec, slow: Codec, value: m.Event) -> None:
    assert _outcome(codec.encode_event, value) == _outcome(slow.encode_event, value)
