"""The Kafka floor: a one-activity workflow's message pattern with bare confluent-kafka
producers and consumers and no engine logic.

    client --start--> commands --> floor engine --2 events (acked)--> events
                                         +--> reply ACCEPTED --> replies --> client
                                         +--> task --> tasks --> floor worker
    floor worker --started, completed--> commands --> floor engine --1 + 2 events (acked)--> events
                                         +--> reply RESULT --> replies --> client

The same records as the engine writes for a ``BenchOne`` workflow (3 commands, 5 events,
1 task, 2 replies), in the same groups: the floor engine takes commands in batches, appends the
batch's events and waits for the acks, then sends the batch's effects and waits for those
(record before effect), like the real engine. What it does not do: decode/encode Avro, run
workflow code, keep tables, timers, the visibility index. Its figures are what this broker on
this machine allows; the engine's ratio to them is the engine's own cost.

Run the roles as processes: ``python -m aion.bench._floor engine|worker`` (settings from the
``AION_*`` environment).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from ..common.kafka import AsyncProducer, consume_available, consumer_config, fatal_or_log
from ..common.kafka import watermarks
from ..common.settings import Settings
from ..common.topics import TopicNames

#: Pad records to about the size of their Avro counterparts.
_PAD = {b"S": 110, b"R": 90, b"C": 100, b"T": 120, b"E": 90, b"A": 70, b"D": 80}
#: Events the engine records per command kind: start -> 2, started -> 1, completed -> 2.
_EVENTS = {b"S": 2, b"R": 1, b"C": 2}


def _record(kind: bytes, *fields: bytes) -> bytes:
    body = kind + b"|" + b"|".join(fields) + b"|"
    return body + b"." * max(0, _PAD.get(kind, 0) - len(body))


def _fields(value: bytes) -> list[bytes]:
    return value.split(b"|")


def _producer_config(settings: Settings, what: str, linger_ms: int) -> dict[str, Any]:
    """The settings aion's own producers use (acks=all, idempotence, murmur2, short linger)."""
    return dict(settings.confluent_config(), **{
        "client.id": f"{settings.topic_prefix}.floor-{what}", "acks": "all", "enable.idempotence": True,
        "partitioner": "murmur2_random", "linger.ms": linger_ms})


def _producer(settings: Settings, what: str) -> Producer:
    return Producer(_producer_config(settings, what, 1))


def run_engine(settings: Settings, batch: int = 500, window: float = 0.1) -> None:
    names = TopicNames(settings.topic_prefix)
    consumer = Consumer(consumer_config(settings.confluent_config(), group_id=f"{settings.topic_prefix}.floor-engine",
                                        client_id=f"{settings.topic_prefix}.floor-engine"))
    consumer.subscribe([names.commands])
    producer = _producer(settings, "engine")
    task_topic = names.activity_tasks("default")
    while True:
        msgs = fatal_or_log(consume_available(consumer, batch, window), "floor engine")
        if not msgs:
            producer.poll(0)
            continue
        effects: list[tuple[str, bytes | None, bytes, int | None]] = []
        for m in msgs:
            value = m.value() or b""
            kind = value[:1]
            f = _fields(value)
            wid = f[1]
            for seq in range(_EVENTS.get(kind, 0)):
                producer.produce(names.events, _record(b"E", wid, kind, str(seq).encode()),
                                 key=wid + b"/" + str(seq).encode() + kind, partition=m.partition())
            if kind == b"S":
                reply_p, cid = f[2], f[3]
                effects.append((names.replies, cid, _record(b"A", cid), int(reply_p)))
                effects.append((task_topic, wid, _record(b"T", wid, reply_p, cid), None))
            elif kind == b"C":
                reply_p, cid = f[2], f[3]
                effects.append((names.replies, cid, _record(b"D", cid), int(reply_p)))
        producer.flush()  # the batch's events are durable (acks=all) ...
        for topic, key, value, part in effects:  # ... before any of its effects leaves
            if part is None:
                producer.produce(topic, value, key=key)
            else:
                producer.produce(topic, value, key=key, partition=part)
        producer.flush()
        consumer.commit(asynchronous=True)


