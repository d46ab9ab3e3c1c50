"""What ``aion status`` shows, read from Kafka alone (no worker needs an HTTP port for it).

- **engine workers**: the members of the engine's group (``<prefix>-engine``, Faust's) and the
  commands partitions each one was assigned;
- **activity workers**: each task queue's group (``<prefix>.activity-workers.<queue>``), its
  members and their partitions;
- **per commands partition**: its end offset, the engine's intake position (the last
  ``progress`` row written by the partition's transactions: the tail of the progress
  changelog), the command lag between them (transaction markers count), and the timers
  pending (live time rows of the ``timers`` changelog, read whole: compacted, but one row per
  armed timer);
- **dead letters**: the records on ``<prefix>.dlq``.

Reads are ``read_committed``: what the engine's committed transactions hold.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from ..common.settings import Settings
from ..common.topics import TopicNames

#: The progress rows a transaction writes before its intake position: heartbeats (rare); the
#: tail read for the position starts this far from the end, then further back if need be.
_TAIL = 200
#: Records read per partition of the timers changelog at most (status stays an ops command).
MAX_TIMER_RECORDS = 2_000_000
_POSITION_KEY = b"\x00position"  # engine/_progress.py POSITION_KEY
_TIME_END = b"\x01"  # engine/_timers.py: time rows sort below it, index and meta rows above


@dataclass
class Member:
    client_id: str
    host: str
    partitions: list[int]
    member_id: str = ""


@dataclass
class Group:
    group_id: str
    state: str
    members: list[Member] = field(default_factory=list)
    task_queue: str | None = None


@dataclass
class PartitionStatus:
    partition: int
    owner: str | None  # the engine member (client id @ host) assigned the partition
    end_offset: int
    position: int | None  # the engine's intake position (next command offset to read)
    lag: int
    timers_pending: int | None
    timers_partial: bool = False


@dataclass
class ClusterStatus:
    prefix: str
    engine: Group | None
    activity_workers: list[Group]
    partitions: list[PartitionStatus]
    dead_letters: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def engine_group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}-engine"  # the Faust app id (engine/_app.py)


def _changelog(settings: Settings, table: str) -> str:
    return f"{engine_group_id(settings)}-{table}-changelog"  # Faust's table changelog names


def cluster_status(settings: Settings, *, timers: bool = True, timeout: float = 10.0) -> ClusterStatus:
    names = TopicNames(settings.topic_prefix)
    admin = AdminClient(settings.confluent_config())
    engine_id = engine_group_id(settings)
    queue_prefix = f"{settings.topic_prefix}.activity-workers."
    listed = admin.list_consumer_groups(request_timeout=timeout).result()
    ids = [g.group_id for g in listed.valid if g.group_id == engine_id or g.group_id.startswith(queue_prefix)]
    groups: dict[str, Group] = {}
    if ids:
        for gid, fut in admin.describe_consumer_groups(ids, request_timeout=timeout).items():
            d = fut.result()
            topic = names.commands if gid == engine_id else names.activity_tasks(gid[len(queue_prefix):])
            g = Group(gid, str(d.state).rsplit(".", 1)[-1],
                      task_queue=None if gid == engine_id else gid[len(queue_prefix):])
            for m in d.members:
                tps = m.assignment.topic_partitions if m.assignment is not None else []
                g.members.append(Member(m.client_id, m.host.lstrip("/"),
                                        sorted(tp.partition for tp in tps if tp.topic == topic), m.member_id))
            g.members.sort(key=lambda m: (m.partitions[:1] or [1 << 30], m.client_id))
            groups[gid] = g

    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.status-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    try:
        commands = _partitions(consumer, names.commands, timeout)
        marks = {p: consumer.get_watermark_offsets(TopicPartition(names.commands, p), timeout=timeout)
                 for p in commands}
        ends = {p: high for p, (_low, high) in marks.items()}
        positions = _positions(consumer, _changelog(settings, "progress"), timeout)
        pending: dict[int, tuple[int, bool]] = _timers(consumer, _changelog(settings, "timers"), timeout) if timers else {}
        dlq = 0
        for p in _partitions(consumer, names.dlq, timeout):
            dlq += _scan(consumer, names.dlq, p, None, timeout, lambda k, v: None)[0]
    finally:
        consumer.close()
    owners: dict[int, str] = {}
    engine = groups.get(engine_id)
    if engine is not None:
        for m in engine.members:
            for p in m.partitions:
                owners[p] = f"{m.host}/{m.member_id[-6:]}"
    parts = []
    for p in sorted(commands):
        pos = positions.get(p)
        t = pending.get(p)
        # no position row yet: nothing was committed from this partition, all of it is to read
        lag = max(0, ends[p] - (pos if pos is not None else marks[p][0]))
        parts.append(PartitionStatus(p, owners.get(p), ends[p], pos, lag,
                                     t[0] if t else None, bool(t and t[1])))
    return ClusterStatus(settings.topic_prefix, engine,
                         sorted((g for gid, g in groups.items() if gid != engine_id), key=lambda g: g.group_id),
                         parts, dlq)


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    md = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None:
        return []
    return sorted(md.partitions)


def _positions(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    """Each partition's last intake position row (the tail of the progress changelog)."""
    out: dict[int, int] = {}
    for p in _partitions(consumer, topic, timeout):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        back = _TAIL
        while True:
            start = max(low, high - back)
            found: list[int] = []

            def keep(key: bytes | None, value: bytes | None) -> None:
                if key == _POSITION_KEY and value is not None:
                    found.append(int(value))

            _scan(consumer, topic, p, start, timeout, keep)
            if found or start == low:
                if found:
                    out[p] = found[-1]
                break
            back *= 10
    return out


def _timers(consumer: Consumer, topic: str, timeout: float) -> dict[int, tuple[int, bool]]:
    """Each partition's live timer rows (time rows of the compacted table), and whether the
    count is partial (more than MAX_TIMER_RECORDS records to read)."""
    out: dict[int, tuple[int, bool]] = {}
    for p in _partitions(consumer, topic, timeout):
        live: set[bytes] = set()

        def keep(key: bytes | None, value: bytes | None) -> None:
            if key is None or key >= _TIME_END:
                return
            if value is None:
                live.discard(key)
            else:
                live.add(key)

        n, complete = _scan(consumer, topic, p, None, timeout, keep, limit=MAX_TIMER_RECORDS)
        out[p] = (len(live), not complete)
    return out


def _scan(consumer: Consumer, topic: str, partition: int, start: int | None, timeout: float,
          on_record: Callable[[bytes | None, bytes | None], None], *, limit: int | None = None) -> tuple[int, bool]:
    """Read ``topic[partition]`` from ``start`` (its first offset when None) to its end (committed
    records); ``(records read, whether the end was reached)``."""
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
    if high <= max(low, start or 0):
        return 0, True
    consumer.assign([TopicPartition(topic, partition, max(low, start) if start is not None else low)])
    n = 0
    deadline = time.monotonic() + max(timeout, 30.0)
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 1.0)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return n, True
                    raise RuntimeError(f"reading {topic}[{partition}]: {err}")
                on_record(m.key(), m.value())
                n += 1
                if m.offset() + 1 >= high:
                    return n, True
                if limit is not None and n >= limit:
                    return n, False
        return n, False
    finally:
        consumer.unassign()
