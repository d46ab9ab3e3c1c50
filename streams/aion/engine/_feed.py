"""The engine's intake of command records: every offset of a partition, in order, once.

Faust's stream can lose a record around a rebalance. When a worker's recovery completes,
Faust resumes the stream partitions (the fetcher starts delivering into the stream's buffer),
waits for the seek to the committed offsets (a round trip to the broker), and only then
resumes flow control, which *clears* the stream buffers. A record fetched in that window and
not yet taken by the agent is dropped while the fetch position has moved past it: with no
committed offset (a new partition) or one older than the record, nothing ever fetches it
again. A lost command is a workflow that never starts, or an activity report that waits for
its timeout; and because the lost offset is never acknowledged, Faust's offset commits stop
at it, so the next hand-over re-reads everything after it (a takeover that grows with the
run's age). A benchmark run lost one ``StartWorkflow`` this way in three kills.

Commands have contiguous offsets (no transactional producer writes to the topic, so no
control records), so a hole is always a loss. :class:`OffsetGuard` admits each partition's
records strictly in offset order from a baseline (the group's committed offset, or the
partition's first offset); on a hole it has the consumer seek back to the missing offset and
drops what arrives past it until the missing record comes (re-seeking if it does not). A
partition whose last records were lost shows no hole: when the stream has been quiet for a
second while Kafka's high watermark is past what was admitted, the intake seeks back too.
Re-read records the runtime already handled are dropped by their command id, as any
re-delivery is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping

from confluent_kafka import Consumer, TopicPartition
from faust.types import TP

from ._faults import faults

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("aion.engine")

ADMIT = "admit"
#: Offset below the next expected one: already admitted (or committed); not admitted again.
STALE = "stale"
#: A hole before this offset: seek back to the expected offset (and drop this record).
SEEK = "seek"
#: A hole, and a seek back is under way: drop this record (it will be read again).
WAIT = "wait"


class OffsetGuard:
    """Pure bookkeeping of the next offset expected per partition (no Kafka here)."""

    def __init__(self, reseek_after_s: float = 1.0) -> None:
        #: A seek back that brought nothing within this many seconds is tried again.
        self.reseek_after_s = reseek_after_s
        self._next: dict[int, int] = {}
        self._sought_at: dict[int, float] = {}

    def reset(self) -> None:
        """Forget every partition (a rebalance: baselines must be read again)."""
        self._next.clear()
        self._sought_at.clear()

    def has_baseline(self, partition: int) -> bool:
        return partition in self._next

    def set_baseline(self, partition: int, offset: int) -> None:
        """The first offset this worker expects on ``partition``."""
        self._next[partition] = offset

    def expected(self, partition: int) -> int | None:
        return self._next.get(partition)

    def admit(self, partition: int, offset: int, now: float) -> str:
        """What to do with the record at ``offset``: :data:`ADMIT`, :data:`STALE`,
        :data:`SEEK` (to :meth:`expected`) or :data:`WAIT`."""
        nxt = self._next.get(partition)
        if nxt is None or offset == nxt:
            self._next[partition] = offset + 1
            self._sought_at.pop(partition, None)
            return ADMIT
        if offset < nxt:
            return STALE
        return self._seek_or_wait(partition, now)

    def behind(self, highwaters: Mapping[int, int | None], now: float) -> list[tuple[int, int]]:
        """``(partition, offset)`` to seek back to, for partitions whose high watermark is past
        the next expected offset (call only when the stream has been quiet: records on their
        way are not a loss)."""
        out = []
        for partition, high in highwaters.items():
            nxt = self._next.get(partition)
            if nxt is not None and high is not None and high > nxt and self._seek_or_wait(partition, now) == SEEK:
                out.append((partition, nxt))
        return out

    def _seek_or_wait(self, partition: int, now: float) -> str:
        last = self._sought_at.get(partition)
        if last is not None and now - last < self.reseek_after_s:
            return WAIT
        self._sought_at[partition] = now
        return SEEK


class _ReadOffsets(defaultdict):  # type: ignore[type-arg]
    """Faust consumer's ``_read_offset`` map, except that ``topic``'s partitions always read
    as unknown (Faust then hands every fetched record of them to the stream)."""

    def __init__(self, topic: str, current: Mapping[Any, Any]) -> None:
        super().__init__(lambda: None, current)
        self.topic = topic

    def __getitem__(self, tp: Any) -> Any:
        if tp.topic == self.topic:
            return None
        return super().__getitem__(tp)


class CommandIntake:
    """Puts an :class:`OffsetGuard` between Faust's stream of command records and the engine's
    batch queue, with the Kafka calls it needs: the group's committed offsets (baselines),
    seeks back, and a watchdog for lost tails."""

    #: Seconds without any command record before the watchdog compares high watermarks.
    QUIET_S = 1.0

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.guard = OffsetGuard()
        self._offsets: Consumer | None = None
        self._last_record = time.monotonic()
        #: Bumped by every rebalance: a baseline read across one is stale.
        self._epoch = 0
        #: Inside an ``await`` of ``admit`` (the stream is not quiet, it is waiting for us).
        self._admitting = False
        #: Fault injection: (partition, offset) of records thrown away the first time they arrive.
        self._drop = {1, 3} if "drop_command" in faults() else set()

    def reset(self) -> None:
        self.guard.reset()
        self._epoch += 1

    def install(self) -> None:
        """Turn off Faust's own read-offset filter for the commands topic (call before Faust's
        fetcher starts: it binds the filter once). That filter drops any record below the last
        offset handed to the stream, so after a seek back the re-read records were dropped
        again whenever a later record had been handed over meanwhile (it is set after each
        hand-over, racing the seek). The guard does that job for the commands topic."""
        consumer = self.engine.app.consumer
        if not isinstance(consumer._read_offset, _ReadOffsets):
            consumer._read_offset = _ReadOffsets(self.engine.names.commands, consumer._read_offset)

    async def admit(self, ev: Any) -> bool:
        """Whether the stream event ``ev`` goes to the batch queue. A record not admitted is
        handled already or will be read again: it is released (see :meth:`_release`), never
        acknowledged, so no offset commit passes it."""
        self._last_record = time.monotonic()
        if self._drop and ev.message.offset in self._drop:
            self._drop.discard(ev.message.offset)
            log.warning("AION_FAULT=drop_command: dropping the command record at %s[%d]@%d",
                        ev.message.topic, ev.message.partition, ev.message.offset)
            self._release(ev)
            return False
        tp = ev.message.tp
        partition, offset = tp.partition, ev.message.offset
        self._admitting = True
        try:
            if not self.guard.has_baseline(partition):
                epoch = self._epoch
                base = await self._baseline(tp, offset)
                if epoch != self._epoch:  # a rebalance meanwhile: the record may not be ours now
                    self._release(ev)
                    return False
                self.guard.set_baseline(partition, base)
            verdict = self.guard.admit(partition, offset, time.monotonic())
            if verdict == SEEK:
                await self._seek_back(tp, f"offset {offset} arrived")
        finally:
            self._admitting = False
            self._last_record = time.monotonic()
        if verdict != ADMIT:
            self._release(ev)
            return False
        return True

    def _release(self, ev: Any) -> None:
        """Let Faust forget a record the engine will not handle: marked done without an ack
        (the ack would count its offset as committable), so a rebalance's wait for unfinished
        records does not wait for it."""
        message = ev.message
        message.acked = True
        self.engine.app.consumer._unacked_messages.discard(message)

    async def watch(self) -> None:
        """Periodic (Faust timer): after a quiet second, seek back partitions whose high
        watermark is past what was admitted — their last records were lost (also the first
        records after a rebalance: a partition that got nothing since has its baseline read
        here)."""
        engine = self.engine
        app = engine.app
        queue = getattr(engine, "_queue", None)
        if (getattr(app, "rebalancing", False) or self._admitting
                or time.monotonic() - self._last_record < self.QUIET_S
                or queue is None or not queue.empty() or engine.batch_lock.locked()):
            return  # busy (a batch, a full queue, a baseline read) or rebalancing: quiet is not a loss
        consumer = app.consumer
        topic = engine.names.commands
        highs: dict[int, int | None] = {}
        for p in engine._active_partitions():
            try:
                highs[p] = consumer.highwater(TP(topic, p))
            except Exception:  # not fetched yet, or the consumer is between assignments
                highs[p] = None
            high = highs[p]
            if high and not self.guard.has_baseline(p):
                epoch = self._epoch
                base = await self._baseline(TP(topic, p), high)
                if epoch != self._epoch or self.guard.has_baseline(p) or time.monotonic() - self._last_record < self.QUIET_S:
                    return  # things moved meanwhile: look again next time
                self.guard.set_baseline(p, base)
        for partition, _ in self.guard.behind(highs, time.monotonic()):
            await self._seek_back(TP(topic, partition),
                                  f"no record for {self.QUIET_S:.0f}s, high watermark {highs[partition]}")

    async def _seek_back(self, tp: TP, why: str) -> None:
        offset = self.guard.expected(tp.partition)
        assert offset is not None
        low = await asyncio.get_running_loop().run_in_executor(None, self._low_watermark, tp)
        if low is not None and low > offset:
            # Deleted by retention before this worker read them: nothing to re-read.
            log.error("commands %s[%d]: offsets %d..%d were deleted (retention) before the engine read them; "
                      "going on from %d", tp.topic, tp.partition, offset, low - 1, low)
            self.guard.set_baseline(tp.partition, low)
            offset = low
        else:
            log.warning("commands %s[%d]: offset %d was never delivered (%s); re-reading from it "
                        "(Faust's stream lost the record, e.g. around a rebalance)", tp.topic, tp.partition,
                        offset, why)
        try:
            # Through the consumer's own thread (Faust's plain ``seek`` calls aiokafka from this one).
            await self.engine.app.consumer.seek_wait({tp: offset})
        except Exception as exc:  # revoked meanwhile (IllegalStateError) or the broker is away
            log.warning("commands %s[%d]: seek back to %d failed (%s: %s); trying again later",
                        tp.topic, tp.partition, offset, type(exc).__name__, exc)

    async def _baseline(self, tp: TP, first: int) -> int:
        """The offset this worker's reading of ``tp`` starts at: the group's committed offset,
        or the partition's first offset when nothing is committed (the engine reads from the
        earliest) or the committed one is gone (retention). Asked only when the first record
        is not at offset 0, the only case a hole before it is possible."""
        if first == 0:
            return 0
        return await asyncio.get_running_loop().run_in_executor(None, self._read_baseline, tp, first)

    def _consumer(self) -> Consumer:
        if self._offsets is None:
            s = self.engine.settings
            self._offsets = Consumer(dict(s.confluent_config(), **{
                "group.id": self.engine.app.conf.id,  # the engine group's offsets, never joining it
                "client.id": f"{s.topic_prefix}.engine-offsets",
                "enable.auto.commit": False,
            }))
        return self._offsets

    def _low_watermark(self, tp: TP) -> int | None:
        try:
            return int(self._consumer().get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[0])
        except Exception:  # the broker is away: assume the records are still there
            return None

    def _read_baseline(self, tp: TP, first: int) -> int:
        ktp = TopicPartition(tp.topic, tp.partition)
        try:
            committed = self._consumer().committed([ktp], timeout=10)[0].offset
            if committed < 0 or committed < first:
                low, _high = self._consumer().get_watermark_offsets(ktp, timeout=10)
                committed = max(committed, low)
        except Exception as exc:  # the broker is unreachable: trust the stream
            log.warning("commands %s[%d]: could not read the committed offset (%s); starting at %d",
                        tp.topic, tp.partition, exc, first)
            return first
        return committed


#: Longest time the engine's consumer lets the broker hold a fetch (see :func:`shorten_fetch_wait`).
FETCH_MAX_WAIT_MS = 100


def shorten_fetch_wait(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Have Faust's worker consumer ask the broker to hold an empty fetch at most
    ``max_wait_ms`` (Faust hard-codes 1,500 ms).

    The broker answers one connection's requests in order, so every other request of the
    consumer to that broker — the offset look-ups of a rebalance's recovery, above all — waited
    behind a parked fetch: a takeover spent 1.3 s on Faust's "highwater" step and 1.5 s on its
    "offsets at start of reading" step whenever the partitions were quiet. With data waiting a
    fetch returns at once either way; quiet, the consumer asks ten times a second.
    """
    from faust.transport.drivers import aiokafka as driver

    cls: Any = driver.AIOKafkaConsumerThread
    if getattr(cls, "_aion_fetch_max_wait_ms", None) is None:
        create = cls._create_worker_consumer

        def _create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = create(self, transport)
            consumer._fetch_max_wait_ms = cls._aion_fetch_max_wait_ms  # read when it starts
            return consumer

        cls._create_worker_consumer = _create_worker_consumer
    cls._aion_fetch_max_wait_ms = max_wait_ms
