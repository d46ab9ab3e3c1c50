"""Crashes at exact points (``AION_FAULT``), then: the workflow goes on and the new owner's
tables equal a rebuild from the events topic.

The chaos test kills at random moments; these pin the narrow windows it found, so that a
regression fails every time instead of once in a while.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aion.client import Client
from aion.engine.settings import Settings
from aion.engine.topics import ensure_topics

from chaos_cluster import ChaosCluster

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


async def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s")
        await asyncio.sleep(0.1)


def _assert_tables_equal_a_rebuild(settings: Settings, data_dir: Path | None) -> None:
    """The stopped worker's tables in ``data_dir`` are the ones ``aion rebuild`` derives from
    the events topic and the changelogs."""
    from aion.engine._rebuild import rebuild_tables

    report = rebuild_tables(settings.replace(data_dir=data_dir), swap=False)
    assert {d.table: d.matches for d in report.digests} == {d.table: True for d in report.digests}, [
        (d.table, d.only_old, d.only_new, d.different) for d in report.digests if not d.matches]


@pytest.fixture
async def one_partition(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """One partition (every workflow on the crashing worker), a process cluster and a client
    patient enough for a hand-over (the crashed member's session timeout plus the survivor's
    start-up); all stopped afterwards. Engines get a 6 s session timeout (the broker's
    minimum), so the survivor takes over sooner."""
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1,
                        data_dir=tmp_path)
    ensure_topics(settings)
    cluster = ChaosCluster(settings, tmp_path)
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                                  rpc_timeout=90.0)
    try:
        yield settings, cluster, client
    finally:
        await client.close()
        cluster.stop()


@pytest.mark.parametrize("workflow,args,crashed_in,last,result", [
    # activity, then a 200 ms timer whose fire completes the run: the closed-run marker
    ("ActivityFlow", ["k", 0], "crash-1", ["TimerFired", "WorkflowCompleted"], "done:k"),
    # a timer fires inside a 300 s timeout: the same step cancels the timeout's (far) timer
    ("NapFlow", [200], "crash-1", ["TimerFired", "TimerCancelled", "WorkflowCompleted"], "rested"),
    # the child's last timer completes it: the step's effect is the result to the parent
    ("ParentFlow", [4], "crash-1-child", ["TimerFired", "WorkflowCompleted"], 41),
])
async def test_a_crash_right_after_a_fire_is_recorded(
        workflow: str, args: list[object], crashed_in: str, last: list[str], result: object,
        one_partition: tuple[Settings, ChaosCluster, Client], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker dies once the transaction of the batch with the fire committed (its events,
    effects and rows together), before its events reach the local tables. The next owner (fresh data folder: only the
    changelogs to restore from; its history caught up from the events topic before Faust's
    recovery) must finish the workflow and end with the tables a rebuild derives from the
    events topic."""
    settings, cluster, client = one_partition
    crashing = cluster.engine(AION_FAULT="after_fire_recorded", AION_SESSION_TIMEOUT="6")
    cluster.activities()
    h = await client.start_workflow(workflow, *args, id="crash-1")
    await _wait(lambda: not crashing.alive(), 60, "the engine did not crash at after_fire_recorded")
    assert "AION_FAULT=after_fire_recorded" in crashing.tail()
    # Committed: visible once the transaction coordinator wrote its markers (asynchronously).
    deadline = time.monotonic() + 10
    while True:
        history = await client.get_workflow_handle(crashed_in).history()
        if [e.type for e in history][-len(last):] == last or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [e.type for e in history][-len(last):] == last

    monkeypatch.setenv("AION_CHAOS_ENGINE_LOGLEVEL", "info")
    survivor = cluster.engine(AION_SESSION_TIMEOUT="6")  # a fresh data folder: only the changelogs to restore from
    assert await h.result(timeout=60) == result
    # A workflow after it on the same (only) partition: once it completes, the crashed
    # batch's command was re-delivered and handled by the survivor.
    assert await client.execute_workflow("ActivityFlow", "later", 0, id="crash-2", result_timeout=60) == "done:later"
    survivor_log = survivor.log.read_text(errors="replace")
    caught = [line for line in survivor_log.splitlines() if "] caught up {" in line]  # the engine's catch-up, every table
    assert caught and "'history':" in caught[0] and "'workflows':" in caught[0], survivor_log[-2000:]
    survivor.stop()
    _assert_tables_equal_a_rebuild(settings, survivor.data_dir)


