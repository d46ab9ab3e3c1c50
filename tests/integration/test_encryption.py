"""Payload encryption through engine and activity worker processes on the real broker: the code
sees plaintext, every topic holds ciphertext, a process without the key gets a clear error."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from aion.client import Client
from aion.converter import DataConverter
from aion.encryption import EncryptingConverter, keys_from_env, new_key
from aion.exceptions import AionError

SECRETS = (b"zebra-7731", b"orchid-4412")


def raw_values(settings, prefix: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Every record value of every topic under ``prefix`` (read_uncommitted: aborted ones too)."""
    c = Consumer({**settings.confluent_config(), "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
    try:
        md = c.list_topics(timeout=10)
        tps = []
        for name, t in md.topics.items():
            if name.startswith(prefix):
                for p in t.partitions:
                    low, high = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                    if high > low:
                        tps.append((TopicPartition(name, p, low), high))
        out: list[bytes] = []
        for tp, high in tps:
            c.assign([tp])
            while True:
                msgs = c.consume(500, 1.0)
                out += [m.value() or b"" for m in msgs if m.error() is None]
                if not msgs or msgs[-1].offset() + 1 >= high:
                    break
        return out
    finally:
        c.close()


async def test_payloads_are_ciphertext_on_every_topic_and_plaintext_to_the_code(make_cluster, settings):  # type: ignore[no-untyped-def]
    keys = f"k2:{new_key()},k1:{new_key()}"
    cluster = make_cluster()
    cluster.env["AION_PAYLOAD_KEYS"] = keys
    cluster.engine()
    cluster.activities()
    conv = EncryptingConverter(keys_from_env({"AION_PAYLOAD_KEYS": keys}) or [])
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                                  converter=conv)
    try:
        h = await client.start_workflow("SecretErrand", "zebra-7731", id="enc-1")
        await h.signal("code_word", "orchid-4412")
        assert await h.result(timeout=90) == "Hello, zebra-7731/orchid-4412!"
        values = raw_values(settings, settings.topic_prefix)
        assert any(b"binary/encrypted;key=k2" in v for v in values)
        leaks = [v[:80] for v in values if any(s in v for s in SECRETS)]
        assert not leaks, leaks  # events, commands, replies, activity tasks, tables' changelogs
    finally:
        await client.close()

    plain = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                                 converter=DataConverter())
    try:
        with pytest.raises(AionError, match="binary/encrypted"):
            await plain.get_workflow_handle("enc-1").result(timeout=30)
    finally:
        await plain.close()
