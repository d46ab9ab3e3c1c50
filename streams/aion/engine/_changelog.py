"""Reading a topic of the deployment (the events topic, a table's changelog) with librdkafka,
committed records only: the rebuild's reader (``_rebuild.py``) and the takeover catch-up
(``_store.py``) share it."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterable, Iterator

from ..exceptions import AionError
from ..common.settings import Settings
from ..common.topics import TopicNames


class RebuildError(AionError):
    """A topic of the deployment could not be read (missing, stalled), or a rebuild failed."""




def _consumer(settings: Settings, what: str) -> Any:
    from confluent_kafka import Consumer

    from ..common.access import KAFKA_LOG

    conf = dict(settings.confluent_config())
    conf.update({
        "logger": KAFKA_LOG,  # librdkafka's lines through logging, not stderr (a broker outage)
        # Manual assignment, never committed: the group is never joined nor created.
        "group.id": f"{settings.topic_prefix}.{what}.{uuid.uuid4().hex}",
        "client.id": f"{settings.topic_prefix}.{what}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        # Only committed records: an aborted engine transaction's records stay in the log.
        "isolation.level": "read_committed",
        # The broker holds a fetch of a partition with nothing new for this long: a scan only
        # learns that a partition is done (EOF) from such a fetch (the default 500 ms made a
        # takeover's catch-up of a few records take half a second).
        "fetch.wait.max.ms": 10,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": max(8 * 1024 * 1024, settings.max_record_bytes),
        "queued.max.messages.kbytes": 256 * 1024,
    })
    return Consumer(conf)


def _end_offsets(consumer: Any, topic: str, partitions: Iterable[int],
                 timeout: float = 30.0) -> dict[int, tuple[int, int]]:
    """partition -> (first offset, end offset) of ``topic``'s ``partitions``, as
    ``get_watermark_offsets`` gives them to ``consumer`` (a read-committed consumer: the end is
    the last stable offset), in two requests for all partitions. A look-up that fails raises
    :class:`RebuildError` saying which (the broker lost: its ``KafkaException``)."""
    wanted = list(partitions)
    try:
        # The first offsets before the ends: records deleted in between cannot make first > end.
        lows = _offsets_at(consumer, [(topic, p) for p in wanted], EARLIEST, timeout)
        highs = _offsets_at(consumer, [(topic, p) for p in wanted], LATEST, timeout)
    except OffsetLookupError as exc:
        raise RebuildError(f"could not read the offsets of topic {topic!r} partitions {wanted}: {exc}; "
                           "check that the topic exists and the broker is up, then run it again") from exc
    return {p: (lows[(topic, p)], highs[(topic, p)]) for p in wanted}


#: The ListOffsets request's timestamps for a partition's first and end offset.
EARLIEST, LATEST = -2, -1


class OffsetLookupError(AionError, RuntimeError):
    """The first or end offsets of some partitions could not be looked up."""


def _offsets_at(consumer: Any, partitions: Iterable[tuple[str, int]], at: int,
                timeout: float = 30.0) -> dict[tuple[str, int], int]:
    """(topic, partition) -> its first (``at=EARLIEST``) or end (``LATEST``) offset, for every
    partition at once: one ListOffsets request per leader broker (``get_watermark_offsets``
    sends one per partition: a takeover's ten partitions took 0.1-0.55 s of round trips on a
    loaded machine, issue 17). The end is the last stable offset when ``consumer`` reads
    committed records only, as the watermark is. Raises :class:`OffsetLookupError` naming the
    partitions that failed; a lost broker, librdkafka's own ``KafkaException``."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from ..common.access import BROKER_LOST_CODES

    wanted = [TopicPartition(t, p, at) for t, p in partitions]
    if not wanted:
        return {}
    try:
        found = consumer.offsets_for_times(wanted, timeout=timeout)
    except KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.code() in BROKER_LOST_CODES:
            raise
        topics = sorted({tp.topic for tp in wanted})
        raise OffsetLookupError(f"looking up the offsets of {topics} failed: "
                                f"{err.str() if err is not None else exc}") from exc
    out: dict[tuple[str, int], int] = {}
    failed: list[str] = []
    for tp in found:
        # A partition the broker left out of its answer keeps the timestamp asked (negative)
        # and no error: it failed too.
        if tp.error is not None or tp.offset < 0:
            failed.append(f"{tp.topic} [{tp.partition}]: {tp.error.str() if tp.error is not None else 'no offset returned'}")
        else:
            out[(tp.topic, tp.partition)] = tp.offset
    if failed:
        raise OffsetLookupError("looking up the offsets failed for " + "; ".join(failed))
    return out


