"""Every event, command, task and reply type survives encode -> decode unchanged."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aion import model as m
from aion.codec import Codec, CodecError

from codec_samples import COMMAND_BODIES, EVENT_BODIES, FAIL, REPLY, TASKS, command, event, minimal


def _ids(objs: list[typing.Any]) -> list[str]:
    return [type(o).__name__ for o in objs]


def _assert_all_fields_non_default(obj: typing.Any, path: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}"
        default = (
            f.default if f.default is not dataclasses.MISSING
            else f.default_factory() if f.default_factory is not dataclasses.MISSING
            else dataclasses.MISSING
        )
        assert value is not None, f"{where} is None in the sample"
        if default is not dataclasses.MISSING and not dataclasses.is_dataclass(default):
            assert value != default, f"{where} has its default value in the sample"
        if dataclasses.is_dataclass(value):
            if type(value) is m.Failure and f.name == "cause":
                continue  # the chain ends somewhere
            _assert_all_fields_non_default(value, where)
        if isinstance(value, list) and f.name != "non_retryable_error_types":
            assert value, f"{where} is empty in the sample"


def test_samples_cover_every_type_with_non_default_values() -> None:
    assert set(_ids(EVENT_BODIES)) == {t.__name__ for t in m.EVENT_TYPES}
    assert set(_ids(COMMAND_BODIES)) == {t.__name__ for t in m.COMMAND_TYPES}
    assert set(_ids(TASKS)) == {t.__name__ for t in m.TASK_TYPES}
    for obj in [*EVENT_BODIES, *COMMAND_BODIES, *TASKS, REPLY, event(EVENT_BODIES[0]), command(COMMAND_BODIES[0])]:
        _assert_all_fields_non_default(obj, type(obj).__name__)


@pytest.mark.parametrize("body", EVENT_BODIES, ids=_ids(EVENT_BODIES))
def test_event_round_trip(codec: Codec, body: typing.Any) -> None:
    ev = event(body)
    back = codec.decode_event(codec.encode_event(ev))
    assert back == ev
    assert type(back.body) is type(body)


@pytest.mark.parametrize("body", EVENT_BODIES, ids=_ids(EVENT_BODIES))
def test_event_round_trip_minimal(codec: Codec, body: typing.Any) -> None:
    ev = event(minimal(body), seq=1, command_id=None)
    back = codec.decode_event(codec.encode_event(ev))
    assert back == ev
    assert back.command_id is None


@pytest.mark.parametrize("body", COMMAND_BODIES, ids=_ids(COMMAND_BODIES))
def test_command_round_trip(codec: Codec, body: typing.Any) -> None:
    for cmd in (command(body), command(minimal(body), reply_to=None)):
        back = codec.decode_command(codec.encode_command(cmd))
        assert back == cmd
        assert type(back.body) is type(body)


@pytest.mark.parametrize("task", TASKS, ids=_ids(TASKS))
def test_task_round_trip(codec: Codec, task: typing.Any) -> None:
    for t in (task, minimal(task)):
        back = codec.decode_task(codec.encode_task(t))
        assert back == t
        assert type(back) is type(t)


def test_reply_round_trip(codec: Codec) -> None:
    for r in (REPLY, minimal(REPLY)):
        assert codec.decode_reply(codec.encode_reply(r)) == r


def test_event_key_round_trip(codec: Codec) -> None:
    key = m.EventKey("order-ü-1", 2**40)
    assert codec.decode_event_key(codec.encode_event_key(key)) == key
    assert event(EVENT_BODIES[0]).key == codec.decode_event_key(codec.encode_event_key(event(EVENT_BODIES[0]).key))


def test_event_keys_are_deterministic_bytes(codec: Codec) -> None:
    # Compaction collapses a re-written (workflow_id, seq) only if the key bytes are identical.
    a = codec.encode_event_key(m.EventKey("wf-1", 3))
    assert a == codec.encode_event_key(m.EventKey("wf-1", 3)) == Codec().encode_event_key(m.EventKey("wf-1", 3))
    assert a != codec.encode_event_key(m.EventKey("wf-1", 4))


def test_timestamps_stay_integer_milliseconds(codec: Codec) -> None:
    ev = event(m.TimerStarted(timer_id="t", fire_at_ms=1_700_000_060_000, duration_ms=60_000))
    back = codec.decode_event(codec.encode_event(ev))
    assert type(back.recorded_at_ms) is int and back.recorded_at_ms == ev.recorded_at_ms
    assert type(back.body.fire_at_ms) is int and back.body.fire_at_ms == 1_700_000_060_000
    cmd = command(m.FireTimer("run-1", "t", 42))
    assert codec.decode_command(codec.encode_command(cmd)).sent_at_ms == cmd.sent_at_ms


def test_nested_failure_chain_round_trips(codec: Codec) -> None:
    back = codec.decode_event(codec.encode_event(event(m.WorkflowFailed(FAIL)))).body.failure
    depth = 0
    while back is not None:
        depth, back = depth + 1, back.cause
    assert depth == 3


def test_encode_rejects_wrong_values_with_codec_error(codec: Codec) -> None:
    with pytest.raises(CodecError, match="Event"):
        codec.encode_event(event(m.TimerFired("t"), seq=2**63))  # beyond Avro long
    with pytest.raises(CodecError, match="expected one of"):
        codec.encode_event(event(m.FireTimer("r", "t", 1)))  # a command body in an event
    with pytest.raises(CodecError):
        codec.encode_task(m.Payload("x", b""))  # type: ignore[arg-type]


# ---------------------------------------------------------------- property-based

_long = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_text = st.text(max_size=20)
_payload = st.builds(m.Payload, content_type=_text, data=st.binary(max_size=64))
_failure = st.deferred(
    lambda: st.builds(
        m.Failure, type=_text, message=_text, details=st.none() | _payload,
        non_retryable=st.booleans(), stack=_text, cause=st.none() | _failure,
    )
)
_bodies = st.one_of(
    st.builds(m.WorkflowFailed, failure=_failure),
    st.builds(m.ActivityCompleted, activity_id=_text, attempt=_long, result=_payload),
    st.builds(
        m.ActivityScheduled, activity_id=_text, activity_type=_text, input=st.lists(_payload, max_size=3), task_queue=_text,
        retry_policy=st.builds(
            m.RetryPolicy, initial_interval_ms=_long, backoff_coefficient=st.floats(allow_nan=False),
            maximum_interval_ms=st.none() | _long, maximum_attempts=_long, non_retryable_error_types=st.lists(_text, max_size=3),
        ),
        timeouts=st.builds(m.ActivityTimeouts, st.none() | _long, st.none() | _long, st.none() | _long, st.none() | _long),
    ),
    st.builds(m.SearchAttributesUpserted, attributes=st.dictionaries(_text, _text, max_size=4)),
    st.builds(m.TimerStarted, timer_id=_text, fire_at_ms=_long, duration_ms=_long, name=_text),
)
_events = st.builds(
    m.Event, workflow_id=_text, seq=_long, run_id=_text, recorded_at_ms=_long, body=_bodies, command_id=st.none() | _text,
)


@settings(max_examples=200, deadline=None)
@given(ev=_events)
def test_event_round_trip_property(codec: Codec, ev: m.Event) -> None:
    assert codec.decode_event(codec.encode_event(ev)) == ev


@settings(max_examples=100, deadline=None)
@given(
    cmd=st.builds(
        m.Command, command_id=_text, workflow_id=_text, sent_at_ms=_long, reply_to=st.none() | _text,
        body=st.one_of(
            st.builds(m.ChildWorkflowResult, run_id=_text, child_workflow_id=_text, outcome=_text,
                      result=st.none() | _payload, failure=st.none() | _failure),
            st.builds(m.SignalWorkflow, signal_name=_text, args=st.lists(_payload, max_size=3), signal_id=_text, run_id=st.none() | _text),
        ),
    )
)
def test_command_round_trip_property(codec: Codec, cmd: m.Command) -> None:
    assert codec.decode_command(codec.encode_command(cmd)) == cmd
