"""The deployments topic, read: every engine worker's builds and routes (no Faust here, the
client reads the topic with the same code).

``<prefix>.deployments`` (compacted, one partition: one order for every worker) holds the
deployed packages (key = build id) and the routes (key = ``route/<workflow type>``); see
``aion.deploy``. An engine worker reads it to its end before it takes any partition
(:meth:`DeploymentFeed.catch_up`, in ``worker.run_worker``), then follows it while it runs
(:meth:`DeploymentFeed.follow`): each build is unpacked under ``<data dir>/deploys/`` and
imported under its own module namespace into a Registry of its own, and the worker's
:class:`~aion.runtime._versions.VersionedRegistry` gets the builds and routes.

Nothing on the topic can stop a worker: a record that cannot be decoded or says something
inconsistent, or a build whose code does not import, is logged with the reason (and shown by
``aion deploy list``) and changes nothing else. They are not dead-lettered: every engine worker
reads every record at each start, so each would write the same dead letter again. A run pinned
to a build that did not load is held with that reason (``VersionNotLoadedError``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from ..codec import Codec
from ..deploy import BuildLoadError, DeploymentTable, load_build
from ..deploy._loader import forget_build
from ..deploy._table import Change
from ..common.access import KAFKA_LOG
from ..common.settings import Settings
from ..common.topics import TopicNames

log = logging.getLogger("aion.engine.deployments")

__all__ = ["DeploymentsReader", "DeploymentFeed", "read_deployments"]


class DeploymentsReader:
    """A consumer of the deployments topic in assign mode, from its first offset (never a
    group member, never commits), folding what it reads into ``table``."""

    def __init__(self, settings: Settings, codec: Codec, table: DeploymentTable | None = None) -> None:
        self.topic = TopicNames(settings.topic_prefix).deployments
        self.codec = codec
        self.table = table if table is not None else DeploymentTable()
        self._consumer = Consumer({
            **settings.confluent_config(),
            "logger": KAFKA_LOG,  # librdkafka's lines through logging, not stderr
            "group.id": f"{settings.topic_prefix}.deployments.{uuid.uuid4().hex[:8]}",
            "client.id": f"{settings.topic_prefix}.deployments-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
            "max.partition.fetch.bytes": max(1_048_576, settings.max_record_bytes),
            "fetch.max.bytes": max(52_428_800, settings.max_record_bytes),
        })
        self._assigned = False

    def _assign(self, timeout: float) -> dict[int, int]:
        """Assign every partition from offset 0; their end offsets now ({} : no topic yet)."""
        md = self._consumer.list_topics(self.topic, timeout=timeout)
        tmd = md.topics.get(self.topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            return {}
        ends = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)[1]
                for p in tmd.partitions}
        if not self._assigned:
            self._consumer.assign([TopicPartition(self.topic, p, 0) for p in tmd.partitions])
            self._assigned = True
        return ends

    def read_to_end(self, timeout: float = 30.0) -> list[tuple[Change, str]]:
        """Everything up to the end offsets of now (blocking). Raises TimeoutError when the end
        is not reached within ``timeout``."""
        deadline = time.monotonic() + timeout
        ends = self._assign(timeout)
        out: list[tuple[Change, str]] = []
        remaining = {p for p, end in ends.items() if end > 0}
        while remaining:
            out += self.poll(0.1)
            for tp in self._consumer.position([TopicPartition(self.topic, p) for p in remaining]):
                if tp.offset >= ends[tp.partition]:
                    remaining.discard(tp.partition)
            if remaining and time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.topic} to its end within {timeout:.0f}s "
                                   f"(partitions {sorted(remaining)} behind); is the broker reachable?")
        return out

    def poll(self, timeout: float) -> list[tuple[Change, str]]:
        """Fold the records that arrive within ``timeout`` (blocking); the accepted changes."""
        if not self._assigned and not self._assign(10.0):
            time.sleep(timeout)
            return []
        out: list[tuple[Change, str]] = []
        for m in self._consumer.consume(100, timeout):
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", self.topic, err)
                continue
            where = f"{self.topic}[{m.partition()}]@{m.offset()}"
            n = len(self.table.refused)
            change = self.table.apply_bytes(m.key(), m.value(), self.codec.decode_deployment, where)
            for w, reason in self.table.refused[n:]:
                log.warning("deployments record %s ignored: %s", w, reason)
            if change is not None:
                out.append((change, where))
        return out

    def close(self) -> None:
        self._consumer.close()


def read_deployments(settings: Settings, codec: Codec | None = None, timeout: float = 30.0) -> DeploymentTable:
    """The deployments table as the topic holds it now (blocking; for the client and the CLI)."""
    reader = DeploymentsReader(settings, codec or Codec(registry_url=settings.schema_registry_url))
    try:
        reader.read_to_end(timeout)
    finally:
        reader.close()
    return reader.table


class DeploymentFeed:
    """An engine worker's builds and routes, kept up to date from the deployments topic."""

    def __init__(self, settings: Settings, codec: Codec, versions: Any) -> None:
        self.settings = settings
        self.versions = versions  # a runtime VersionedRegistry
        self.reader = DeploymentsReader(settings, codec)
        self.deploys_dir = Path(settings.data_dir) / "deploys"
        self._stopped = False

    def catch_up(self, timeout: float = 60.0) -> None:
        """Read the topic to its end and load every build on it (before taking partitions)."""
        for change, where in self.reader.read_to_end(timeout):
            self._apply(change, where)
        builds = sorted(self.versions.builds)
        log.info("deployments: %d build(s) loaded%s, routes %s", len(builds),
                 f" ({', '.join(builds)})" if builds else "", self.versions.routes or "none")

    async def follow(self) -> None:
        """Apply new records as they come (an ``app.task`` of the engine worker)."""
        loop = asyncio.get_running_loop()
        while not self._stopped:
            try:
                await loop.run_in_executor(None, self.poll_once, 0.5)
            except asyncio.CancelledError:
                raise
            except Exception:  # never stop following
                log.exception("deployments: reading the topic failed; trying again")
                await asyncio.sleep(1.0)

    def poll_once(self, timeout: float) -> None:
        for change, where in self.reader.poll(timeout):
            self._apply(change, where)

    def _apply(self, change: Change, where: str) -> None:
        v = self.versions
        if change.kind == "route":
            v.set_route(change.workflow_type, change.build_id)
            log.info("deployments: new runs of %s take %s (%s)", change.workflow_type,
                     f"build {change.build_id!r}" if change.build_id else "this worker's own code", where)
            if change.build_id and change.build_id not in v.builds:
                log.warning("deployments: %s is routed to build %r, which is not loaded here (%s): its new runs are "
                            "held until it is", change.workflow_type, change.build_id, v.why_not_loaded(change.build_id))
        elif change.kind == "unload":
            v.drop_build(change.build_id)
            forget_build(change.build_id)
            log.info("deployments: build %r unloaded (%s)", change.build_id, where)
        elif change.kind == "deploy" and change.package is not None:
            pkg = change.package
            try:
                registry = load_build(pkg.build_id, pkg.root, pkg.modules, pkg.package, pkg.sha256, self.deploys_dir,
                                      base=v.base)
            except BuildLoadError as exc:
                v.build_failed(pkg.build_id, str(exc))
                log.error("deployments: build %r (%s) not loaded: %s; runs pinned to it are held", pkg.build_id,
                          where, exc)
                return
            except Exception as exc:  # an engine bug must not stop the worker either
                v.build_failed(pkg.build_id, f"{type(exc).__name__}: {exc}")
                log.exception("deployments: build %r (%s) not loaded", pkg.build_id, where)
                return
            v.add_build(pkg.build_id, registry)
            log.info("deployments: build %r loaded (%s): %s", pkg.build_id, where, ", ".join(sorted(registry.workflows)))

    def stop(self) -> None:
        self._stopped = True
