"""The cancel watcher: delivers CancelActivityTask records while the task consumer is paused.

Back-pressure pauses the worker's group consumer when N activities are in flight, and a cancel
request for one of those activities sits on the same partition *behind* it (the engine keys task
and cancel records alike). So a second, group-less consumer reads every partition of the task
topic from the end offset it finds at start-up (before the worker starts anything) and hands
each ``CancelActivityTask`` to the worker. Other records are skipped, most without decoding: the
encoded prefix of a cancel (its schema fingerprint) is compared first when the codec's framing
allows it.

Cost: every worker of a queue reads the queue's records once more. Activity tasks are small; the
alternative — an unbounded local backlog or re-reading from a rewind mark — costs more memory or
more reads under load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from ..common.kafka import consume_available, consumer_config, fatal_or_log, private_group_id, watermarks
from ..model import CancelActivityTask

log = logging.getLogger(__name__)


class CancelWatcher:
    def __init__(
        self,
        base_config: dict[str, Any],
        topic: str,
        decode: Callable[[bytes], Any],
        cancel_prefix: bytes,
        on_cancel: Callable[[CancelActivityTask], None],
        *,
        prefix: str,
    ) -> None:
        self._base_config = base_config
        self._topic = topic
        self._decode = decode
        self._cancel_prefix = cancel_prefix
        self._on_cancel = on_cancel
        self._prefix = prefix
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._partitions = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        consumer = Consumer(
            consumer_config(
                self._base_config,
                group_id=private_group_id(self._prefix, "cancel-watcher"),
                client_id=f"{self._prefix}.cancel-watcher",
                # Like the task consumer: a cancel of an aborted transaction must not act.
                **{"auto.offset.reset": "latest", "fetch.wait.max.ms": 100,
                   "isolation.level": "read_committed"},
            )
        )
        self._consumer = consumer
        await self._loop.run_in_executor(None, self._assign_all)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="aion-cancel-watcher", daemon=True)
        self._thread.start()

    def _assign_all(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        md = consumer.list_topics(self._topic, timeout=10)
        tmd = md.topics.get(self._topic)
        if tmd is None or tmd.error is not None:
            raise KafkaException(tmd.error if tmd is not None else f"topic {self._topic} missing")
        tps = []
        for p in sorted(tmd.partitions):
            _low, high = watermarks(consumer, TopicPartition(self._topic, p))
            tps.append(TopicPartition(self._topic, p, high))
        consumer.assign(tps)
        self._partitions = len(tps)

    def _serve(self) -> None:
        consumer = self._consumer
        loop = self._loop
        assert consumer is not None and loop is not None
        while not self._stop.is_set():
            try:
                msgs = fatal_or_log(consume_available(consumer, 500, 0.1), "cancel watcher")
            except KafkaException as exc:  # pragma: no cover
                log.error("the cancel watcher failed: %s", exc)
                return
            cancels: list[CancelActivityTask] = []
            for m in msgs:
                value = m.value()
                if not value or (self._cancel_prefix and not value.startswith(self._cancel_prefix)):
                    continue
                try:
                    task = self._decode(value)
                except Exception:
                    continue
                if isinstance(task, CancelActivityTask):
                    cancels.append(task)
            for c in cancels:
                try:
                    loop.call_soon_threadsafe(self._on_cancel, c)
                except RuntimeError:  # loop closed
                    return

    async def close(self) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            await loop.run_in_executor(None, self._thread.join)
            self._thread = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await loop.run_in_executor(None, consumer.close)