def _topic_partitions(consumer: Any, topic: str) -> int | None:
    md = consumer.list_topics(topic, timeout=30)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def scan_events(
    settings: Settings,
    partitions: Iterable[int] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    ends: dict[int, tuple[int, int]] | None = None,
    topic: str | None = None,
    timeout_s: float = 600.0,
) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of the events topic's ``partitions`` (all by default) from offset 0 up to
    their end offsets at the call, as ``(partition, offset, key, value)``, in offset order per
    partition. ``progress(records, partitions_done)`` is called after each fetched batch.
    ``ends`` (partition -> (low, high)) pins the end offsets read beforehand; ``topic`` reads
    another topic of the deployment (a table's changelog) the same way."""
    topic = topic or TopicNames(settings.topic_prefix).events
    c = _consumer(settings, "scan")
    try:
        n = _topic_partitions(c, topic)
        if n is None:
            raise RebuildError(f"topic {topic!r} does not exist on {settings.bootstrap_servers}: check "
                               f"--prefix/AION_TOPIC_PREFIX ({settings.topic_prefix!r})")
        wanted = sorted(set(range(n) if partitions is None else partitions))
        bad = [p for p in wanted if not 0 <= p < n]
        if bad:
            raise RebuildError(f"partition(s) {bad} do not exist: {topic!r} has {n} partitions (0..{n - 1})")
        ends = dict(ends) if ends is not None else _end_offsets(c, topic, wanted)
        ranges = {(topic, p): ends[p] for p in wanted}
        for _t, p, off, key, value in scan_ranges(c, ranges, progress=progress, timeout_s=timeout_s):
            yield p, off, key, value
    finally:
        c.close()


def scan_ranges(
    c: Any,
    ranges: dict[tuple[str, int], tuple[int, int]],
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 600.0,
) -> Iterator[tuple[str, int, int, bytes | None, bytes | None]]:
    """Every committed record of each ``(topic, partition)`` of ``ranges`` from its first offset
    up to (not including) its end offset, read with the consumer ``c`` (made by
    :func:`_consumer`, whose metadata knows the topics), as ``(topic, partition, offset, key,
    value)`` in offset order per partition. ``progress(records, partitions_done)`` is called
    after each fetched batch."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    pending = {tp for tp, (lo, hi) in ranges.items() if hi > lo}
    done = len(ranges) - len(pending)
    count = 0
    if progress is not None:
        progress(0, done)
    if not pending:
        return
    c.assign([TopicPartition(t, p, ranges[(t, p)][0]) for t, p in sorted(pending)])
    deadline = time.monotonic() + timeout_s
    while pending:
        # What is fetched already, waiting at most 20 ms for the first record: consume(n, t)
        # alone waits the whole timeout unless n records come, and a catch-up of a few records
        # (a takeover, _store.py) took a multiple of it.
        first = c.poll(0.02)
        msgs = [first, *c.consume(10_000, 0)] if first is not None else []
        finished: set[tuple[str, int]] = set()
        for m in msgs:
            err = m.error()
            tp = (m.topic(), m.partition())
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if tp in pending and m.offset() >= ranges[tp][1]:
                        finished.add(tp)
                    continue
                if err.fatal():
                    raise KafkaException(err)
                continue
            if tp not in pending:
                continue
            off = m.offset()
            if off >= ranges[tp][1]:  # written after the snapshot (another worker): not ours
                finished.add(tp)
                continue
            count += 1
            yield tp[0], tp[1], off, m.key(), m.value()
            if off >= ranges[tp][1] - 1:
                finished.add(tp)
        if finished & pending:
            pending -= finished
            done += len(finished)
            # Stop fetching finished partitions (records past the snapshot are not ours).
            c.pause([TopicPartition(t, p) for t, p in finished])
        if progress is not None:
            progress(count, done)
        if msgs:
            deadline = time.monotonic() + timeout_s
        elif time.monotonic() > deadline:
            unfinished = {t: sorted(p for tt, p in pending if tt == t) for t in sorted({t for t, _ in pending})}
            raise RebuildError(f"reading stalled for {timeout_s:.0f}s with partitions unfinished (topic: "
                               f"partitions) {unfinished}; is the broker healthy?")
