"""A live view of the events topic for the chaos test: who is open, who made progress when.

A thread follows every partition of ``<prefix>.events`` from offset 0 with a plain
confluent-kafka consumer (manual assignment, no group) and records, per workflow, the highest
seq seen, whether its last run closed, and *when* (monotonic time of arrival here) each new seq
arrived. Re-written records (same seq again, after a crash) are not progress.

Recovery after a fault at time ``t`` = how long until every workflow that was open at ``t``
recorded a new seq — the slowest of them is the time the engine needed to take over.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

from aion.codec import Codec, partition_for

#: librdkafka's messages (connection refused while the broker restarts, ...) are expected here.
_quiet = logging.getLogger("chaos.follow")
_quiet.propagate = False
_quiet.addHandler(logging.NullHandler())
from aion.model import (RUN_CLOSING_EVENTS, ActivityCompleted, ActivityFailed, ActivityStarted, ActivityTimedOut,
                        WorkflowContinuedAsNew)


@dataclass
class Track:
    workflow_id: str
    max_seq: int = 0
    closed: bool = False
    status: str = "RUNNING"
    last_type: str = ""
    #: The worker identity of the last ``ActivityStarted`` while that attempt is open, else "".
    running_on: str = ""
    #: (seq, arrival) for every new seq, in arrival order.
    arrivals: list[tuple[int, float]] = field(default_factory=list)

    def first_progress_after(self, t: float, seq: int) -> float | None:
        for s, at in self.arrivals:
            if s > seq and at >= t:
                return at
        return None


class EventFollower:
    def __init__(self, conf: dict[str, object], topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.codec = Codec()
        self._lock = threading.Lock()
        self._tracks: dict[str, Track] = {}
        self.records = 0
        self.rewrites = 0
        self._stop = threading.Event()
        c = dict(conf)
        c.update({
            "group.id": f"chaos-follow-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Only committed records are progress (the engine writes in transactions; a fenced
            # zombie's aborted records are not history): explicit, not librdkafka's default.
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
            "logger": _quiet,
        })
        self._conf = c
        self._consumer = Consumer(c)
        self._next: dict[int, int] = {p: 0 for p in range(partitions)}
        self._reconnect = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="chaos-follow", daemon=True)

    def start(self) -> "EventFollower":
        self._consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self._consumer.close()
        except Exception:
            pass

    def reconnect(self) -> None:
        """Start over with a new consumer at the current positions (after a broker restart: a
        librdkafka consumer with manually assigned partitions sometimes never fetches again,
        see confluentinc/librdkafka#5153)."""
        self._reconnect.set()

    def _lagging(self) -> bool:
        try:
            return any(self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=1)[1] > off
                       for p, off in self._next.items())
        except Exception:
            return False

    def _run(self) -> None:
        last_msg = time.monotonic()
        while not self._stop.is_set():
            stalled = False
            if time.monotonic() - last_msg > 3:
                stalled = self._lagging()
                last_msg = time.monotonic()  # check again in 3 s at the earliest
            if self._reconnect.is_set() or stalled:
                self._reconnect.clear()
                try:
                    self._consumer.close()
                except Exception:
                    pass
                self._consumer = Consumer(self._conf)
                self._consumer.assign([TopicPartition(self.topic, p, off) for p, off in self._next.items()])
                self.reconnects += 1
                last_msg = time.monotonic()
            try:
                msgs = self._consumer.consume(2000, 0.1)
            except Exception:  # broker restarting: librdkafka reconnects by itself
                time.sleep(0.2)
                continue
            now = time.monotonic()
            if msgs:
                last_msg = now
            with self._lock:
                for m in msgs:
                    if m.error() is not None:
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            _quiet.debug("consume error: %s", m.error())
                        continue
                    self._next[m.partition()] = m.offset() + 1
                    if m.value() is None:
                        continue
                    ev = self.codec.decode_event(m.value())
                    self.records += 1
                    t = self._tracks.get(ev.workflow_id)
                    if t is None:
                        t = self._tracks[ev.workflow_id] = Track(ev.workflow_id)
                    if ev.seq <= t.max_seq:
                        self.rewrites += 1
                        continue
                    t.max_seq = ev.seq
                    t.last_type = type(ev.body).__name__
                    t.arrivals.append((ev.seq, now))
                    if isinstance(ev.body, ActivityStarted):
                        t.running_on = ev.body.worker
                    elif isinstance(ev.body, (ActivityCompleted, ActivityFailed, ActivityTimedOut)):
                        t.running_on = ""
                    if isinstance(ev.body, RUN_CLOSING_EVENTS) and not isinstance(ev.body, WorkflowContinuedAsNew):
                        t.closed = True
                        t.status = type(ev.body).__name__
                    elif not isinstance(ev.body, WorkflowContinuedAsNew):
                        t.closed = False

    # ------------------------------------------------------------------ queries (thread-safe)

    def snapshot_open(self) -> dict[str, int]:
        """workflow id -> highest seq, for every workflow whose last run is open."""
        with self._lock:
            return {w: t.max_seq for w, t in self._tracks.items() if not t.closed}

    def known(self) -> set[str]:
        """Every workflow id with at least one event."""
        with self._lock:
            return set(self._tracks)

    def closed(self) -> set[str]:
        with self._lock:
            return {w for w, t in self._tracks.items() if t.closed}

    def track(self, workflow_id: str) -> Track | None:
        with self._lock:
            t = self._tracks.get(workflow_id)
            return None if t is None else Track(t.workflow_id, t.max_seq, t.closed, t.status, t.last_type,
                                                t.running_on, list(t.arrivals))

    def running_on(self, worker_prefix: str) -> dict[str, int]:
        """workflow id -> highest seq, for open workflows with an attempt running on a worker
        whose identity starts with ``worker_prefix``."""
        with self._lock:
            return {w: t.max_seq for w, t in self._tracks.items()
                    if not t.closed and t.running_on.startswith(worker_prefix)}

    def recovery(self, t0: float, open_at_t0: dict[str, int]) -> tuple[float | None, list[str]]:
        """(seconds until every workflow of ``open_at_t0`` recorded a new seq after ``t0`` — None
        while some have not, and those ids)."""
        worst = 0.0
        waiting: list[str] = []
        with self._lock:
            for w, seq in open_at_t0.items():
                t = self._tracks.get(w)
                at = t.first_progress_after(t0, seq) if t is not None else None
                if at is None:
                    waiting.append(w)
                else:
                    worst = max(worst, at - t0)
        return (None if waiting else worst), waiting


def probe_ids(partitions: int, name: str = "probe") -> list[str]:
    """One workflow id per partition."""
    ids: dict[int, str] = {}
    i = 0
    while len(ids) < partitions:
        wid = f"{name}-{i}"
        ids.setdefault(partition_for(wid, partitions), wid)
        i += 1
    return [ids[p] for p in range(partitions)]
