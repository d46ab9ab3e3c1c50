"""Following workflow events: :class:`EventConsumer`, a consumer group on ``<prefix>.events``.

Any Kafka consumer can read the events topic: the key is the Avro ``EventKey
{workflow_id, seq}``, the value an Avro ``Event`` (both single-object encoded, or in the
Confluent wire format with a schema registry), a ``null`` value is a tombstone written when
retention retired the workflow. ``EventConsumer`` is that consumer, done once:

```python
from aion.client import EventConsumer

with EventConsumer("billing", bootstrap_servers="127.0.0.1:9092", topic_prefix="aion",
                   event_types=["WorkflowCompleted"], from_beginning=True) as events:
    for rec in events:                  # blocks; commits after each batch is processed
        print(rec.workflow_id, rec.seq, rec.type, rec.event.body)
```

Delivery is at least once: offsets are committed for records the application has finished
with (the records of the previous ``poll``, or everything yielded so far by the iterator, at
its next fetch), so a restarted consumer of the same group resumes after them and may see the
last unfinished batch again. Make projections idempotent, e.g. by keeping the highest ``seq``
applied per workflow. A workflow's events are in seq order within its partition, but a seq
written twice (an engine re-appended after a crash) can appear again later with the same
content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_STORED, Consumer, KafkaError, KafkaException, TopicPartition

from ..codec import Codec, partition_for
from ..common.access import AUTHORIZATION_CODES, KAFKA_LOG, AccessWatch, authorization_error, fetch_metadata
from ..common.settings import Settings
from ..common.topics import TopicNames
from ..model import EVENT_TYPES, Event, EventKey
from ._errors import ConsumerGroupActiveError
from ._history import KeyFilter
from ..common.kafka import consumer_config, private_group_id

__all__ = ["EventConsumer", "EventRecord", "ConsumerGroupActiveError", "EVENT_TYPE_NAMES"]

log = logging.getLogger(__name__)

#: The names accepted by ``event_types`` (``Event.type``): WorkflowStarted, ActivityCompleted, ...
EVENT_TYPE_NAMES: tuple[str, ...] = tuple(t.__name__ for t in EVENT_TYPES)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One record of the events topic: where it is, its key, and the decoded event.

    ``event`` is None for a tombstone (the workflow's history was retired by retention); only
    delivered with ``EventConsumer(include_tombstones=True)``.
    """

    partition: int
    offset: int
    key: EventKey
    event: Event | None
    timestamp_ms: int | None = None

    @property
    def workflow_id(self) -> str:
        return self.key.workflow_id

    @property
    def seq(self) -> int:
        return self.key.seq

    @property
    def type(self) -> str | None:
        """The event type name (``WorkflowCompleted``, ...), None for a tombstone."""
        return self.event.type if self.event is not None else None


def _resolve_settings(settings: Settings | None, bootstrap_servers: str | None, topic_prefix: str | None) -> Settings:
    overrides: dict[str, Any] = {}
    if bootstrap_servers:
        overrides["bootstrap_servers"] = bootstrap_servers
    if topic_prefix:
        overrides["topic_prefix"] = topic_prefix
    if settings is None:
        return Settings.from_env(**overrides)
    return settings.replace(**overrides) if overrides else settings


def _check_types(event_types: Iterable[str] | None) -> frozenset[str] | None:
    if event_types is None:
        return None
    types = frozenset(event_types)
    unknown = sorted(types - set(EVENT_TYPE_NAMES))
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(unknown)}; the event types are: "
                         f"{', '.join(EVENT_TYPE_NAMES)}")
    return types


