"""The latest events of the events topic, across its partitions (``aion console``'s live tail).

:class:`~aion.client.EventConsumer` follows the topic from an offset on; this reads the last
``limit`` records of each partition (a group-less consumer, assigned at ``end - limit``) and
returns the newest ``limit`` of them, by record time. It costs at most ``limit`` records per
partition, whatever the topic holds.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from ..codec import Codec
from ..common.settings import Settings
from ..common.topics import TopicNames
from ._errors import TopicMissingError
from ._events import EventRecord
from ._history import EventPartitionReader
from ..common.kafka import consume_available, consumer_config, fatal_or_log, private_group_id, watermarks

__all__ = ["read_recent_events"]


def read_recent_events(settings: Settings, limit: int = 50, *, codec: Codec | None = None,
                       workflow_id_prefix: str = "", timeout: float = 10.0) -> list[EventRecord]:
    """The newest ``limit`` events of ``<prefix>.events`` (tombstones left out), oldest first.

    Blocking (run it in a thread from asyncio). ``workflow_id_prefix`` keeps only the events
    of workflows whose id starts with it (among the last ``limit`` records of each partition).
    Raises :class:`~aion.client.TopicMissingError` when the events topic does not exist.
    """
    if limit <= 0:
        return []
    codec = codec or (Codec(registry_url=settings.schema_registry_url) if settings.schema_registry_url else Codec())
    topic = TopicNames(settings.topic_prefix).events
    c = Consumer(consumer_config(settings.confluent_config(), group_id=private_group_id(settings.topic_prefix, "recent"),
                                 client_id=f"{settings.topic_prefix}.recent", **{"fetch.wait.max.ms": 50}))
    try:
        md = c.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            raise TopicMissingError(f"events topic {topic!r} does not exist: create the topics first "
                                    f"(`aion topics create`), or check the topic prefix ({settings.topic_prefix!r})")
        ends: dict[int, int] = {}
        starts = []
        for p in sorted(tmd.partitions):
            low, high = watermarks(c, TopicPartition(topic, p), timeout)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, max(low, high - limit)))
        if not starts:
            return []
        c.assign(starts)
        out: list[EventRecord] = []
        remaining = set(ends)
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for m in fatal_or_log(consume_available(c, 1000, 0.05), f"recent events {topic}"):
                if m.offset() + 1 >= ends[m.partition()]:
                    remaining.discard(m.partition())
                if m.offset() >= ends[m.partition()] or m.value() is None:
                    continue
                try:
                    key = codec.decode_event_key(m.key())
                    if workflow_id_prefix and not key.workflow_id.startswith(workflow_id_prefix):
                        continue
                    event = codec.decode_event(m.value())
                except Exception:  # a foreign record on the topic: not an aion event
                    continue
                ts_type, ts = m.timestamp()
                out.append(EventRecord(m.partition(), m.offset(), key, event, ts if ts_type else None))
            # A transactional partition ends with a commit marker that is never delivered.
            for p in list(remaining):
                if EventPartitionReader.position(c, topic, p) >= ends[p]:
                    remaining.discard(p)
        out.sort(key=lambda r: (r.event.recorded_at_ms if r.event is not None else 0, r.partition, r.offset))
        return out[-limit:]
    finally:
        c.close()
