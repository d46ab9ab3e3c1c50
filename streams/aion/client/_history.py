"""Reading one workflow's history straight from the events topic.

A workflow's events are one ordered run of one partition (``partition_for(workflow_id, n)``),
keyed ``{workflow_id, seq}``. The topic is compacted and an engine that crashed mid-append may
write a seq again, so the reader keeps the *last* record per seq (a tombstone deletes it) and
orders by seq. Keys are compared before decoding values: the Avro key of a workflow starts with
the same bytes for every seq (framing, then the length-prefixed workflow id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from confluent_kafka import Consumer, Message, TopicPartition

from .._search_attributes import apply_upsert, decode_all, typed
from ..codec import Codec
from ..model import (
    RUN_CLOSING_EVENTS,
    STATUS_OF_CLOSE,
    Event,
    EventKey,
    WorkflowContinuedAsNew,
    WorkflowStarted,
)
from ..common.kafka import consume_available, consumer_config, fatal_or_log, private_group_id, watermarks


def closes_workflow(ev: Event) -> bool:
    """Whether ``ev`` ends the workflow (a run close that does not continue as new)."""
    return isinstance(ev.body, RUN_CLOSING_EVENTS) and not isinstance(ev.body, WorkflowContinuedAsNew)


class KeyFilter:
    """Matches event-record keys of one workflow, cheaply."""

    def __init__(self, codec: Codec, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self._decode = codec.decode_event_key
        prefix = b""
        try:
            probe = codec.encode_event_key(EventKey(workflow_id, 0))
            # seq 0 encodes as one zero byte (zig-zag varint) at the end of the key.
            if probe.endswith(b"\x00") and codec.decode_event_key(probe) == EventKey(workflow_id, 0):
                prefix = probe[:-1]
        except Exception:  # pragma: no cover - exotic codec: decode every key
            prefix = b""
        self._prefix = prefix

    def seq_of(self, key: bytes | None) -> int | None:
        """The seq when ``key`` belongs to this workflow, else None."""
        if key is None or (self._prefix and not key.startswith(self._prefix)):
            return None
        try:
            k = self._decode(key)
        except Exception:
            return None
        return k.seq if k.workflow_id == self.workflow_id else None


@dataclass
class EventPartitionReader:
    """A group-less consumer of one events partition (blocking; run it in a thread)."""

    base_config: dict[str, Any]
    topic: str
    partition: int
    prefix: str

    def open(self, from_beginning: bool = True) -> tuple[Consumer, int, int]:
        c = Consumer(
            consumer_config(
                self.base_config,
                group_id=private_group_id(self.prefix, "history"),
                client_id=f"{self.prefix}.history",
                **{"fetch.wait.max.ms": 100},
            )
        )
        tp = TopicPartition(self.topic, self.partition)
        low, high = watermarks(c, tp)
        c.assign([TopicPartition(self.topic, self.partition, low if from_beginning else high)])
        return c, low, high

    @staticmethod
    def position(c: Consumer, topic: str, partition: int) -> int:
        pos = c.position([TopicPartition(topic, partition)])[0].offset
        return pos


def read_until(
    c: Consumer, topic: str, partition: int, end: int, deadline: float
) -> Iterator[Message]:
    """Yield the partition's records until the position reaches ``end`` (exclusive)."""
    last = -1
    while True:
        if last >= end - 1:
            return
        # A short wait: a partition written in transactions ends with a commit marker, which is
        # never delivered; the position moves past it instead (checked below).
        msgs = fatal_or_log(consume_available(c, 1000, 0.02), f"events reader {topic}[{partition}]")
        for m in msgs:
            last = m.offset()
            yield m
        if not msgs or last < end - 1:
            pos = EventPartitionReader.position(c, topic, partition)
            if pos >= end:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic}[{partition}] up to offset {end} took too long (at {pos})"
                )


def fold(
    records: Iterator[Message], keys: KeyFilter, decode: Callable[[bytes], Event], into: dict[int, Event]
) -> None:
    """Apply records to a seq -> event map: last write per seq wins, tombstones delete."""
    for m in records:
        seq = keys.seq_of(m.key())
        if seq is None:
            continue
        value = m.value()
        if value is None:
            into.pop(seq, None)
        else:
            into[seq] = decode(value)


def read_history(
    reader: EventPartitionReader, codec: Codec, workflow_id: str, timeout: float = 60.0
) -> list[Event]:
    """The workflow's events recorded so far (up to the high watermark at the call), by seq."""
    c, low, high = reader.open()
    try:
        events: dict[int, Event] = {}
        if high > low:
            fold(
                read_until(c, reader.topic, reader.partition, high, time.monotonic() + timeout),
                KeyFilter(codec, workflow_id), codec.decode_event, events,
            )
        return [events[s] for s in sorted(events)]
    finally:
        c.close()