def run_worker(settings: Settings, batch: int = 500, window: float = 0.1) -> None:
    names = TopicNames(settings.topic_prefix)
    consumer = Consumer(consumer_config(settings.confluent_config(), group_id=f"{settings.topic_prefix}.floor-workers",
                                        client_id=f"{settings.topic_prefix}.floor-worker"))
    consumer.subscribe([names.activity_tasks("default")])
    producer = _producer(settings, "worker")
    last_commit = time.monotonic()
    while True:
        msgs = fatal_or_log(consume_available(consumer, batch, window), "floor worker")
        for m in msgs:
            f = _fields(m.value() or b"")
            wid, reply_p, cid = f[1], f[2], f[3]
            producer.produce(names.commands, _record(b"R", wid, reply_p, cid), key=wid)
            producer.produce(names.commands, _record(b"C", wid, reply_p, cid), key=wid)
        producer.poll(0)
        if time.monotonic() - last_commit > 0.2:
            producer.flush()
            consumer.commit(asynchronous=True)
            last_commit = time.monotonic()


class FloorDriver:
    """The floor's client: sends a start, waits for Kafka's ack, then for both replies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self._producer = AsyncProducer(_producer_config(settings, "client", 2))
        self._waiters: dict[bytes, tuple[asyncio.Future[None], asyncio.Future[None]]] = {}
        self._stop = False
        self._thread: Any = None
        self.partition = 0

    async def start(self) -> None:
        import random
        import threading

        loop = asyncio.get_running_loop()
        self._producer.start()
        consumer = Consumer(consumer_config(self.settings.confluent_config(),
                                            group_id=f"{self.settings.topic_prefix}.floor-client.{uuid.uuid4().hex}",
                                            client_id=f"{self.settings.topic_prefix}.floor-client",
                                            **{"fetch.wait.max.ms": 100}))
        self.partition = random.randrange(self.settings.partitions)
        tp = TopicPartition(self.names.replies, self.partition)
        _low, high = await loop.run_in_executor(None, watermarks, consumer, tp)
        consumer.assign([TopicPartition(self.names.replies, self.partition, high)])

        def serve() -> None:
            while not self._stop:
                msgs = fatal_or_log(consume_available(consumer, 256, 0.1), "floor client")
                if msgs:
                    batch = [m.value() or b"" for m in msgs]
                    try:
                        loop.call_soon_threadsafe(self._dispatch, batch)
                    except RuntimeError:
                        break
            consumer.close()

        self._thread = threading.Thread(target=serve, name="aion-floor-replies", daemon=True)
        self._thread.start()

    def _dispatch(self, batch: list[bytes]) -> None:
        for value in batch:
            f = _fields(value)
            w = self._waiters.get(f[1])
            if w is None:
                continue
            fut = w[0] if value[:1] == b"A" else w[1]
            if not fut.done():
                fut.set_result(None)

    async def run_one(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        cid = uuid.uuid4().hex.encode()
        wid = f"floor-{i}".encode()
        waiter = (loop.create_future(), loop.create_future())
        self._waiters[cid] = waiter
        try:
            fut = await self._producer.produce(self.names.commands, _record(b"S", wid, str(self.partition).encode(), cid), wid)
            await fut
            await waiter[0]  # ACCEPTED
            await waiter[1]  # RESULT
        finally:
            self._waiters.pop(cid, None)

    async def close(self) -> None:
        self._stop = True
        await self._producer.close()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)


def main(argv: list[str]) -> None:
    role = argv[0] if argv else ""
    settings = Settings.from_env()
    if role == "engine":
        run_engine(settings)
    elif role == "worker":
        run_worker(settings)
    else:
        raise SystemExit("usage: python -m aion.bench._floor engine|worker")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        pass
