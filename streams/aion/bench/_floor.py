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

**The transactional floor** (``engine-txn``, ``aion bench --floor txn``) is the pattern the
engine has used since "Single writer": each partition's batch is one Kafka transaction of its own
transactional producer (a partition's batches one after the other, the partitions side by side,
the next batch what arrived while the last one committed), holding the batch's events, effects
(replies, tasks) and the rows the engine's tables would write to their compacted changelogs
(``workflows``, ``timers``, ``timer_terminal``, ``progress``: the same partitions a transaction of
the engine touches, about as many records). It is what the broker allows for the engine's
records with fencing on; the bare floor above leaves out the transactions and the changelogs.

Run the roles as processes: ``python -m aion.bench._floor engine|engine-txn|worker`` (settings
from the ``AION_*`` environment).
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


#: A record to produce: topic, key, value, partition (None: by its key).
_Out = tuple[str, bytes | None, bytes, int | None]


def _outputs(names: TopicNames, task_topic: str, value: bytes, partition: int) -> tuple[bytes, bytes, list[_Out], list[_Out]]:
    """What the floor engine writes for one command: its kind, its workflow id, the events
    (the command's partition of the events topic) and the effects (replies, the task)."""
    kind = value[:1]
    f = _fields(value)
    wid = f[1]
    events: list[_Out] = [(names.events, wid + b"/" + str(seq).encode() + kind,
                           _record(b"E", wid, kind, str(seq).encode()), partition)
                          for seq in range(_EVENTS.get(kind, 0))]
    effects: list[_Out] = []
    if kind == b"S":
        reply_p, cid = f[2], f[3]
        effects.append((names.replies, cid, _record(b"A", cid), int(reply_p)))
        effects.append((task_topic, wid, _record(b"T", wid, reply_p, cid), None))
    elif kind == b"C":
        reply_p, cid = f[2], f[3]
        effects.append((names.replies, cid, _record(b"D", cid), int(reply_p)))
    return kind, wid, events, effects


def _send(producer: Producer, rec: _Out) -> None:
    topic, key, value, partition = rec
    if partition is None:
        producer.produce(topic, value, key=key)
    else:
        producer.produce(topic, value, key=key, partition=partition)


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
        effects: list[_Out] = []
        for m in msgs:
            _kind, _wid, events, out = _outputs(names, task_topic, m.value() or b"", m.partition())
            for rec in events:
                _send(producer, rec)
            effects.extend(out)
        producer.flush()  # the batch's events are durable (acks=all) ...
        for rec in effects:  # ... before any of its effects leaves
            _send(producer, rec)
        producer.flush()
        consumer.commit(asynchronous=True)


#: The tables whose changelogs an engine transaction writes, and (per command kind) how many
#: rows each gets: a start writes its workflow row and arms the activity's timeout; the
#: activity's completion closes the run (its row, the timer's deletion, a closed-run marker).
_ROWS = {b"S": ("workflows", "timers"), b"R": ("workflows",), b"C": ("workflows", "timers", "timer_terminal")}
_TABLES = ("workflows", "timers", "timer_terminal", "progress")


def _changelog(settings: Settings, table: str) -> str:
    return f"{settings.topic_prefix}.floor-{table}-changelog"


def _create_changelogs(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.confluent_config())
    new = [NewTopic(_changelog(settings, t), settings.partitions, settings.replication_factor,
                    config={"cleanup.policy": "compact"}) for t in _TABLES]
    for name, fut in admin.create_topics(new).items():
        try:
            fut.result()
        except Exception as exc:  # created by an earlier start of the role: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def run_engine_txn(settings: Settings, batch: int = 500) -> None:
    """The transactional floor engine (module docs): the intake on the main thread, one
    transaction pipeline per partition on a thread of its own."""
    import collections
    import threading

    names = TopicNames(settings.topic_prefix)
    _create_changelogs(settings)
    consumer = Consumer(consumer_config(settings.confluent_config(), group_id=f"{settings.topic_prefix}.floor-engine",
                                        client_id=f"{settings.topic_prefix}.floor-engine", **{"fetch.wait.max.ms": 10}))
    consumer.subscribe([names.commands])
    task_topic = names.activity_tasks("default")
    logs = {t: _changelog(settings, t) for t in _TABLES}
    queues: dict[int, collections.deque[Any]] = {}
    ready: dict[int, threading.Event] = {}

    def pipeline(p: int) -> None:
        try:
            transactions(p)
        except BaseException:  # the process dies, so the run sees its floor engine gone
            import os
            import traceback

            traceback.print_exc()
            os._exit(1)

    def transactions(p: int) -> None:
        producer = Producer(dict(_producer_config(settings, f"engine-{p}", 0), **{
            "transactional.id": f"{settings.topic_prefix}.floor-engine-{p}", "retry.backoff.ms": 2,
            "retry.backoff.max.ms": 100}))
        producer.init_transactions(30)
        q, ev = queues[p], ready[p]
        while True:
            ev.wait()
            ev.clear()
            while q:
                msgs = [q.popleft() for _ in range(min(batch, len(q)))]
                producer.begin_transaction()
                for m in msgs:
                    kind, wid, events, effects = _outputs(names, task_topic, m.value() or b"", p)
                    for rec in events + effects:
                        _send(producer, rec)
                    for table in _ROWS.get(kind, ()):
                        producer.produce(logs[table], _record(b"W", wid, kind), key=wid, partition=p)
                producer.produce(logs["progress"], str(msgs[-1].offset()).encode(), key=b"progress", partition=p)
                producer.commit_transaction(30)

    while True:
        msgs = fatal_or_log(consume_available(consumer, batch, 0.1), "floor engine")
        for m in msgs:
            p = m.partition()
            if p not in queues:
                queues[p] = collections.deque()
                ready[p] = threading.Event()
                threading.Thread(target=pipeline, args=(p,), name=f"floor-txn-{p}", daemon=True).start()
            queues[p].append(m)
            ready[p].set()
        if msgs:
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
    elif role == "engine-txn":
        run_engine_txn(settings)
    elif role == "worker":
        run_worker(settings)
    else:
        raise SystemExit("usage: python -m aion.bench._floor engine|engine-txn|worker")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        pass