@dataclass
class WorkflowDescription:
    """What ``handle.describe()`` tells, computed from the workflow's events."""

    workflow_id: str
    run_id: str
    workflow_type: str
    #: RUNNING | COMPLETED | FAILED | CANCELLED | TERMINATED | TIMED_OUT | CONTINUED_AS_NEW
    status: str
    task_queue: str
    start_time_ms: int
    close_time_ms: int | None
    #: Events of the whole workflow id (every run).
    history_length: int
    #: Events of the latest run.
    run_history_length: int
    last_seq: int
    runs: int
    #: The latest run's search attributes: text, or the typed value of a typed attribute.
    search_attributes: dict[str, Any]
    parent_workflow_id: str | None = None
    cancel_requested: bool = False
    #: Paused by an operator (``handle.pause()``) and not resumed since.
    paused: bool = False
    #: How many times the latest run was reopened (``handle.reopen()``).
    reopens: int = 0
    #: The memo it was started with (``start_workflow(..., memo=...)``, a child's ``memo=``):
    #: values decoded by the client's converter (raw ``Payload`` objects without one).
    memo: dict[str, Any] = field(default_factory=dict)
    #: Its cron schedule (a cron workflow: each run is one fire), else "".
    cron_schedule: str = ""
    #: The attempt of the latest run (2 and more: a retry under the start's ``retry_policy``).
    attempt: int = 1
    #: When the latest run's code starts (epoch ms): a cron run waiting for its fire time, a
    #: retry waiting for its backoff; None once it started.
    first_task_at_ms: int | None = None
    #: The search attributes as :class:`aion.common.TypedSearchAttributes` (untyped: text keys).
    typed_search_attributes: Any = None


def describe(workflow_id: str, events: list[Event], converter: Any = None) -> WorkflowDescription:
    """Status of the latest run and a summary of the history (``events`` ordered by seq);
    ``converter`` decodes the memo."""
    from ..model import (
        MarkerRecorded, SearchAttributesUpserted, WorkflowCancelRequested, WorkflowPaused, WorkflowReopened, WorkflowResumed,
        reopen_ranges, taken_back,
    )

    last_run = events[-1].run_id
    run_events = [e for e in events if e.run_id == last_run]
    # What a reopen took back is not part of the run's state (it stays in the history).
    voids = reopen_ranges(run_events)
    live = [e for e in run_events if not taken_back(e.seq, voids)]
    started = next((e for e in run_events if isinstance(e.body, WorkflowStarted)), None)
    wf_type = started.body.workflow_type if started is not None else ""  # type: ignore[union-attr]
    status, closed_at = "RUNNING", None
    attrs: dict[str, str] = {}
    types: dict[str, str] = {}
    if started is not None:
        attrs = dict(started.body.search_attributes)  # type: ignore[union-attr]
        types = dict(started.body.search_attribute_types)  # type: ignore[union-attr]
    cancel_requested = paused = False
    first_task_at: int | None = None
    if started is not None and started.body.first_task_backoff_ms > 0:  # type: ignore[union-attr]
        first_task_at = started.recorded_at_ms + started.body.first_task_backoff_ms  # type: ignore[union-attr]
    for e in live:
        if e.seq > (started.seq if started is not None else 0) and first_task_at is not None and (
                (isinstance(e.body, MarkerRecorded) and e.body.marker_name == "aion.resume")
                or isinstance(e.body, RUN_CLOSING_EVENTS)):
            first_task_at = None  # the resume marker of its wf/start timer (or its close)
        if isinstance(e.body, WorkflowReopened):
            status, closed_at = "RUNNING", None
        elif isinstance(e.body, RUN_CLOSING_EVENTS):
            status, closed_at = STATUS_OF_CLOSE[type(e.body)], e.recorded_at_ms
        elif isinstance(e.body, SearchAttributesUpserted):
            apply_upsert(attrs, types, e.body.attributes, e.body.types, e.body.unset)
        elif isinstance(e.body, WorkflowCancelRequested):
            cancel_requested = True
        elif isinstance(e.body, (WorkflowPaused, WorkflowResumed)):
            paused = isinstance(e.body, WorkflowPaused)
    return WorkflowDescription(
        workflow_id=workflow_id,
        run_id=last_run,
        workflow_type=wf_type,
        status=status,
        task_queue=started.body.task_queue if started is not None else "",  # type: ignore[union-attr]
        start_time_ms=(started or run_events[0]).recorded_at_ms,
        close_time_ms=closed_at,
        history_length=len(events),
        run_history_length=len(run_events),
        last_seq=events[-1].seq,
        runs=len({e.run_id for e in events}),
        search_attributes=decode_all(attrs, types),
        parent_workflow_id=started.body.parent_workflow_id if started is not None else None,  # type: ignore[union-attr]
        cancel_requested=cancel_requested,
        paused=paused and status == "RUNNING",
        reopens=len(voids),
        memo=_memo(started.body.memo if started is not None else {}, converter),  # type: ignore[union-attr]
        cron_schedule=started.body.cron_schedule if started is not None else "",  # type: ignore[union-attr]
        attempt=started.body.attempt if started is not None else 1,  # type: ignore[union-attr]
        first_task_at_ms=first_task_at,
        typed_search_attributes=typed(attrs, types),
    )


def _memo(memo: dict[str, Any], converter: Any) -> dict[str, Any]:
    if converter is None:
        return dict(memo)
    out: dict[str, Any] = {}
    for k, v in memo.items():
        try:
            out[k] = converter.from_payload(v)
        except Exception:  # e.g. encrypted with a key this reader lacks: say what it is
            out[k] = f"<{v.content_type}, {len(v.data)} bytes>"
    return out
