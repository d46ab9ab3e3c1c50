"""The client's inbox: one partition of the shared replies topic, dispatched by command id.

A client picks a partition of ``<prefix>.replies`` at random and assigns it (no consumer group)
at its current end offset *before* it sends anything, so no reply to one of its commands can be
produced before the position it reads from. Other clients may share the partition: records whose
key (the command id) nobody here waits for are skipped without decoding.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import weakref
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ..common.access import AUTHORIZATION_CODES, authorization_error
from ..common.settings import Settings
from ..model import Reply
from ._errors import TopicMissingError
from ..common.kafka import consume_available, consumer_config, fatal_or_log, private_group_id, watermarks

log = logging.getLogger(__name__)


class ReplyWaiter:
    """What one request waits for: the first answer (``ack``) and, later, a terminal ``RESULT``.

    One waiter may be registered under several command ids (a start's and the ``GetResult``
    that backs it up feed the same waiter); a ``GetResult`` re-sent every few seconds keeps its
    command id, so registering it again changes nothing.
    """

    __slots__ = ("ack", "result", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ack: asyncio.Future[Reply] = loop.create_future()
        self.result: asyncio.Future[Reply] = loop.create_future()
        # Nobody may ever await one of them (fire-and-forget starts): no "never retrieved" noise.
        self.ack.add_done_callback(_consume_exception)
        self.result.add_done_callback(_consume_exception)

    def deliver(self, reply: Reply) -> None:
        # An update's completion is its final answer, as a RESULT is a run's.
        if reply.kind == "RESULT" or (reply.kind == "UPDATE" and reply.status == "COMPLETED"):
            _set(self.result, reply)
            _set(self.ack, reply)
        elif reply.kind == "ERROR":
            _set(self.ack, reply)
            _set(self.result, reply)
        else:
            _set(self.ack, reply)


def _set(fut: asyncio.Future[Reply], reply: Reply) -> None:
    if not fut.done():
        fut.set_result(reply)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class ReplyRouter:
    """Consumes one replies partition in a background thread and resolves waiters on the loop."""

    def __init__(self, config: dict[str, Any], topic: str, decode: Any, *, prefix: str,
                 settings: Settings | None = None) -> None:
        self._base_config = config
        self._settings = settings or Settings(topic_prefix=prefix)  # for error messages only
        self._topic = topic
        self._decode = decode
        self._prefix = prefix
        # Weak: a handle that is dropped takes its waiter (and the RESULT it would get) along.
        self._waiters: weakref.WeakValueDictionary[str, ReplyWaiter] = weakref.WeakValueDictionary()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.partition: int = -1
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def reply_to(self) -> str:
        return f"{self._topic}:{self.partition}"

    async def start(self, partition: int | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = consumer_config(
            self._base_config,
            group_id=private_group_id(self._prefix, "client"),
            client_id=f"{self._prefix}.client",
            **{"fetch.wait.max.ms": 100, "auto.offset.reset": "latest"},
        )
        consumer = Consumer(cfg)
        self._consumer = consumer

        def assign() -> int:
            md = consumer.list_topics(self._topic, timeout=10)
            tmd = md.topics.get(self._topic)
            if tmd is not None and tmd.error is not None and tmd.error.code() in AUTHORIZATION_CODES:
                raise authorization_error(self._settings, tmd.error, "read", self._topic)
            if tmd is None or tmd.error is not None or not tmd.partitions:
                raise TopicMissingError(
                    f"replies topic {self._topic!r} does not exist on the broker: create the "
                    f"topics first (`aion topics create` or aion.common.topics.ensure_topics)"
                )
            p = partition if partition is not None else random.randrange(len(tmd.partitions))
            _low, high = watermarks(consumer, TopicPartition(self._topic, p))
            consumer.assign([TopicPartition(self._topic, p, high)])
            return p

        self.partition = await self._loop.run_in_executor(None, assign)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="aion-client-replies", daemon=True)
        self._thread.start()

    def register(self, command_id: str, waiter: ReplyWaiter) -> None:
        self._waiters[command_id] = waiter

    def unregister(self, command_id: str) -> None:
        self._waiters.pop(command_id, None)

    def _serve(self) -> None:
        consumer = self._consumer
        loop = self._loop
        assert consumer is not None and loop is not None
        while not self._stop.is_set():
            try:
                msgs = fatal_or_log(consume_available(consumer, 256, 0.1), "replies consumer")
            except KafkaException as exc:  # pragma: no cover - fatal consumer error
                log.error("the replies consumer failed: %s", exc)
                self._error = exc
                return
            if not msgs:
                continue
            batch = [(m.key(), m.value()) for m in msgs]
            try:
                loop.call_soon_threadsafe(self._dispatch, batch)
            except RuntimeError:  # loop closed
                return

    def _dispatch(self, batch: list[tuple[bytes | None, bytes | None]]) -> None:
        for key, value in batch:
            if value is None:
                continue
            if key is not None:
                try:
                    if key.decode("utf-8") not in self._waiters:
                        continue
                except UnicodeDecodeError:
                    continue
            try:
                reply: Reply = self._decode(value)
            except Exception as exc:  # another writer's garbage must not kill the inbox
                log.warning("undecodable record on %s: %s", self.reply_to, exc)
                continue
            waiter = self._waiters.get(reply.command_id)
            if waiter is not None:
                waiter.deliver(reply)

    async def close(self) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            await loop.run_in_executor(None, self._thread.join)
            self._thread = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await loop.run_in_executor(None, consumer.close)
