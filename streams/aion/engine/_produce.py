"""The engine's output producer: confluent-kafka (librdkafka) with one future per *batch*.

The engine appends a batch's events and later its effects, and each time waits until Kafka
acknowledged all of them. Through Faust's aiokafka producer every record costs a Python
``send`` coroutine and a future, and every produce request waits for the previous one to the
same broker; a batch round trip took 15–25 ms on the benchmark machine. librdkafka batches
and pipelines in C: the engine hands over a whole batch and awaits one future.

Delivery reports are served on the event loop itself: while batches are in flight, one task
calls ``poll(0)`` and sleeps half a millisecond between empty polls. No thread: a thread
that wakes up for a report must first win the GIL from the loop (up to the 5 ms switch
interval each time), which cost more than it saved.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from confluent_kafka import KafkaError, Message, Producer

Record = tuple[str, "bytes | None", "bytes | None", "int | None"]  # topic, key, value, partition

#: Seconds between two polls that found no delivery report.
POLL_INTERVAL = 0.0005


class ProduceError(Exception):
    """Kafka did not accept a record of the batch (after librdkafka's own retries)."""


class _Batch:
    __slots__ = ("future", "left", "offsets", "error")

    def __init__(self, future: asyncio.Future[list[int]], n: int) -> None:
        self.future = future
        self.left = n
        self.offsets: list[int] = [-1] * n
        self.error: str | None = None

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def report(self, i: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.error = self.error or f"{msg.topic()}[{msg.partition()}]: {err.str()}"
        else:
            self.offsets[i] = msg.offset()
        self.left -= 1
        if self.left == 0 and not self.future.done():
            if self.error is not None:
                self.future.set_exception(ProduceError(f"Kafka refused a record of the batch: {self.error}"))
            else:
                self.future.set_result(self.offsets)


class BatchProducer:
    """``await producer.send_batch(records)`` -> the offsets, once every record is acked."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._producer: Producer | None = None
        self._in_flight = 0
        self._poller: asyncio.Task[None] | None = None
        self._tail: asyncio.Task[None] | None = None  # the last batch still waiting for queue room

    def start(self) -> None:
        self._producer = Producer(self._config)

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def _poll(self) -> None:
        producer = self._producer
        assert producer is not None
        while self._in_flight > 0:
            if producer.poll(0) == 0:
                await asyncio.sleep(POLL_INTERVAL)
            else:
                await asyncio.sleep(0)

    async def send_batch(self, records: Sequence[Record]) -> list[int]:
        """Produce ``records`` (in order) and wait until Kafka acknowledged all of them."""
        return await self.produce_batch(records)

    def produce_batch(self, records: Sequence[Record]) -> "asyncio.Future[list[int]]":
        """Hand ``records`` to librdkafka now, in order, and return a future of their offsets
        that resolves once Kafka acknowledged all of them (or fails with :class:`ProduceError`).

        The records are queued before this returns (the caller can rely on the order of two
        batches); only when librdkafka's local queue is full does the rest follow in a task."""
        loop = asyncio.get_running_loop()
        if not records:
            done: asyncio.Future[list[int]] = loop.create_future()
            done.set_result([])
            return done
        producer = self._producer
        assert producer is not None, "BatchProducer.start() was not called"
        batch = _Batch(loop.create_future(), len(records))
        self._in_flight += 1
        batch.future.add_done_callback(self._settled)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        tail = self._tail
        i = 0 if tail is not None and not tail.done() else self._produce_from(producer, batch, records, 0)
        if i < len(records):
            # The local queue is full (or an earlier batch still waits for room): the rest
            # follows in a task, after the earlier batches' records.
            rest = asyncio.ensure_future(self._produce_rest(producer, batch, records, i, tail))
            rest.add_done_callback(lambda t: batch.fail(t.exception()) if not t.cancelled() and t.exception() else None)
            self._tail = rest
        return batch.future

    def _settled(self, _future: "asyncio.Future[list[int]]") -> None:
        self._in_flight -= 1

    @staticmethod
    def _produce_from(producer: Producer, batch: _Batch, records: Sequence[Record], start: int) -> int:
        """Produce records from ``start`` on until done or the local queue is full; returns
        the index of the first record not produced."""
        report = batch.report
        for i in range(start, len(records)):
            topic, key, value, partition = records[i]

            def delivered(err: KafkaError | None, msg: Message, _i: int = i) -> None:
                report(_i, err, msg)

            try:
                if partition is None:
                    producer.produce(topic, value, key, on_delivery=delivered)
                else:
                    producer.produce(topic, value, key, partition, on_delivery=delivered)
            except BufferError:  # the local queue is full: let librdkafka drain it
                return i
        return len(records)

    async def _produce_rest(self, producer: Producer, batch: _Batch, records: Sequence[Record], i: int,
                            tail: "asyncio.Task[None] | None") -> None:
        if tail is not None and not tail.done():
            await asyncio.wait({tail})
            i = self._produce_from(producer, batch, records, i)
        while i < len(records):
            await asyncio.sleep(0.005)
            i = self._produce_from(producer, batch, records, i)

    async def close(self, timeout: float = 10.0) -> None:
        producer = self._producer
        if producer is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, producer.flush, timeout)
        self._producer = None
