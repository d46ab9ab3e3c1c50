"""Confluent Schema Registry wire format (magic 0 + 4-byte schema id), with the mock registry."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from aion import model as m
from aion.codec import Codec, CodecError

from codec_samples import COMMAND_BODIES, EVENT_BODIES, REPLY, TASKS, command, event


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://aion-tests"})


def test_round_trips_in_registry_mode() -> None:
    codec = Codec(registry_url="mock://aion-tests")
    assert codec.uses_registry
    for body in EVENT_BODIES:
        assert codec.decode_event(codec.encode_event(event(body))) == event(body)
    for body in COMMAND_BODIES:
        assert codec.decode_command(codec.encode_command(command(body))) == command(body)
    for task in TASKS:
        assert codec.decode_task(codec.encode_task(task)) == task
    assert codec.decode_reply(codec.encode_reply(REPLY)) == REPLY
    key = m.EventKey("wf", 9)
    assert codec.decode_event_key(codec.encode_event_key(key)) == key


def test_wire_format_is_magic_zero_and_registered_schema_id(registry: SchemaRegistryClient) -> None:
    codec = Codec(registry_client=registry, subject_prefix="tenant1")
    data = codec.encode_event(event(EVENT_BODIES[0]))
    latest = registry.get_latest_version("tenant1.events-value")
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == latest.schema_id
    assert json.loads(latest.schema.schema_str)["name"] == "aion.events.Event"
    key = codec.encode_event_key(m.EventKey("wf", 1))
    assert int.from_bytes(key[1:5], "big") == registry.get_latest_version("tenant1.events-key").schema_id
    codec.encode_command(command(m.GetResult()))
    codec.encode_reply(REPLY)
    codec.encode_task(TASKS[0])
    assert set(registry.get_subjects()) == {
        "tenant1.events-value", "tenant1.events-key", "tenant1.commands-value",
        "tenant1.replies-value", "tenant1.activity-tasks-value",
    }


def test_another_codec_on_the_same_registry_decodes(registry: SchemaRegistryClient) -> None:
    data = Codec(registry_client=registry).encode_command(command(COMMAND_BODIES[2]))
    assert Codec(registry_client=registry).decode_command(data) == command(COMMAND_BODIES[2])


def test_registry_schema_that_is_not_ours_resolves_or_fails_typed(registry: SchemaRegistryClient) -> None:
    # A schema registered by someone else, under an unrelated subject: decodes only if it is
    # an Event schema that resolves to ours; here it is a foreign record -> CodecError.
    other = registry.register_schema("other-value", Schema(json.dumps(
        {"type": "record", "name": "x.Other", "fields": [{"name": "a", "type": "string"}]}), "AVRO"))
    with pytest.raises(CodecError, match="expected aion.events.Event but the bytes hold x.Other"):
        Codec(registry_client=registry).decode_event(b"\x00" + other.to_bytes(4, "big") + b"\x02a")


def test_unknown_schema_id_is_a_codec_error_naming_it(registry: SchemaRegistryClient) -> None:
    with pytest.raises(CodecError) as err:
        Codec(registry_client=registry).decode_event(b"\x00\x00\x00\x30\x39" + b"\x00" * 8)
    assert err.value.schema_id == 12345
    assert "12345" in str(err.value)


def test_registry_bytes_without_a_registry_say_what_to_configure(registry: SchemaRegistryClient) -> None:
    data = Codec(registry_client=registry).encode_event(event(EVENT_BODIES[3]))
    with pytest.raises(CodecError, match="registry_url"):
        Codec().decode_event(data)


def test_registry_codec_still_decodes_single_object_encoding(registry: SchemaRegistryClient) -> None:
    data = Codec().encode_event(event(EVENT_BODIES[4]))
    assert Codec(registry_client=registry).decode_event(data) == event(EVENT_BODIES[4])


def test_garbage_after_a_registry_header_is_a_codec_error(registry: SchemaRegistryClient) -> None:
    codec = Codec(registry_client=registry)
    data = codec.encode_event(event(EVENT_BODIES[0]))
    for n in range(5, len(data)):
        with pytest.raises(CodecError):
            codec.decode_event(data[:n])
