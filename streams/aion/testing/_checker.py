"""An invariant checker for the events topic, independent of the engine.

It reads *every* record of ``<prefix>.events`` from the first offset with a plain
confluent-kafka consumer (manual assignment, nothing committed, ``isolation.level`` set to
``read_committed`` explicitly: a record of an aborted transaction — a fenced zombie's, a crashed
worker's — is not part of the history and is never seen), decodes keys and values with the
codec, and checks what the engine guarantees (ARCHITECTURE.md, "Guarantees") from the log
alone — not from the engine's RocksDB tables, not through the runtime:

``record``          every key decodes to the ``{workflow_id, seq}`` of its value, and the record
                    sits on the partition of its workflow id;
``rewrite``         a ``(workflow_id, seq)`` written more than once (a re-append after a crash)
                    holds the same event every time. Strict (the default): every field of the
                    event — ``recorded_at_ms`` included — and the record's value bytes are the
                    same; a stalled worker that wakes up and writes its own version of a seq the
                    new owner already wrote (ARCHITECTURE.md, guarantee 4) is caught even when
                    both versions mean the same. ``strict_recorded_at=False`` tolerates a
                    different ``recorded_at_ms`` alone (listed in ``recorded_at_drifts``);
``gapless``         each history is seq 1, 2, ... n — or, for a continue-as-new chain whose
                    closed runs the retention retired, its first ``WorkflowStarted``, then
                    seqs k..n from a step that closed a run and began the next (the retired
                    runs are not checked; ``retired_chains`` counts them);
``run``             each run starts with ``WorkflowStarted``, carries its run id, has exactly one
                    closing event and nothing after it; continue-as-new links the runs;
``command``         the events one command caused are one contiguous block (a command processed
                    twice would record two blocks);
``timer``           per run, every ``TimerStarted`` ends in exactly one ``TimerFired`` or
                    ``TimerCancelled`` — or in neither when the run closed first (the runtime
                    drops a closed run's timers without recording them); with
                    ``lost_timer_grace_ms``, a timer of an open run still pending that long
                    after its due time is *lost*; no ``TimerFired`` is recorded before its due
                    time (beyond ``early_fire_tolerance_ms``);
``activity``        per run and activity: one ``ActivityScheduled``; per attempt at most one
                    ``ActivityStarted`` and one outcome; only the current attempt records; no
                    activity completes twice or records after it closed;
``signal``          a signal id is received once per workflow;
``child``           a child's history names its parent, and the parent recorded the child's
                    actual outcome exactly once;
``task``            no ``WorkflowTaskFailed`` (unless ``allow_task_failures``);
``expected``        each workflow given in ``expected`` ended in that state with that result.

```python
from aion.testing import Expectation, check_events_topic

report = check_events_topic(settings, expected={"order-1": Expectation("COMPLETED", {"status": "shipped"})})
report.raise_for_violations()   # InvariantViolationError naming the first broken invariant and workflow
print(report.summary())
```
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..codec import Codec, partition_for
from ..converter import default_converter
from ..common.settings import Settings
from ..common.topics import TopicNames
from ..exceptions import AionError
from ..model import (
    ActivityCancelled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ActivityStarted,
    ActivityTimedOut,
    ChildWorkflowCancelled,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowStarted,
    ChildWorkflowTerminated,
    ChildWorkflowTimedOut,
    Event,
    RUN_CLOSING_EVENTS,
    STATUS_OF_CLOSE,
    SignalReceived,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowReopened,
    WorkflowStarted,
    WorkflowTaskFailed,
    without_taken_back,
)

__all__ = [
    "LogRecord",
    "EventLog",
    "Expectation",
    "Violation",
    "RecordedAtDrift",
    "CheckReport",
    "InvariantViolationError",
    "read_event_log",
    "check_event_log",
    "check_events_topic",
]

_STATUS = STATUS_OF_CLOSE
_CHILD_RESULTS = (ChildWorkflowCompleted, ChildWorkflowFailed, ChildWorkflowCancelled, ChildWorkflowTimedOut,
                  ChildWorkflowTerminated)
_CHILD_STATUS = {
    ChildWorkflowCompleted: "COMPLETED",
    ChildWorkflowFailed: "FAILED",
    ChildWorkflowCancelled: "CANCELLED",
    ChildWorkflowTimedOut: "TIMED_OUT",
    ChildWorkflowTerminated: "TERMINATED",
}
_MISSING: Any = object()


# ============================================================================ the log


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of the events topic as read (``event`` None for a tombstone or junk)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    event: Event | None = None
    error: str | None = None
    #: ``(workflow_id, seq)`` of a tombstone's key (None when it does not decode).
    tombstone: tuple[str, int] | None = None


@dataclass
class EventLog:
    """Every record of an events topic, in offset order per partition."""

    partitions: int
    records: list[LogRecord]
    #: partition -> (low, high) offsets read: the high one is the last stable offset (the end
    #: of the decided transactions) when the log was read with ``read_committed``.
    watermarks: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: Wall-clock time of the read (ms since the epoch); None for a hand-made log.
    read_at_ms: int | None = None
    #: partition -> (last stable offset, high watermark) of partitions where a transaction was
    #: still open when the read gave up waiting for it: records past it were not read.
    undecided: dict[int, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: Iterable[Event], *, partitions: int = 1, codec: Codec | None = None) -> "EventLog":
        """A log holding ``events`` in the given order (for checking hand-made histories)."""
        codec = codec or Codec()
        offsets: Counter[int] = Counter()
        records = []
        for ev in events:
            p = partition_for(ev.workflow_id, partitions)
            records.append(LogRecord(p, offsets[p], codec.encode_event_key(ev.key), codec.encode_event(ev), ev))
            offsets[p] += 1
        return cls(partitions, records, {p: (0, n) for p, n in offsets.items()})

    def histories(self) -> dict[str, list[Event]]:
        """Each workflow's history as the compacted topic will hold it (last record per seq)."""
        latest: dict[tuple[str, int], Event | None] = {}
        for r in self.records:
            if r.event is not None:
                latest[(r.event.workflow_id, r.event.seq)] = r.event
            elif r.tombstone is not None:
                latest[r.tombstone] = None
        out: dict[str, list[Event]] = defaultdict(list)
        for (wid, _), ev in latest.items():
            if ev is not None:
                out[wid].append(ev)
        for evs in out.values():
            evs.sort(key=lambda e: e.seq)
        return dict(out)


