"""A fresh deployment per benchmark run: its own topic prefix, topics, processes and temp dir,
all removed at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..common.settings import Settings
from ..common.topics import TopicNames, ensure_topics
from ._procs import Procs

log = logging.getLogger("aion.bench")


class Deployment:
    """Topics on a fresh prefix plus the processes started for them."""

    def __init__(self, base: Settings, tag: str, *, keep: bool = False) -> None:
        # Under the caller's prefix: a principal limited to its prefix's ACLs can run the bench.
        prefix = f"{base.topic_prefix}.bench-{tag}-{uuid.uuid4().hex[:6]}"
        self.settings = dataclasses.replace(base, topic_prefix=prefix)
        self.names = TopicNames(prefix)
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"aion-{prefix}-"))
        self.procs = Procs(self.settings, self.dir)
        self._consumer: Consumer | None = None

    def __enter__(self) -> "Deployment":
        ensure_topics(self.settings)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.procs.stop()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if not self.keep:
            self.delete_topics()
            shutil.rmtree(self.dir, ignore_errors=True)

    def delete_topics(self) -> None:
        admin = AdminClient(self.settings.confluent_config())
        try:
            md = admin.list_topics(timeout=10)
        except Exception:  # the broker is gone: nothing to clean
            return
        mine = [t for t in md.topics if t.startswith(self.settings.topic_prefix + ".")
                or t.startswith(self.settings.topic_prefix + "-")]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                try:
                    fut.result()
                except Exception as exc:  # best effort
                    log.debug("delete topic: %s", exc)

    def end_offsets(self, topic: str) -> int:
        """Sum of the end offsets of ``topic``'s partitions (records ever appended)."""
        if self._consumer is None:
            cfg = dict(self.settings.confluent_config(), **{"group.id": f"{self.settings.topic_prefix}.bench.meta",
                                                             "isolation.level": "read_committed"})
            self._consumer = Consumer(cfg)
        total = 0
        for p in range(self.settings.partitions):
            total += self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return total

    async def aend_offsets(self, topic: str) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, self.end_offsets, topic)

    def logs(self) -> str:
        return self.procs.logs()


async def wait_ready(run_one: Any, deploy: Deployment, *, timeout: float = 120.0) -> float:
    """Run units until one completes (the processes are up and have their partitions);
    returns the seconds it took."""
    t0 = time.monotonic()
    i = 0
    while True:
        deploy.procs.check_alive()
        i += 1
        try:
            await asyncio.wait_for(run_one(-i), timeout=10.0)
            return time.monotonic() - t0
        except (asyncio.TimeoutError, Exception) as exc:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the {deploy.settings.topic_prefix} processes did not answer within "
                                   f"{timeout:.0f}s ({type(exc).__name__}: {exc}):\n{deploy.logs()}") from exc
            await asyncio.sleep(0.5)