@pytest.mark.parametrize("workflow,args,result", [
    ("ActivityFlow", ["k", 0], "done:k"),  # WorkflowStarted | ActivityScheduled
    ("TimerFlow", [3], 13),  # WorkflowStarted | TimerStarted
])
async def test_a_crash_inside_a_transaction_leaves_nothing_visible(
        workflow: str, args: list[object], result: object, one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """The worker dies after the start's step was handed to Kafka inside its transaction and
    before the commit. Nothing of it may be visible (readers read committed records only); the
    next owner's fencing aborts the transaction, reads the start again and records the step
    once, under the start's command id, and the workflow finishes.

    The next owner runs on the dead worker's data folder: nothing the aborted step staged may
    be in it (its timer rows were once written there before the commit, and such a row fired
    the timer at the aborted step's time, before the due time the log says); the tables it
    ends with are the ones a rebuild derives from the events topic."""
    settings, cluster, client = one_partition
    crashing = cluster.engine(AION_FAULT="mid_step_append", AION_SESSION_TIMEOUT="6")
    cluster.activities()
    # The start's answer comes from the survivor (the crashed worker never sent it).
    starting = asyncio.ensure_future(client.start_workflow(workflow, *args, id="cut-1"))
    await _wait(lambda: not crashing.alive(), 60, "the engine did not crash at mid_step_append")
    assert "AION_FAULT=mid_step_append" in crashing.tail()
    assert await client.get_workflow_handle("cut-1").history() == []

    survivor = cluster.engine(crashing.data_dir, AION_SESSION_TIMEOUT="6")
    h = await starting
    assert await h.result(timeout=90) == result
    history = await h.history()
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    start_cid = history[0].command_id
    assert history[1].type in ("ActivityScheduled", "TimerStarted") and history[1].command_id == start_cid
    assert sum(e.type == history[1].type and e.command_id == start_cid for e in history) == 1
    due = {e.body.timer_id: e.body.fire_at_ms for e in history if e.type == "TimerStarted"}  # type: ignore[union-attr]
    early = [(e.body.timer_id, due[e.body.timer_id] - e.recorded_at_ms) for e in history  # type: ignore[union-attr]
             if e.type == "TimerFired" and e.recorded_at_ms < due[e.body.timer_id]]  # type: ignore[union-attr]
    assert not early, f"timers fired before their due time (timer id, ms early): {early}"
    survivor.stop()
    _assert_tables_equal_a_rebuild(settings, survivor.data_dir)


def _command(settings: Settings, workflow_id: str, workflow_type: str, args: list[object]) -> bytes:
    import json as _json
    import uuid as _uuid

    from aion.codec import Codec
    from aion.model import Command, Payload, StartWorkflow

    body = StartWorkflow(workflow_type=workflow_type,
                         input=[Payload("application/json", _json.dumps(a).encode()) for a in args])
    return Codec().encode_command(Command(command_id=str(_uuid.uuid4()), workflow_id=workflow_id,
                                          sent_at_ms=int(time.time() * 1000), body=body))


def _producer(settings: Settings, **extra: object) -> "Producer":
    from confluent_kafka import Producer

    return Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "acks": "all", **extra})


