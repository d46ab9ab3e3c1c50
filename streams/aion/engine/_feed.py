"""The engine's intake of command records: librdkafka on the partitions Faust assigns.

Faust's consumer keeps the engine group's membership and the assignment (and restores the
tables); the command records themselves are read by a confluent-kafka consumer in *assign*
mode on the commands partitions this worker owns, from each partition's intake position (the
``progress`` row the engine's transactions move, see ``_progress.py``), with
``isolation.level=read_committed``:

- records of an aborted transaction (a fenced worker's commands to other workflows, its timer
  fires) are never handed to the engine, and the offsets that control records take are simply
  not delivered — no hole to wait for;
- librdkafka does not lose fetched records around a rebalance (Faust's stream did: it clears
  its buffers when flow resumes), and the engine no longer reaches into Faust's stream
  internals (its read-offset filter, its unacked-message set).

Faust's consumer is kept from fetching the commands topic at all (``_faust.keep_paused``): the
records would only be thrown away.

After a failed batch the engine seeks its partitions back to the first offset of the batch
(:meth:`CommandReader.rewind`): the records are read and handled again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

log = logging.getLogger("aion.engine")


class CommandReader:
    """A librdkafka consumer of the commands topic, assigned by the engine (never a group member)."""

    def __init__(self, config: dict[str, Any], group_id: str, topic: str, *, max_record_bytes: int) -> None:
        self.topic = topic
        self._config = dict(config, **{
            # The engine group's committed offsets (read only for a partition without a
            # progress row: an older engine's data); assign() only: never joins the group.
            "group.id": group_id,
            "client.id": f"{group_id}.commands",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
            "max.partition.fetch.bytes": max(1_048_576, max_record_bytes),
            "fetch.max.bytes": max(52_428_800, max_record_bytes),
        })
        self._client: Consumer | None = None
        self._assigned: set[int] = set()

    @property
    def _consumer(self) -> Consumer:
        """Created on first use (an engine built only for its tables never connects)."""
        if self._client is None:
            self._client = Consumer(self._config)
        return self._client

    @property
    def assigned(self) -> set[int]:
        return set(self._assigned)

    def committed(self, partitions: set[int], timeout: float = 30.0) -> dict[int, int]:
        """The group's committed offset of each partition (blocking; waits while a transaction
        with offsets for it is open). A partition with none starts at its first offset. Asked
        through a consumer of its own: the reading consumer is busy in the intake's poll."""
        if not partitions:
            return {}
        asker = Consumer(dict(self._config, **{"client.id": f"{self._config['client.id']}.committed"}))
        try:
            tps = asker.committed([TopicPartition(self.topic, p) for p in sorted(partitions)], timeout=timeout)
        finally:
            asker.close()
        out: dict[int, int] = {}
        for tp in tps:
            if tp.error is not None:
                raise RuntimeError(f"commands {self.topic}[{tp.partition}]: committed offset unreadable: {tp.error}")
            out[tp.partition] = tp.offset  # OFFSET_INVALID (-1001): auto.offset.reset (earliest)
        return out

    def learn_topic(self, timeout: float = 1.0) -> None:
        """Look up the commands topic's metadata (blocking: one round trip), right before an
        assignment, from the thread that assigns. librdkafka looks up the metadata of a topic
        its consumer has not read yet only in its once-a-second scan of unknown topics: the
        first partitions assigned to a worker were fetched up to a second later (0.5 s on
        average, every workflow of a partition moved to a worker joining waited for it; issue
        17). With the metadata known, the first fetch goes out at once.

        Like :meth:`assign`, this waits for the intake's poll in flight (:meth:`take`, at most
        its timeout) when called from the event loop, which starts no other meanwhile; from
        yet another thread, it could wait for as long as the intake polls back to back.

        Only while nothing of the topic is assigned (afterwards librdkafka keeps the topic's
        metadata itself), and briefly: it holds the event loop, and a broker that does not
        answer in time only costs the first fetch its delay."""
        if not self._assigned:
            self._consumer.list_topics(self.topic, timeout=timeout)

    def assign(self, offsets: dict[int, int]) -> None:
        """Start reading ``offsets`` (partition -> first offset) in addition to what is assigned."""
        new = {p: o for p, o in offsets.items() if p not in self._assigned}
        if new:
            self._consumer.incremental_assign([TopicPartition(self.topic, p, o) for p, o in sorted(new.items())])
            self._assigned.update(new)

    def unassign(self, partitions: set[int]) -> None:
        gone = partitions & self._assigned
        if gone:
            self._consumer.incremental_unassign([TopicPartition(self.topic, p) for p in sorted(gone)])
            self._assigned -= gone

    def rewind(self, offsets: dict[int, int]) -> None:
        """Read again from ``offsets`` (partition -> offset), for partitions still assigned."""
        for p, o in offsets.items():
            if p in self._assigned:
                try:
                    self._consumer.seek(TopicPartition(self.topic, p, o))
                except Exception as exc:  # not fetched yet: assign again at that offset
                    log.warning("commands %s[%d]: seek to %d failed (%s); re-assigning there", self.topic, p, o, exc)
                    self._consumer.incremental_unassign([TopicPartition(self.topic, p)])
                    self._consumer.incremental_assign([TopicPartition(self.topic, p, o)])

    def high_watermarks(self, partitions: set[int]) -> dict[int, int]:
        """The last known end offset of each assigned partition of ``partitions``, from the
        fetch responses (no request to the broker; for the command lag metric)."""
        client = self._client
        out: dict[int, int] = {}
        if client is None:
            return out
        for p in sorted(partitions & self._assigned):
            try:
                _low, high = client.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            except Exception:  # closed, or not fetched yet
                continue
            if high is not None and high >= 0:
                out[p] = high
        return out

    def take(self, n: int, timeout: float) -> list[Message]:
        """Up to ``n`` records: waits at most ``timeout`` for the first, then takes only what is
        already fetched (``consume(n, timeout)`` would wait for all ``n`` or the whole timeout,
        holding a lone command back); errors logged."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        msgs = [first, *self._consumer.consume(n - 1, 0)] if n > 1 else [first]
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("commands: fetch error %s", err)
        return out

    async def take_async(self, n: int, timeout: float) -> list[Message]:
        """:meth:`take`: at once when records are there, else waiting in a thread."""
        msgs = self.take(n, 0)  # the first record at once, if fetched already
        if msgs:
            return msgs
        return await asyncio.get_running_loop().run_in_executor(None, self.take, n, timeout)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
