"""``aion.codec.event_reader`` (the rebuild's one-pass event reader) decodes exactly as
``Codec.decode_event`` does: the same value for every event type, full and minimal, and for
damaged bytes the same value or the same error."""

from __future__ import annotations

import random

import pytest

from aion.codec import Codec, CodecError, event_reader

from codec_samples import EVENT_BODIES, event, minimal


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.mark.parametrize("body", EVENT_BODIES + [minimal(b) for b in EVENT_BODIES],
                         ids=lambda b: type(b).__name__)
def test_same_value_as_the_codec(codec: Codec, body: object) -> None:
    read = event_reader(codec)
    assert read is not codec.decode_event  # the compiled reader, not the fallback
    for ev in (event(body), event(body, seq=2**40, command_id=None)):
        raw = codec.encode_event(ev)
        assert read(raw) == codec.decode_event(raw) == ev


def _outcome(fn, raw: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return fn(raw)
    except CodecError as exc:
        return ("error", type(exc).__name__, str(exc))


def test_damaged_bytes_give_the_codecs_answer(codec: Codec) -> None:
    read = event_reader(codec)
    rnd = random.Random(7)
    raws = [codec.encode_event(event(b)) for b in EVENT_BODIES]
    for _ in range(3000):
        raw = bytearray(rnd.choice(raws))
        for _ in range(rnd.randint(1, 3)):
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
        if rnd.random() < 0.2:
            raw = raw[:rnd.randrange(len(raw))]
        data = bytes(raw)
        assert _outcome(read, data) == _outcome(codec.decode_event, data)