#: How the checker reads: only records of committed transactions (and non-transactional ones).
#: librdkafka's default too, but the checker's verdict must not hang on a default: a record of
#: an aborted transaction (a fenced zombie's write) is not part of any history.
ISOLATION_LEVEL = "read_committed"


def read_event_log(settings: Settings, *, codec: Codec | None = None, timeout: float = 120.0,
                   settle: float = 70.0) -> EventLog:
    """Read every committed record of ``<prefix>.events`` from its low watermark to the end found
    at the call, with a plain consumer (manual assignment, no group, no commit) that reads with
    ``isolation.level=read_committed``.

    The end is the high watermark at the call. Where a transaction is still open there (the
    last stable offset is behind it), the read waits up to ``settle`` seconds for it to be
    committed or aborted (the broker aborts a fenced or timed-out one), then reads to the last
    stable offset; partitions it gave up on are listed in :attr:`EventLog.undecided`."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    codec = codec or Codec(registry_url=settings.schema_registry_url)
    topic = TopicNames(settings.topic_prefix).events
    log = logging.getLogger("aion.testing.checker")
    conf = dict(settings.confluent_config())
    conf.update({
        "group.id": f"{settings.topic_prefix}.checker.{uuid.uuid4().hex}",
        "client.id": f"{settings.topic_prefix}.checker",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "max.partition.fetch.bytes": max(8 * 1024 * 1024, settings.max_record_bytes),
        # librdkafka's own messages go to logging, not to stderr.
        "logger": log,
    })
    consumer = Consumer({**conf, "isolation.level": ISOLATION_LEVEL})
    # Only to learn the high watermark (an uncommitted tail included): never reads a record.
    peek = Consumer({**conf, "group.id": f"{conf['group.id']}.peek", "isolation.level": "read_uncommitted"})
    read_at_ms = int(time.time() * 1000)
    try:
        md = consumer.list_topics(topic, timeout=30)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            raise RuntimeError(f"events topic {topic!r} does not exist on {settings.bootstrap_servers}: "
                               f"check the topic prefix ({settings.topic_prefix!r})")
        n = len(tmd.partitions)
        high = {p: peek.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(n)}
        settle_until = time.monotonic() + settle
        while True:
            # With read_committed, the broker answers the last stable offset as the end.
            marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30) for p in range(n)}
            behind = [p for p in range(n) if marks[p][1] < high[p]]
            if not behind or time.monotonic() > settle_until:
                break
            time.sleep(0.2)
        undecided = {p: (marks[p][1], high[p]) for p in behind}
        if undecided:
            log.warning("events topic %s: a transaction stayed open for %.0fs on partitions %s "
                        "(last stable offset, high watermark): read up to the last stable offset only",
                        topic, settle, undecided)
        pending = {p for p, (lo, hi) in marks.items() if hi > lo}
        records: list[LogRecord] = []
        if pending:
            consumer.assign([TopicPartition(topic, p, marks[p][0]) for p in sorted(pending)])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} partitions {sorted(pending)} to their end "
                                   f"within {timeout:.0f}s; is the broker healthy?")
            for m in consumer.consume(5000, 0.5):
                err = m.error()
                p = m.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= marks[p][1]:
                            pending.discard(p)
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    continue
                if p not in pending or m.offset() >= marks[p][1]:
                    pending.discard(p)
                    continue
                records.append(_decode(codec, p, m.offset(), m.key(), m.value()))
                if m.offset() >= marks[p][1] - 1:
                    pending.discard(p)
    finally:
        consumer.close()
        peek.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return EventLog(n, records, marks, read_at_ms=read_at_ms, undecided=undecided)


def _decode(codec: Codec, partition: int, offset: int, key: bytes | None, value: bytes | None) -> LogRecord:
    if value is None:
        tomb = None
        if key is not None:
            try:
                k = codec.decode_event_key(key)
                tomb = (k.workflow_id, k.seq)
            except Exception:
                pass
        return LogRecord(partition, offset, key, None, tombstone=tomb)
    try:
        ev = codec.decode_event(value)
    except Exception as exc:
        return LogRecord(partition, offset, key, value, None, f"undecodable value: {type(exc).__name__}: {exc}")
    return LogRecord(partition, offset, key, value, ev)


# ============================================================================ the report


@dataclass(frozen=True)
class Expectation:
    """How a workflow must end: its last run's status and, when given, its result.

    ``result`` is compared with the decoded ``WorkflowCompleted`` payload; for a FAILED
    workflow ``failure_type`` (when given) must be the type of the failure or of one of its causes.
    ``runs`` (when given) is the number of runs the history must hold (1 + continue-as-new count):
    a start that was executed twice shows up here.
    """

    status: str = "COMPLETED"
    result: Any = _MISSING
    failure_type: str | None = None
    runs: int | None = None


@dataclass(frozen=True)
class Violation:
    invariant: str
    workflow_id: str | None
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        where = f"workflow {self.workflow_id!r}" if self.workflow_id else "the log"
        at = f" at seq {self.seq}" if self.seq is not None else ""
        return f"[{self.invariant}] {where}{at}: {self.message}"


@dataclass(frozen=True)
class RecordedAtDrift:
    """A re-written ``(workflow_id, seq)`` whose event is the same in meaning but not in time."""

    workflow_id: str
    seq: int
    first_ms: int
    other_ms: int
    first_offset: int
    other_offset: int
    partition: int

    def __str__(self) -> str:
        return (f"{self.workflow_id!r} seq {self.seq}: recorded_at_ms {self.first_ms} (offset {self.first_offset}) "
                f"re-written as {self.other_ms} (offset {self.other_offset}, {self.other_ms - self.first_ms:+d} ms) "
                f"on partition {self.partition}")


class InvariantViolationError(AionError, AssertionError):
    """The events topic breaks an invariant; ``violations`` lists all, the message the first."""

    def __init__(self, report: "CheckReport") -> None:
        self.report = report
        self.violations = list(report.violations)
        first = self.violations[0]
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        super().__init__(f"{first}{more}")


@dataclass
class CheckReport:
    records: int = 0
    tombstones: int = 0
    workflows: int = 0
    runs: int = 0
    events: int = 0
    rewritten_keys: int = 0
    rewrite_records: int = 0
    timers: int = 0
    activities: int = 0
    activity_retries: int = 0
    signals: int = 0
    children: int = 0
    #: chains whose closed runs were retired (a gap after their first start: ``gapless``)
    retired_chains: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    event_types: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    recorded_at_drifts: list[RecordedAtDrift] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_invariant(self) -> Counter[str]:
        """How many violations of each invariant."""
        return Counter(v.invariant for v in self.violations)

    def raise_for_violations(self) -> None:
        if self.violations:
            raise InvariantViolationError(self)

    def summary(self) -> str:
        lines = [
            f"{self.records} records read ({self.rewrite_records} re-writes of {self.rewritten_keys} keys, "
            f"{self.tombstones} tombstones); {self.events} events in {self.workflows} workflows, {self.runs} runs",
            f"statuses: {dict(sorted(self.statuses.items()))}",
            f"timers {self.timers}, activities {self.activities} (retried attempts {self.activity_retries}), "
            f"signals {self.signals}, children {self.children}"
            + (f"; {self.retired_chains} chains with retired runs" if self.retired_chains else ""),
        ]
        if self.recorded_at_drifts:
            lines.append(f"{len(self.recorded_at_drifts)} re-written events with a different recorded_at_ms, "
                         f"e.g. {self.recorded_at_drifts[0]}")
        lines.append(f"violations: {len(self.violations)}"
                     + (f" {dict(sorted(self.by_invariant().items()))}; first: {self.violations[0]}"
                        if self.violations else ""))
        return "\n".join(lines)


# ============================================================================ the checks


def check_events_topic(settings: Settings, *, expected: Mapping[str, Expectation] | None = None,
                       **options: Any) -> CheckReport:
    """Read the events topic of ``settings`` from offset 0 and check it (see the module docs)."""
    return check_event_log(read_event_log(settings), expected=expected, **options)


def check_event_log(
    log: EventLog,
    *,
    expected: Mapping[str, Expectation] | None = None,
    only_expected: bool = False,
    require_closed: bool = True,
    allow_task_failures: bool = False,
    strict_recorded_at: bool = True,
    lost_timer_grace_ms: int | None = None,
    early_fire_tolerance_ms: int = 0,
    converter: Any = None,
) -> CheckReport:
    """Check ``log`` (see the module docs for the invariants).

    ``expected``: workflow id -> :class:`Expectation` (each must exist and end so).
    ``only_expected``: any other workflow id in the log is a violation.
    ``require_closed``: every workflow's last run must be closed.
    ``strict_recorded_at`` (strict mode, the default): a ``(workflow_id, seq)`` re-written with
    *any* field of the event different — ``recorded_at_ms`` included — or in other bytes is a
    violation; ``False`` lists a re-write that differs only in ``recorded_at_ms`` in
    ``recorded_at_drifts`` instead (every other difference is a violation either way).
    ``lost_timer_grace_ms``: a timer of an open run that is neither fired nor cancelled this long
    after its due time (measured at the read, :attr:`EventLog.read_at_ms`, else at the newest
    ``recorded_at_ms`` of the log) is a ``timer`` violation: a lost timer.
    ``early_fire_tolerance_ms``: a ``TimerFired`` recorded more than this before its
    ``TimerStarted``'s due time is a ``timer`` violation (0 suits engine workers that share one
    clock; allow for the clock skew between machines otherwise).
    """
    conv = converter or default_converter()
    rep = CheckReport(records=len(log.records))
    v = rep.violations
    now_ms = log.read_at_ms
    if now_ms is None:
        now_ms = max((r.event.recorded_at_ms for r in log.records if r.event is not None), default=0)

    # ---- records, re-writes
    first: dict[tuple[str, int], LogRecord] = {}
    seen_keys: Counter[tuple[str, int]] = Counter()
    codec = Codec()
    for r in log.records:
        if r.value is None:
            rep.tombstones += 1
            continue
        if r.event is None:
            v.append(Violation("record", None, f"partition {r.partition} offset {r.offset}: {r.error}"))
            continue
        ev = r.event
        try:
            k = codec.decode_event_key(r.key) if r.key is not None else None
        except Exception as exc:
            k = None
            v.append(Violation("record", ev.workflow_id, f"key at {r.partition}@{r.offset} does not decode: {exc}", ev.seq))
        if k is not None and (k.workflow_id, k.seq) != (ev.workflow_id, ev.seq):
            v.append(Violation("record", ev.workflow_id, f"record {r.partition}@{r.offset} has key "
                                                         f"({k.workflow_id!r}, {k.seq}) but holds seq {ev.seq}", ev.seq))
        elif r.key is None:
            v.append(Violation("record", ev.workflow_id, f"record {r.partition}@{r.offset} has no key", ev.seq))
        want = partition_for(ev.workflow_id, log.partitions)
        if r.partition != want:
            v.append(Violation("record", ev.workflow_id, f"record {r.partition}@{r.offset} is on partition "
                                                         f"{r.partition}, its workflow's partition is {want}", ev.seq))
        key = (ev.workflow_id, ev.seq)
        seen_keys[key] += 1
        orig = first.get(key)
        if orig is None:
            first[key] = r
            continue
        rep.rewrite_records += 1
        a, b = orig.event, ev
        assert a is not None
        diff = _differing_fields(a, b)
        if any(f != "recorded_at_ms" for f in diff):
            v.append(Violation("rewrite", ev.workflow_id,
                               f"written twice with different events ({', '.join(diff)} differ): {_describe(a)} at "
                               f"{orig.partition}@{orig.offset} vs {_describe(b)} at {r.partition}@{r.offset} "
                               f"(recorded_at_ms {a.recorded_at_ms} vs {b.recorded_at_ms}, "
                               f"{b.recorded_at_ms - a.recorded_at_ms:+d} ms)", ev.seq))
        elif diff:
            drift = RecordedAtDrift(ev.workflow_id, ev.seq, a.recorded_at_ms, b.recorded_at_ms, orig.offset,
                                    r.offset, r.partition)
            rep.recorded_at_drifts.append(drift)
            if strict_recorded_at:
                v.append(Violation("rewrite", ev.workflow_id, f"re-written with another recorded_at_ms: {drift}", ev.seq))
        elif strict_recorded_at and orig.value != r.value:
            v.append(Violation("rewrite", ev.workflow_id,
                               f"re-written with the same event in other bytes: {len(orig.value or b'')} bytes at "
                               f"{orig.partition}@{orig.offset} vs {len(r.value or b'')} bytes at "
                               f"{r.partition}@{r.offset}", ev.seq))
    rep.rewritten_keys = sum(1 for n in seen_keys.values() if n > 1)

    histories = log.histories()
    rep.workflows = len(histories)
    finals: dict[str, tuple[str | None, Any, Event | None]] = {}
    run_counts = {wid: sum(1 for e in evs if isinstance(e.body, WorkflowStarted)) for wid, evs in histories.items()}
    for wid, events in sorted(histories.items()):
        finals[wid] = _check_history(wid, events, rep, require_closed, allow_task_failures,
                                     now_ms if lost_timer_grace_ms is not None else None, lost_timer_grace_ms or 0,
                                     early_fire_tolerance_ms)

    # ---- children: the child names its parent; the parent recorded its real outcome once
    for wid, events in histories.items():
        started: dict[str, Event] = {}
        results: dict[str, list[Event]] = defaultdict(list)
        for ev in events:
            if isinstance(ev.body, ChildWorkflowStarted):
                started[ev.body.child_workflow_id] = ev
            elif isinstance(ev.body, _CHILD_RESULTS):
                results[ev.body.child_workflow_id].append(ev)
        rep.children += len(started)
        for cid, sev in started.items():
            got = results.get(cid, [])
            if len(got) > 1:
                v.append(Violation("child", wid, f"child {cid!r}: {len(got)} results recorded "
                                                 f"(seqs {[e.seq for e in got]})", got[1].seq))
            child = histories.get(cid)
            if child is None:
                if got and not isinstance(got[0].body, ChildWorkflowFailed):
                    v.append(Violation("child", wid, f"child {cid!r} has no history but the parent recorded "
                                                     f"{type(got[0].body).__name__}", got[0].seq))
                elif not got:
                    v.append(Violation("child", wid, f"child {cid!r} was started (seq {sev.seq}) but never ran"))
                continue
            st = child[0].body
            if isinstance(st, WorkflowStarted) and st.parent_workflow_id != wid:
                v.append(Violation("child", cid, f"started as child of {wid!r} but names parent "
                                                 f"{st.parent_workflow_id!r}", 1))
            status, payload, _ = finals.get(cid, (None, None, None))
            if got and status is not None and status != "CONTINUED_AS_NEW":
                want = _CHILD_STATUS[type(got[0].body)]
                if want != status:
                    v.append(Violation("child", wid, f"recorded child {cid!r} as {want} but it ended {status}",
                                       got[0].seq))
                elif isinstance(got[0].body, ChildWorkflowCompleted) and payload is not None \
                        and got[0].body.result != payload:
                    v.append(Violation("child", wid, f"recorded child {cid!r}'s result {_payload(conv, got[0].body.result)!r} "
                                                     f"but it returned {_payload(conv, payload)!r}", got[0].seq))
            elif not got and status not in (None, "CONTINUED_AS_NEW") and finals.get(wid, (None,))[0] == "RUNNING":
                v.append(Violation("child", wid, f"child {cid!r} ended {status} but the parent never recorded it"))

    # ---- expectations
    for wid, exp in (expected or {}).items():
        if wid not in histories:
            v.append(Violation("expected", wid, f"no history at all (expected {exp.status})"))
            continue
        status, payload, close = finals[wid]
        if exp.runs is not None and run_counts[wid] != exp.runs:
            v.append(Violation("expected", wid, f"{run_counts[wid]} runs recorded, expected {exp.runs}"))
        if status != exp.status:
            detail = ""
            if close is not None and isinstance(close.body, WorkflowFailed):
                detail = f" ({close.body.failure.type}: {close.body.failure.message})"
            v.append(Violation("expected", wid, f"ended {status}{detail}, expected {exp.status}",
                               close.seq if close is not None else None))
            continue
        if exp.result is not _MISSING and status == "COMPLETED":
            got = _payload(conv, payload)
            if got != exp.result:
                v.append(Violation("expected", wid, f"returned {got!r}, expected {exp.result!r}",
                                   close.seq if close is not None else None))
        if exp.failure_type is not None and close is not None and isinstance(close.body, WorkflowFailed):
            types = _failure_types(close.body.failure)
            if exp.failure_type not in types:
                v.append(Violation("expected", wid, f"failed with {types}, expected {exp.failure_type!r} among them",
                                   close.seq))
    if only_expected and expected is not None:
        for wid in sorted(set(histories) - set(expected)):
            v.append(Violation("expected", wid, "a workflow nobody expected"))
    return rep


def _check_history(wid: str, events: Sequence[Event], rep: CheckReport, require_closed: bool,
                   allow_task_failures: bool, now_ms: int | None = None,
                   grace_ms: int = 0, early_ms: int = 0) -> tuple[str | None, Any, Event | None]:
    """Per-workflow invariants; returns (final status, completed payload, closing event).

    With ``now_ms``, a timer of an open run pending more than ``grace_ms`` after its due time
    at ``now_ms`` is lost."""
    v = rep.violations
    rep.events += len(events)
    for ev in events:
        rep.event_types[type(ev.body).__name__] += 1
    tail = _retired_prefix(events)
    if tail is not None:
        rep.retired_chains += 1
        events = tail
    seqs = [e.seq for e in events]
    first = seqs[0] if tail is not None else 1
    if seqs != list(range(first, first + len(events))):
        missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
        v.append(Violation("gapless", wid, f"seqs are not 1..{len(events)}: missing {missing[:10]}"
                                           f"{'...' if len(missing) > 10 else ''} (max seq {max(seqs)})",
                           missing[0] if missing else None))
        return None, None, None

    # ---- command blocks: one command's events are contiguous
    block_end: dict[str, int] = {}
    prev: str | None = None
    for ev in events:
        cid = ev.command_id
        if cid and cid != prev and cid in block_end:
            v.append(Violation("command", wid, f"command {cid!r} recorded events again (seq {block_end[cid]} and "
                                               f"now {ev.seq}): processed twice", ev.seq))
        if cid:
            block_end[cid] = ev.seq
        prev = cid

    # ---- runs
    if not isinstance(events[0].body, WorkflowStarted):
        v.append(Violation("run", wid, f"history starts with {type(events[0].body).__name__}, not WorkflowStarted", 1))
        return None, None, None
    runs: list[list[Event]] = []
    for ev in events:
        if isinstance(ev.body, WorkflowStarted):
            runs.append([ev])
        else:
            runs[-1].append(ev)
    rep.runs += len(runs)
    status: str | None = None
    payload: Any = None
    close_ev: Event | None = None
    signal_ids: dict[str, int] = {}
    for i, run in enumerate(runs):
        run = without_taken_back(run)  # what a reopen took back is not part of the run's story
        start = run[0]
        rid = start.run_id
        closes = [e for e in run if isinstance(e.body, RUN_CLOSING_EVENTS)]
        for e in run:
            if e.run_id != rid:
                v.append(Violation("run", wid, f"{type(e.body).__name__} carries run id {e.run_id}, its run is {rid}", e.seq))
                break
        if len(closes) > 1:
            v.append(Violation("run", wid, f"run {rid} closed {len(closes)} times "
                                           f"({[type(c.body).__name__ for c in closes]})", closes[1].seq))
        elif closes and closes[0] is not run[-1]:
            after = run[run.index(closes[0]) + 1]
            v.append(Violation("run", wid, f"{type(after.body).__name__} recorded after run {rid} closed with "
                                           f"{type(closes[0].body).__name__}", after.seq))
        if i < len(runs) - 1:
            nxt = runs[i + 1][0]
            if not closes:
                v.append(Violation("run", wid, f"run {rid} never closed, yet run {nxt.run_id} started", nxt.seq))
            elif isinstance(closes[0].body, WorkflowContinuedAsNew):
                can = closes[0].body
                if can.new_run_id != nxt.run_id or nxt.body.previous_run_id != rid:  # type: ignore[union-attr]
                    v.append(Violation("run", wid, f"continue-as-new of run {rid} names run {can.new_run_id}, "
                                                   f"the next run is {nxt.run_id} (previous_run_id "
                                                   f"{nxt.body.previous_run_id})", nxt.seq))  # type: ignore[union-attr]
        closed = bool(closes)
        if closed:
            close_ev = closes[0]
            status = _STATUS[type(close_ev.body)]
            payload = close_ev.body.result if isinstance(close_ev.body, WorkflowCompleted) else None
        else:
            status, payload, close_ev = "RUNNING", None, None
        pending = _check_timers(wid, run, rep, early_ms)
        if now_ms is not None and not closed:
            for tid, te in pending.items():
                due = te.body.fire_at_ms  # type: ignore[union-attr]
                if due + grace_ms < now_ms:
                    v.append(Violation("timer", wid, f"lost timer {tid!r} of run {rid}: due {(now_ms - due) / 1000:.1f}s "
                                                     f"before the check (fire_at_ms {due}), neither fired nor "
                                                     f"cancelled", te.seq))
        _check_activities(wid, run, rep)
        for e in run:
            b = e.body
            if isinstance(b, SignalReceived):
                rep.signals += 1
                if b.signal_id:
                    if b.signal_id in signal_ids:
                        v.append(Violation("signal", wid, f"signal id {b.signal_id!r} received twice (seq "
                                                          f"{signal_ids[b.signal_id]} and {e.seq})", e.seq))
                    signal_ids[b.signal_id] = e.seq
            elif isinstance(b, WorkflowTaskFailed) and not allow_task_failures:
                v.append(Violation("task", wid, f"WorkflowTaskFailed attempt {b.attempt}: {b.failure.type}: "
                                                f"{b.failure.message}", e.seq))
    if status is not None:
        rep.statuses[status] += 1
    if require_closed and status == "RUNNING":
        last = events[-1]
        v.append(Violation("run", wid, f"never closed: its last event is seq {last.seq} {type(last.body).__name__}"))
    return status, payload, close_ev


def _retired_prefix(events: Sequence[Event]) -> list[Event] | None:
    """The runs to check of a chain whose closed runs were retired (``gapless``): the events
    from the first ``WorkflowStarted`` after the gap that follows the chain's first start, when
    the events between the gap and it all belong to the run that start names as its previous
    one (the step that closed it); None when ``events`` does not have that shape."""
    if len(events) < 3 or events[1].seq <= events[0].seq + 1 or not isinstance(events[0].body, WorkflowStarted):
        return None
    for i in range(1, len(events)):
        b = events[i].body
        if isinstance(b, WorkflowStarted):
            before = events[1:i]
            if before and (b.previous_run_id is None or any(e.run_id != b.previous_run_id for e in before)):
                return None
            return list(events[i:])
    return None


def _check_timers(wid: str, run: Sequence[Event], rep: CheckReport, early_ms: int = 0) -> dict[str, Event]:
    """Checks one run's timers; returns its pending ones (timer id -> ``TimerStarted``)."""
    v = rep.violations
    started: dict[str, Event] = {}
    ended: dict[str, Event] = {}
    for e in run:
        b = e.body
        if isinstance(b, TimerStarted):
            rep.timers += 1
            if b.timer_id in started:
                v.append(Violation("timer", wid, f"timer {b.timer_id!r} started twice in run {e.run_id}", e.seq))
            started[b.timer_id] = e
        elif isinstance(b, (TimerFired, TimerCancelled)):
            what = type(b).__name__
            if b.timer_id not in started:
                v.append(Violation("timer", wid, f"{what} for timer {b.timer_id!r} that run {e.run_id} never started", e.seq))
            elif b.timer_id in ended:
                v.append(Violation("timer", wid, f"timer {b.timer_id!r} ended twice: "
                                                 f"{type(ended[b.timer_id].body).__name__} (seq {ended[b.timer_id].seq}) "
                                                 f"and {what}", e.seq))
            else:
                ended[b.timer_id] = e
                due = started[b.timer_id].body.fire_at_ms  # type: ignore[union-attr]
                if isinstance(b, TimerFired) and e.recorded_at_ms + early_ms < due:
                    v.append(Violation("timer", wid, f"timer {b.timer_id!r} fired {due - e.recorded_at_ms} ms early "
                                                     f"(recorded at {e.recorded_at_ms}, due at {due})", e.seq))
    # A timer still pending when its run closed is dropped without an event (the runtime
    # records nothing on close); nothing can be recorded for it afterwards (see ``run``).
    return {tid: e for tid, e in started.items() if tid not in ended}