async def test_a_sender_with_a_fast_clock_loses_nothing_across_a_takeover(
        one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """A start whose record carries a timestamp 5 s ahead of the engines' clocks (its sender's
    clock runs fast), and an engine that dies inside the start's step. The survivor must record
    the whole step and finish the workflow: no wall clock decides whether a command may be a
    re-delivery (the engine once skipped its recovery for records stamped after the hand-over,
    leaving such a step half-recorded forever)."""
    settings, cluster, client = one_partition
    crashing = cluster.engine(AION_FAULT="mid_step_append", AION_SESSION_TIMEOUT="6")
    cluster.activities()
    p = _producer(settings)
    p.produce(settings.topic_prefix + ".commands", _command(settings, "fast-1", "ActivityFlow", ["k", 0]),
              b"fast-1", timestamp=int(time.time() * 1000) + 5_000)
    p.flush(10)
    await _wait(lambda: not crashing.alive(), 60, "the engine did not crash at mid_step_append")
    cluster.engine(AION_SESSION_TIMEOUT="6")
    h = client.get_workflow_handle("fast-1")
    assert await h.result(timeout=90) == "done:k"
    assert [e.type for e in await h.history()][:2] == ["WorkflowStarted", "ActivityScheduled"]


async def test_commands_written_in_transactions_are_read_committed_and_never_stall_the_partition(
        one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """A foreign producer writes the commands topic in transactions: one committed start, one
    aborted start, then a plain start. Their control records take offsets that never arrive
    as records. The engine must start the committed and the plain workflow, never the aborted
    one, and go on with the partition."""
    settings, cluster, client = one_partition
    engine = cluster.engine()
    cluster.activities()
    topic = settings.topic_prefix + ".commands"
    tx = _producer(settings, **{"transactional.id": f"{settings.topic_prefix}-foreign"})
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce(topic, _command(settings, "tx-ok", "ActivityFlow", ["a", 0]), b"tx-ok")
    tx.commit_transaction(30)
    tx.begin_transaction()
    tx.produce(topic, _command(settings, "tx-aborted", "ActivityFlow", ["b", 0]), b"tx-aborted")
    tx.flush(10)  # on the log, then aborted
    tx.abort_transaction(30)
    plain = _producer(settings)
    plain.produce(topic, _command(settings, "plain-after", "ActivityFlow", ["c", 0]), b"plain-after")
    plain.flush(10)
    assert await client.get_workflow_handle("tx-ok").result(timeout=60) == "done:a"
    assert await client.get_workflow_handle("plain-after").result(timeout=60) == "done:c"
    assert await client.execute_workflow("ActivityFlow", "d", 0, id="later", result_timeout=60) == "done:d"
    assert await client.get_workflow_handle("tx-aborted").history() == []
    assert engine.alive()


async def test_a_refused_record_aborts_its_transaction_and_loses_nothing(
        one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """``AION_FAULT=refuse_record``: Kafka refuses a record in the middle of a batch's
    transaction. Nothing of the transaction may be visible, its commands are handled again one
    per transaction, and every workflow finishes with a gapless history written once."""
    from aion.testing import check_events_topic

    settings, cluster, client = one_partition
    engine = cluster.engine(AION_FAULT="refuse_record")
    cluster.activities()
    handles = await asyncio.gather(*(client.start_workflow("ActivityFlow", f"r{i}", 0, id=f"refused-{i}")
                                     for i in range(6)))
    assert [await h.result(timeout=60) for h in handles] == [f"done:r{i}" for i in range(6)]
    log = engine.tail(300)
    assert "AION_FAULT=refuse_record" in log and "was aborted" in log, log
    report = check_events_topic(settings, strict_recorded_at=True)
    assert not report.violations, report.violations
    assert engine.alive()


async def test_an_exception_in_the_effects_step_loses_no_command(
        one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """``AION_FAULT=effects_error``: an exception while a batch's effects are prepared. The
    batch's commands are handled again (one per transaction) and every workflow finishes; the
    engine keeps running."""
    from aion.testing import check_events_topic

    settings, cluster, client = one_partition
    engine = cluster.engine(AION_FAULT="effects_error")
    cluster.activities()
    handles = await asyncio.gather(*(client.start_workflow("ActivityFlow", f"e{i}", 0, id=f"effects-{i}")
                                     for i in range(4)))
    assert [await h.result(timeout=60) for h in handles] == [f"done:e{i}" for i in range(4)]
    assert "AION_FAULT=effects_error" in engine.tail(300)
    report = check_events_topic(settings, strict_recorded_at=True)
    assert not report.violations, report.violations
    assert engine.alive()


async def test_a_step_over_the_payload_limit_is_refused_before_the_append(
        one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """A workflow whose result is over ``AION_MAX_PAYLOAD_BYTES``: its closing step is refused
    before anything is written (Kafka would refuse the record, or accept a payload over the
    limit), its run is terminated with a ``PayloadTooLargeError`` reason, and the workflows
    around it are not affected."""
    from aion.exceptions import WorkflowFailureError
    from aion.testing import check_events_topic

    settings, cluster, client = one_partition
    engine = cluster.engine(AION_MAX_PAYLOAD_BYTES=str(64 * 1024))
    cluster.activities()
    big, small = await asyncio.gather(client.start_workflow("BigResultFlow", 200 * 1024, id="big-1"),
                                      client.start_workflow("BigResultFlow", 1024, id="small-1"))
    assert await small.result(timeout=60) == "x" * 1024
    with pytest.raises(WorkflowFailureError) as err:
        await big.result(timeout=60)
    assert "PayloadTooLargeError" in str(err.value) or "PayloadTooLargeError" in repr(err.value.__cause__)
    history = await big.history()
    assert [e.type for e in history][-1] == "WorkflowTerminated"
    assert "over the limit" in engine.tail(300)
    report = check_events_topic(settings, strict_recorded_at=True)
    assert not report.violations, report.violations
