"""The checker on a real broker: aborted transactions are not history, open ones are waited for.

The engine appends a batch's events in a Kafka transaction, and a fenced zombie's transaction is
aborted: its records stay in the log (with an abort marker after them) but belong to no history.
The checker reads with ``isolation.level=read_committed``, so it must not see them — while a
zombie's write that *did* get through (no transactions, or a fencing bug) is a strict
``rewrite`` violation.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from confluent_kafka import Producer

from aion.codec import Codec, partition_for
from aion.converter import default_converter
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames, ensure_topics
from aion.model import ActivityScheduled, Event, WorkflowCompleted, WorkflowStarted
from aion.testing import check_event_log, read_event_log

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

P = default_converter().to_payload


def _history(wid: str, at: int) -> list[Event]:
    return [
        Event(wid, 1, "r1", at, WorkflowStarted("W", [P(1)]), f"{wid}-c1"),
        Event(wid, 2, "r1", at + 1, ActivityScheduled("1", "work", [P(1)]), f"{wid}-c1"),
        Event(wid, 3, "r1", at + 2, WorkflowCompleted(P(1)), f"{wid}-c2"),
    ]


def _producer(settings: Settings, txn_id: str | None) -> Producer:
    conf = dict(settings.confluent_config(), **{"linger.ms": 0})
    if txn_id:
        conf["transactional.id"] = txn_id
    p = Producer(conf)
    if txn_id:
        p.init_transactions(30)
    return p


def _send(p: Producer, settings: Settings, codec: Codec, events: list[Event]) -> None:
    topic = TopicNames(settings.topic_prefix).events
    for e in events:
        p.produce(topic, key=codec.encode_event_key(e.key), value=codec.encode_event(e),
                  partition=partition_for(e.workflow_id, settings.partitions))
    p.flush(30)


def test_aborted_writes_are_not_history_and_a_committed_rewrite_is(settings: Settings) -> None:
    ensure_topics(settings)
    codec = Codec()
    now = int(time.time() * 1000)
    owner = _producer(settings, f"{settings.topic_prefix}-owner")
    zombie = _producer(settings, f"{settings.topic_prefix}-zombie")
    events = _history("wf", now)
    late = [dataclasses.replace(e, recorded_at_ms=e.recorded_at_ms + 6600) for e in events[:2]]

    owner.begin_transaction()
    _send(owner, settings, codec, events)
    owner.commit_transaction(30)
    zombie.begin_transaction()  # the zombie's version of seq 1 and 2, aborted (fenced)
    _send(zombie, settings, codec, late)
    zombie.abort_transaction(30)

    log = read_event_log(settings, settle=10)
    assert log.undecided == {}
    report = check_event_log(log, strict_recorded_at=True)
    assert report.ok, report.violations
    assert report.records == 3 and report.rewrite_records == 0

    # The same re-write, committed this time: two strict violations, at seq 1 and 2.
    plain = _producer(settings, None)
    _send(plain, settings, codec, late)
    report = check_event_log(read_event_log(settings, settle=10), strict_recorded_at=True)
    assert [(v.invariant, v.seq) for v in report.violations] == [("rewrite", 1), ("rewrite", 2)], report.violations
    assert check_event_log(read_event_log(settings, settle=10), strict_recorded_at=False).ok


def test_an_open_transaction_is_waited_for_or_reported(settings: Settings) -> None:
    ensure_topics(settings)
    codec = Codec()
    now = int(time.time() * 1000)
    p = _producer(settings, f"{settings.topic_prefix}-open")
    p.begin_transaction()
    _send(p, settings, codec, _history("wf", now))

    # Still open after the wait: reported, and nothing past the last stable offset is read.
    log = read_event_log(settings, settle=1.0)
    part = partition_for("wf", settings.partitions)
    assert part in log.undecided and log.undecided[part][0] < log.undecided[part][1]
    assert not [r for r in log.records if r.event is not None]

    # Committed while the checker waits: read whole.
    t = threading.Timer(1.0, lambda: p.commit_transaction(30))
    t.start()
    try:
        log = read_event_log(settings, settle=20)
    finally:
        t.join()
    assert log.undecided == {}
    assert check_event_log(log).ok
    assert [r.event.seq for r in log.records if r.event is not None] == [1, 2, 3]