class EventConsumer:
    """A consumer of workflow events in the consumer group ``group_id`` (confluent-kafka).

    - ``group_id``: the group whose committed offsets this consumer resumes from and commits
      to; None reads without a group (nothing is committed, e.g. ``aion events tail``).
    - ``from_beginning``: where to start when the group has no committed offset (or without
      a group): the first retained event (True) or only new events (False).
    - ``workflow_id``: only this workflow's events (the consumer then reads only the one
      partition the workflow lives on); ``event_types``: only these types (``Event.type``).
    - ``include_tombstones``: also deliver retention tombstones (``record.event is None``).
    - ``settings`` / ``bootstrap_servers`` / ``topic_prefix``: where (default: ``AION_*``).
    - ``config``: extra confluent-kafka consumer settings. The consumer reads committed
      records only (``isolation.level=read_committed``): the engine writes in transactions and
      an aborted transaction's records stay in the log.

    Not thread-safe; one consumer per thread (or use :meth:`stream` from asyncio).
    """

    def __init__(
        self,
        group_id: str | None,
        *,
        settings: Settings | None = None,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        workflow_id: str | None = None,
        event_types: Iterable[str] | None = None,
        from_beginning: bool = False,
        include_tombstones: bool = False,
        codec: Codec | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = _resolve_settings(settings, bootstrap_servers, topic_prefix)
        self.group_id = group_id
        self.topic = TopicNames(self.settings.topic_prefix).events
        self.workflow_id = workflow_id
        self.event_types = _check_types(event_types)
        self.include_tombstones = include_tombstones
        url = self.settings.schema_registry_url
        self.codec = codec or (Codec(registry_url=url) if url else Codec())
        self._keys = KeyFilter(self.codec, workflow_id) if workflow_id is not None else None
        #: Counters: records read, delivered, skipped by the filters, undecodable.
        self.stats = {"read": 0, "delivered": 0, "filtered": 0, "undecodable": 0}
        #: Next offset per partition of the records returned so far (what commit() commits).
        self._positions: dict[int, int] = {}
        reset = "earliest" if from_beginning else "latest"
        conf = consumer_config(
            self.settings.confluent_config(),
            group_id=group_id or private_group_id(self.settings.topic_prefix, "events"),
            client_id=f"{self.settings.topic_prefix}.events.{group_id or 'tail'}",
            **{"auto.offset.reset": reset},
        )
        self._watch = AccessWatch(self.settings)
        conf.setdefault("error_cb", self._watch)  # a refused login or TLS handshake: one exception
        conf.setdefault("logger", KAFKA_LOG)       # librdkafka's lines to logging, not stderr
        conf.update(config or {})
        self._consumer = Consumer(conf)
        self._closed = False
        if workflow_id is not None:
            n = self._partition_count()
            start = OFFSET_STORED if group_id else (OFFSET_BEGINNING if from_beginning else OFFSET_END)
            self._consumer.assign([TopicPartition(self.topic, partition_for(workflow_id, n), start)])
        else:
            self._partition_count()  # a clear error now when the topic is missing
            self._consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_revoke)

    # ------------------------------------------------------------------ setup

    def _partition_count(self) -> int:
        try:
            md = fetch_metadata(self._consumer, self._watch, 30.0, self.topic)
        except Exception:  # refused login or TLS handshake (KafkaAccessError), no answer
            self._consumer.close()
            raise
        t = md.topics.get(self.topic)
        if t is not None and t.error is not None and t.error.code() in AUTHORIZATION_CODES:
            self._consumer.close()
            raise authorization_error(self.settings, t.error, "describe", self.topic)
        if t is None or t.error is not None or not t.partitions:
            self._consumer.close()
            raise ValueError(
                f"topic {self.topic!r} does not exist on {self.settings.bootstrap_servers}: check the topic "
                f"prefix ({self.settings.topic_prefix!r}, AION_TOPIC_PREFIX) or create the topics with "
                "`aion topics create`")
        return len(t.partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Not committed: the application may not have finished those records (at least once).
        for tp in partitions:
            self._positions.pop(tp.partition, None)

    # ------------------------------------------------------------------ reading

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[EventRecord]:
        """The next records that pass the filters (possibly none), waiting up to ``timeout`` s.

        Calling ``poll`` again means the previous records are done with: ``commit()`` then
        commits them (the iterator does that by itself)."""
        msgs = self._consumer.consume(max_records, timeout)
        out: list[EventRecord] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                if err.code() in AUTHORIZATION_CODES:  # an ACL: retrying cannot help
                    if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                        raise authorization_error(self.settings, err, "join", self.group_id)
                    raise authorization_error(self.settings, err, "read", self.topic)
                log.warning("events consumer %s: %s", self.group_id, err.str())
                continue
            self.stats["read"] += 1
            self._positions[m.partition()] = m.offset() + 1
            rec = self._record(m)
            if rec is None:
                self.stats["filtered"] += 1
                continue
            self.stats["delivered"] += 1
            out.append(rec)
        return out

    def _record(self, m: Any) -> EventRecord | None:
        raw_key, value = m.key(), m.value()
        if self._keys is not None and self._keys.seq_of(raw_key) is None:
            return None
        if value is None and not self.include_tombstones:
            return None
        try:
            key = self.codec.decode_event_key(raw_key)
            event = self.codec.decode_event(value) if value is not None else None
        except Exception as exc:
            self.stats["undecodable"] += 1
            log.warning("%s[%d]@%d is not an aion event (%s); skipped", self.topic, m.partition(), m.offset(), exc)
            return None
        if self.event_types is not None and (event is None or event.type not in self.event_types):
            if not (event is None and self.include_tombstones):
                return None
        ts_type, ts = m.timestamp()
        return EventRecord(m.partition(), m.offset(), key, event, ts if ts_type else None)

    def commit(self) -> None:
        """Commit the offsets after every record returned so far (synchronously)."""
        if not self.group_id or not self._positions:
            return
        offsets = [TopicPartition(self.topic, p, off) for p, off in sorted(self._positions.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET:
                return
            raise

    def __iter__(self) -> Iterator[EventRecord]:
        """Records forever (until ``close()``); commits the previous batch before each fetch."""
        while not self._closed:
            self.commit()
            for rec in self.poll(1.0):
                yield rec

    async def stream(self, idle_timeout: float | None = None) -> AsyncIterator[EventRecord]:
        """Async iteration (polls in a worker thread); stops after ``idle_timeout`` s without
        records (once partitions are assigned) when given. Commits the previous batch before
        each fetch."""
        last = time.monotonic()
        while not self._closed:
            await asyncio.to_thread(self.commit)
            batch = await asyncio.to_thread(self.poll, 0.5)
            if batch or not self._consumer.assignment():
                last = time.monotonic()  # busy, or still joining the group: not idle
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return
            for rec in batch:
                yield rec

    def watermarks(self, timeout: float = 30.0) -> dict[int, tuple[int, int]]:
        """``partition -> (first retained offset, end offset)`` of the partitions this consumer reads
        (every partition of the topic while a group assignment is pending)."""
        parts = self.assignment()
        if not parts:
            md = self._consumer.list_topics(self.topic, timeout=timeout)
            parts = sorted(md.topics[self.topic].partitions)
        return {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)
                for p in parts}

    def positions(self) -> dict[int, int]:
        """Next offset per partition after the records read so far (filtered ones included)."""
        return dict(self._positions)

    def caught_up(self, ends: dict[int, tuple[int, int]]) -> bool:
        """Whether every partition of ``ends`` (from :meth:`watermarks`) was read to its end
        offset, by this consumer or (per its group's committed offsets) before it."""
        pos = dict(self._positions)
        assigned = self._consumer.assignment()
        if assigned:
            for tp in self._consumer.position(assigned):
                if tp.offset >= 0:
                    pos[tp.partition] = max(pos.get(tp.partition, -1), tp.offset)
        missing = [p for p, (lo, hi) in ends.items() if hi > lo and pos.get(p, -1) < hi]
        if missing and self.group_id:
            for tp in self._consumer.committed([TopicPartition(self.topic, p) for p in missing], timeout=10):
                if tp.offset >= 0:
                    pos[tp.partition] = max(pos.get(tp.partition, -1), tp.offset)
        return all(hi <= lo or pos.get(p, -1) >= hi for p, (lo, hi) in ends.items())

    def assignment(self) -> list[int]:
        """The partitions this consumer reads now."""
        return sorted(tp.partition for tp in self._consumer.assignment())

    def close(self, commit: bool = True) -> None:
        """Commit (unless ``commit=False``) and leave the group."""
        if self._closed:
            return
        try:
            if commit:
                self.commit()
        finally:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> "EventConsumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(commit=exc[0] is None)

    # ------------------------------------------------------------------ offsets

    @staticmethod
    def reset_offsets(
        group_id: str,
        *,
        settings: Settings | None = None,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        to: str = "beginning",
        timeout: float = 30.0,
    ) -> dict[int, int]:
        """Move ``group_id``'s committed offsets on the events topic to the first retained
        record of every partition (``to="beginning"``) or to the end (``to="end"``).

        The group must have no running member (Kafka refuses otherwise):
        :class:`ConsumerGroupActiveError` says so. Returns partition -> new offset. This is
        "replay by resetting offsets": the group's next consumer reads everything again.
        """
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka.admin import AdminClient

        if to not in ("beginning", "end"):
            raise ValueError(f"to={to!r}: use 'beginning' or 'end'")
        s = _resolve_settings(settings, bootstrap_servers, topic_prefix)
        topic = TopicNames(s.topic_prefix).events
        probe = Consumer(consumer_config(s.confluent_config(), group_id=private_group_id(s.topic_prefix, "reset"),
                                         client_id=f"{s.topic_prefix}.reset"))
        try:
            md = probe.list_topics(topic, timeout=timeout)
            t = md.topics.get(topic)
            if t is not None and t.error is not None and t.error.code() in AUTHORIZATION_CODES:
                raise authorization_error(s, t.error, "describe", topic)
            if t is None or t.error is not None:
                raise ValueError(f"topic {topic!r} does not exist on {s.bootstrap_servers}")
            offsets = {}
            for p in sorted(t.partitions):
                low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                offsets[p] = low if to == "beginning" else high
        finally:
            probe.close()
        admin = AdminClient({**s.confluent_config(), "client.id": f"{s.topic_prefix}.reset"})
        request = ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p, o) for p, o in offsets.items()])
        fut = admin.alter_consumer_group_offsets([request], request_timeout=timeout)[group_id]
        try:
            result = fut.result()
            errors = [tp.error for tp in result.topic_partitions if tp.error is not None]
        except KafkaException as exc:
            errors = [exc.args[0] if exc.args else exc]
        if errors:
            err = errors[0]
            code = err.code() if isinstance(err, KafkaError) else None
            # Kafka answers a reset of a group with members with "unknown member" per partition.
            if code in AUTHORIZATION_CODES:
                raise authorization_error(s, code, "reset the offsets of", group_id if code == KafkaError.GROUP_AUTHORIZATION_FAILED else topic)
            if code in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
                        getattr(KafkaError, "GROUP_SUBSCRIBED_TO_TOPIC", -999)) or "non-empty" in str(err).lower():
                raise ConsumerGroupActiveError(
                    f"consumer group {group_id!r} still has running members, so Kafka refuses to move its "
                    f"offsets: stop every consumer of the group, then reset again ({err})")
            raise KafkaException(err)
        return offsets