def _check_activities(wid: str, run: Sequence[Event], rep: CheckReport) -> None:
    v = rep.violations

    @dataclass
    class _A:
        scheduled: Event
        attempt: int = 1
        started: set[int] = field(default_factory=set)
        outcomes: set[int] = field(default_factory=set)
        closed_by: Event | None = None
        retry_at: int | None = None

    acts: dict[str, _A] = {}
    for e in run:
        b = e.body
        if isinstance(b, WorkflowReopened):  # open activities get a new attempt (unless in a backoff)
            for a in acts.values():
                if a.closed_by is None and not (a.retry_at is not None and a.retry_at > e.recorded_at_ms):
                    a.attempt += 1
                    a.retry_at = None
            continue
        if isinstance(b, ActivityScheduled):
            rep.activities += 1
            if b.activity_id in acts:
                v.append(Violation("activity", wid, f"activity {b.activity_id!r} scheduled twice in run {e.run_id}", e.seq))
                continue
            acts[b.activity_id] = _A(e)
            continue
        if not isinstance(b, (ActivityStarted, ActivityCompleted, ActivityFailed, ActivityTimedOut, ActivityCancelled,
                              ActivityCancelRequested)):
            continue
        a = acts.get(b.activity_id)
        what = type(b).__name__
        if a is None:
            v.append(Violation("activity", wid, f"{what} for activity {b.activity_id!r} never scheduled in run {e.run_id}", e.seq))
            continue
        if isinstance(b, ActivityCancelRequested):
            continue
        if a.closed_by is not None:
            v.append(Violation("activity", wid, f"{what} for activity {b.activity_id!r} after it closed with "
                                                f"{type(a.closed_by.body).__name__} (seq {a.closed_by.seq})", e.seq))
            continue
        if isinstance(b, ActivityCancelled):
            a.closed_by = e
            continue
        n = b.attempt
        if n != a.attempt:
            v.append(Violation("activity", wid, f"{what} for attempt {n} of activity {b.activity_id!r} while attempt "
                                                f"{a.attempt} is current (stale attempt recorded)", e.seq))
            continue
        if isinstance(b, ActivityStarted):
            a.retry_at = None
            if n in a.started:
                v.append(Violation("activity", wid, f"attempt {n} of activity {b.activity_id!r} started twice", e.seq))
            a.started.add(n)
            continue
        if n in a.outcomes:
            v.append(Violation("activity", wid, f"attempt {n} of activity {b.activity_id!r} recorded a second "
                                                f"outcome ({what})", e.seq))
            continue
        a.outcomes.add(n)
        if isinstance(b, (ActivityFailed, ActivityTimedOut)) and b.will_retry:
            a.attempt = n + 1
            a.retry_at = b.retry_at_ms
            rep.activity_retries += 1
        else:
            a.closed_by = e


def _differing_fields(a: Event, b: Event) -> list[str]:
    """The names of the fields of two events of one ``(workflow_id, seq)`` that differ — every
    field of :class:`~aion.model.Event`, so a field added to it is compared too."""
    return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]


def _describe(ev: Event) -> str:
    return f"{type(ev.body).__name__}(run {ev.run_id}, command {ev.command_id}, {ev.body!r:.200})"


def _payload(conv: Any, payload: Any) -> Any:
    if payload is None:
        return None
    try:
        return conv.from_payload(payload)
    except Exception:
        return payload


def _failure_types(f: Any) -> list[str]:
    out = []
    while f is not None:
        out.append(f.type)
        f = getattr(f, "cause", None)
    return out
