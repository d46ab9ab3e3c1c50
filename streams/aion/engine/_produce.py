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
        if not records:
            return []
        producer = self._producer
        assert producer is not None, "BatchProducer.start() was not called"
        batch = _Batch(asyncio.get_running_loop().create_future(), len(records))
        report = batch.report
        self._in_flight += 1
        try:
            if self._poller is None or self._poller.done():
                self._poller = asyncio.create_task(self._poll())
            for i, (topic, key, value, partition) in enumerate(records):
                def delivered(err: KafkaError | None, msg: Message, _i: int = i) -> None:
                    report(_i, err, msg)

                while True:
                    try:
                        if partition is None:
                            producer.produce(topic, value, key, on_delivery=delivered)
                        else:
                            producer.produce(topic, value, key, partition, on_delivery=delivered)
                        break
                    except BufferError:  # the local queue is full: let librdkafka drain it
                        await asyncio.sleep(0.005)
            return await batch.future
        finally:
            self._in_flight -= 1

    async def close(self, timeout: float = 10.0) -> None:
        producer = self._producer
        if producer is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, producer.flush, timeout)
        self._producer = None
