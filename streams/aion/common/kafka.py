"""asyncio adapters around confluent-kafka (shared by the client and the activity worker).

confluent-kafka is a blocking C client. Each adapter owns exactly one background thread that it
starts in ``start()`` and joins in ``close()`` (no hidden threads): the producer's thread serves
delivery reports, the consumer's thread polls. Results cross to the event loop through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any, Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..exceptions import AionError

log = logging.getLogger(__name__)


class DeliveryError(AionError):
    """A record could not be delivered to Kafka (after the client's own retries)."""

def producer_config(base: dict[str, Any], *, max_record_bytes: int, client_id: str) -> dict[str, Any]:
    """The producer settings aion uses everywhere.

    - ``acks=all`` + idempotence: an accepted command is on every in-sync replica, no duplicates
      from internal retries;
    - ``partitioner=murmur2_random``: keyed commands land on the same partition as aiokafka /
      Faust / the Java client would put them (the engine relies on it);
    - ``linger.ms=0``: a start or signal leaves at once (librdkafka still batches what queues
      while a request is in flight); a 2 ms linger added 2 ms to every start's latency.
    """
    cfg = dict(base)
    cfg.update(
        {
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 0,
            "message.max.bytes": max(1_000_000, max_record_bytes),
        }
    )
    return cfg

class AsyncProducer:
    """One confluent-kafka producer whose deliveries resolve asyncio futures."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def raw(self) -> Producer:
        assert self._producer is not None, "AsyncProducer.start() was not called"
        return self._producer

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, name=f"aion-producer-{self._config.get('client.id', '')}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._stop.is_set():
            producer.poll(0.05)

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Message]:
        """Enqueue one record; the future resolves (on the loop) once the broker acked it.

        Raises :class:`BufferError` when the local queue is full (see :meth:`produce`).
        """
        loop = self._loop
        assert loop is not None and self._producer is not None, "AsyncProducer.start() was not called"
        fut: asyncio.Future[Message] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if on_delivery is not None:
                try:
                    on_delivery(err, msg)
                except Exception:  # pragma: no cover - a callback bug must not kill the thread
                    log.exception("delivery callback failed")
            try:
                loop.call_soon_threadsafe(_settle, fut, err, msg)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": delivered}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        self._producer.produce(topic, **kwargs)
        return fut

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Message]:
        """Like :meth:`produce_nowait`, but waits for room when the local queue is full."""
        while True:
            try:
                return self.produce_nowait(topic, value, key, partition, on_delivery, headers)
            except BufferError:
                await asyncio.sleep(0.01)

    async def flush(self, timeout: float = 30.0) -> int:
        """Wait until every queued record is delivered; returns how many are still queued."""
        producer = self._producer
        if producer is None:
            return 0
        return await asyncio.get_running_loop().run_in_executor(None, producer.flush, timeout)

    async def close(self, timeout: float = 10.0) -> None:
        if self._producer is None:
            return
        remaining = await self.flush(timeout)
        if remaining:
            log.warning("closing the producer with %d undelivered record(s)", remaining)
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._producer = None
        self._thread = None

def _settle(fut: asyncio.Future[Message], err: KafkaError | None, msg: Message) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(DeliveryError(f"delivery to {msg.topic()} failed: {err.str()}"))
    else:
        fut.set_result(msg)

def private_group_id(prefix: str, what: str) -> str:
    """A consumer group id for a consumer that only uses manual assignment and never commits.

    confluent-kafka insists on a group id; with ``assign()`` and no commit the group is never
    joined nor created on the broker.
    """
    return f"{prefix}.{what}.{uuid.uuid4().hex}"

#: Consumers of engine output read committed records only. The engine writes each batch of its
#: output in a Kafka transaction; an aborted transaction's records stay in the log and a
#: read_uncommitted consumer would deliver them. librdkafka defaults to read_committed, but
#: every consumer here says so (Java and some other clients default to read_uncommitted).
READ_COMMITTED: dict[str, Any] = {"isolation.level": "read_committed"}

def consumer_config(
    base: dict[str, Any], *, group_id: str, client_id: str, **extra: Any
) -> dict[str, Any]:
    """A manually committing consumer that reads committed records only (``READ_COMMITTED``);
    ``extra`` overrides (confluent-kafka names with dots: pass them as ``**{"a.b": v}``)."""
    cfg = dict(base)
    cfg.update(
        {
            "group.id": group_id,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **READ_COMMITTED,
        }
    )
    cfg.update(extra)
    return cfg

def raise_for_message_error(msg: Message) -> None:
    err = msg.error()
    if err is not None and err.code() != KafkaError._PARTITION_EOF:
        raise KafkaException(err)

def consume_available(consumer: Any, n: int, timeout: float) -> list[Message]:
    """Up to ``n`` records: waits at most ``timeout`` for the first, then takes only what is
    already fetched.

    ``Consumer.consume(n, timeout)`` returns only once ``n`` records arrived *or* the timeout
    passed, so a quiet topic delays every record by up to ``timeout``; this returns as soon as
    one is there (and still hands over a whole batch under load).
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    if n <= 1:
        return [first]
    return [first, *consumer.consume(n - 1, 0)]

def fatal_or_log(msgs: Sequence[Message], where: str) -> list[Message]:
    """Drop (and log) error messages from a consume() batch; raise on fatal errors."""
    out: list[Message] = []
    for m in msgs:
        err = m.error()
        if err is None:
            out.append(m)
            continue
        if err.code() == KafkaError._PARTITION_EOF:
            continue
        if err.fatal():
            raise KafkaException(err)
        log.warning("%s: %s", where, err.str())
    return out

_TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError.NOT_COORDINATOR,
}

def watermarks(consumer: Any, tp: Any, timeout: float = 30.0) -> tuple[int, int]:
    """``consumer.get_watermark_offsets`` that rides out what a fresh topic or a leader change
    answers for a moment (not leader, leader not available, ...)."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=min(10.0, max(0.5, deadline - time.monotonic())))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code not in _TRANSIENT or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
