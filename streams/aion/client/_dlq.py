"""The dead-letter topic: read the commands the engine refused, re-submit them after a fix.

The engine dead-letters a command it cannot decode or process to ``<prefix>.dlq`` with the
original key and bytes, and headers naming the reason (``aion.reason``) and where it came
from (``aion.source.topic``, ``aion.source.partition``, ``aion.source.offset``). ``aion dlq``
and the web console (``aion console``) both read and replay through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from ..common.settings import Settings
from ..common.topics import TopicNames
from ._errors import DeliveryError, TopicMissingError

__all__ = ["DeadLetter", "read_dead_letters", "replay_dead_letters"]


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def position(self) -> str:
        """``PARTITION@OFFSET``: how ``aion dlq replay`` and the console name it."""
        return f"{self.partition}@{self.offset}"

    @property
    def reason(self) -> str:
        return self.headers.get("aion.reason", "")

    @property
    def source(self) -> str:
        """``topic[partition]@offset`` of the command record that was dead-lettered."""
        h = self.headers
        return (f"{h.get('aion.source.topic', '?')}[{h.get('aion.source.partition', '?')}]"
                f"@{h.get('aion.source.offset', '?')}")

    def row(self) -> dict[str, object]:
        return {
            "dlq": self.position,
            "time": datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "key": self.key.decode(errors="replace") if self.key else None,
            "source": self.source,
            "reason": self.reason,
            "replayed_from": self.headers.get("aion.replayed.from"),
        }


def read_dead_letters(settings: Settings, timeout: float = 10.0) -> list[DeadLetter]:
    """Every record on the dead-letter topic, oldest first per partition (blocking; run it in a
    thread from asyncio). Raises :class:`~aion.client.TopicMissingError` when the topic is missing."""
    topic = TopicNames(settings.topic_prefix).dlq
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.dlq-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise TopicMissingError(f"dead-letter topic {topic!r} does not exist; run `aion topics create`")
        ends = {}
        for p in tmd.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[DeadLetter] = []
        done: set[int] = set()
        while len(done) < len(ends):
            msg = consumer.poll(timeout)
            if msg is None:
                break
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
                    continue
                raise DeliveryError(f"reading {topic}: {err}")
            headers = {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
            out.append(DeadLetter(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value(), headers))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        consumer.close()


def replay_dead_letters(settings: Settings, letters: Iterable[DeadLetter], timeout: float = 30.0) -> int:
    """Re-submit ``letters`` to the commands topic with their original key and bytes (a header
    ``aion.replayed.from`` names the dead letter); returns how many were sent. Blocking. Raises
    :class:`~aion.client._errors.DeliveryError` when the broker did not acknowledge them all."""
    producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "acks": "all"})
    commands = TopicNames(settings.topic_prefix).commands
    n = 0
    for d in letters:
        producer.produce(commands, key=d.key, value=d.value, headers=[("aion.replayed.from", d.position.encode())])
        n += 1
    left = producer.flush(timeout)
    if left:
        raise DeliveryError(f"{left} re-submitted commands were not acknowledged by the broker")
    return n
