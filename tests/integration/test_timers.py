"""Durable timers through real Kafka and real engine processes: each fires once, on time,
across duplicated fires, cancels, kill -9 and restarts (issue 5)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from aion.bench._timers import fire_lags, produce_commands, read_commands, read_events
from aion.exceptions import WorkflowNotFoundError
from aion.model import Command, FireTimer, SignalWorkflow

from _procs import Proc


#: How long a test waits for a workflow after a kill -9 (session timeout + recovery).
KILL_WAIT = 150.0




@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    return make_cluster("timer_workflows")


def types(history) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.type for e in history]


async def wait_history(handle, predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        h = await handle.history()
        if predicate(h):
            return h
        if time.monotonic() > deadline:
            raise AssertionError(f"history of {handle.id} never matched: {types(h)}")
        await asyncio.sleep(0.1)


async def wait_exit(proc: Proc, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.alive():
        if time.monotonic() > deadline:
            raise AssertionError(f"engine did not exit within {timeout}s:\n{proc.tail()}")
        await asyncio.sleep(0.1)
    assert proc.p is not None
    return proc.p.returncode


def fire_cmd(wf: str, run_id: str, timer_id: str, fire_at: int, command_id: str | None = None) -> Command:
    return Command(command_id or f"test-{uuid.uuid4()}", wf, int(time.time() * 1000),
                   FireTimer(run_id=run_id, timer_id=timer_id, fire_at_ms=fire_at))


def terminal_events(history, timer_id: str = "1", run_id: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.type for e in history if e.type in ("TimerFired", "TimerCancelled")
            and e.body.timer_id == timer_id and (run_id is None or e.run_id == run_id)]


def dropped_fires(port: int) -> float:
    """The engine's ``aion_timer_fires_dropped_total``: due timers the wheel deleted unfired
    because their timer had already reached a terminal state."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    return sum(s.value for fam in text_string_to_metric_families(body) for s in fam.samples
               if s.name == "aion_timer_fires_dropped_total")


@pytest.mark.parametrize("fire", ["inline", "topic"])
async def test_fire_emitted_twice_records_once(cluster, client, settings, fire):  # type: ignore[no-untyped-def]
    from aion.testing.ports import free_port

    cluster.env["AION_TIMER_FIRE"] = fire
    port = free_port()
    cluster.engine(metrics_port=port)
    # A: the fire is emitted twice before the wheel's own fire is due.
    a = await client.start_workflow("SleepOnce", 2_500, id="dup-a")
    started = [e for e in await wait_history(a, lambda h: "TimerStarted" in types(h)) if e.type == "TimerStarted"][0]
    produce_commands(settings, [fire_cmd("dup-a", started.run_id, "1", started.body.fire_at_ms) for _ in range(2)])
    assert await a.result(timeout=30) == "fired"
    # B: a duplicate emitted exactly when the wheel fires (both race).
    b = await client.start_workflow("SleepOnce", 1_500, id="dup-b")
    sb = [e for e in await wait_history(b, lambda h: "TimerStarted" in types(h)) if e.type == "TimerStarted"][0]
    await asyncio.sleep(max(0.0, sb.body.fire_at_ms / 1000 - time.time()))
    produce_commands(settings, [fire_cmd("dup-b", sb.run_id, "1", sb.body.fire_at_ms,
                                         f"timer:dup-b:{sb.run_id}:1:{sb.body.fire_at_ms}"),
                                fire_cmd("dup-b", sb.run_id, "1", sb.body.fire_at_ms)])
    assert await b.result(timeout=30) == "fired"
    # Let A's own due time pass: the wheel finds the timer fired (timer_terminal) and sends nothing.
    await asyncio.sleep(max(0.0, started.body.fire_at_ms / 1000 - time.time()) + 2.0)
    for h in (a, b):
        assert terminal_events(await h.history()) == ["TimerFired"]
    wheel_fires_a = [c for c in read_commands(settings, ["dup-a"])
                     if isinstance(c.body, FireTimer) and c.command_id.startswith("timer:")]
    assert wheel_fires_a == [], "the wheel sent a fire for a timer already recorded as fired"
    # ... and deleted its row unfired: A's at least (B's own fire may have won its race).
    assert dropped_fires(port) >= 1, "the wheel never found a due timer already recorded as fired"


async def test_cancel_racing_fire_records_one_terminal_event(cluster, client, settings):  # type: ignore[no-untyped-def]
    cluster.engine()
    n = 12
    handles = [await client.start_workflow("CancelRace", 2_000, id=f"race-{i}") for i in range(n)]
    # Two whose race is forced (in both orders) long before their own due time.
    handles += [await client.start_workflow("CancelRace", 60_000, id=f"race-forced-{i}") for i in range(2)]
    starts = []
    for h in handles:
        hist = await wait_history(h, lambda x: "TimerStarted" in types(x))
        starts.append([e for e in hist if e.type == "TimerStarted"][0])

    async def stop_at(h, at_s: float) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(max(0.0, at_s - time.time()))
        try:
            await client.signal_workflow(h.id, "stop")
        except WorkflowNotFoundError:  # the timer won: the workflow has completed
            pass

    # Signals spread from 40 ms before to 40 ms after the due time.
    await asyncio.gather(*(stop_at(handles[i], starts[i].body.fire_at_ms / 1000 + (i - n / 2) * 0.007)
                           for i in range(n)))
    # Two more with the race forced in both orders within one produce.
    sig = lambda wf: Command(f"sig-{uuid.uuid4()}", wf, int(time.time() * 1000), SignalWorkflow("stop", []))  # noqa: E731
    x, y = starts[n], starts[n + 1]
    produce_commands(settings, [sig(x.workflow_id), fire_cmd(x.workflow_id, x.run_id, "1", x.body.fire_at_ms)])
    produce_commands(settings, [fire_cmd(y.workflow_id, y.run_id, "1", y.body.fire_at_ms), sig(y.workflow_id)])
    results = [await h.result(timeout=30) for h in handles]
    assert set(results) <= {"fired", "cancelled"}
    assert results[n:] == ["cancelled", "fired"]
    await asyncio.sleep(max(0.0, max(s.body.fire_at_ms for s in starts[:n]) / 1000 - time.time()) + 1.5)
    for h, r in zip(handles, results):
        t = terminal_events(await h.history())
        assert t == ["TimerFired" if r == "fired" else "TimerCancelled"], (h.id, t)


async def _kill_at(cluster, client, fault: str, same_dir: bool):  # type: ignore[no-untyped-def]
    if fault == "after_fire_emit":  # the wheel's own transaction of fires: only when they go through the topic
        cluster.env["AION_TIMER_FIRE"] = "topic"
    first = cluster.engine("faulty", fault=fault)
    h = await client.start_workflow("SleepTwice", 1_000, 300, id=f"kill-{fault}")
    code = await wait_exit(first, 30)
    assert code == 137, first.tail()
    cluster.engine("faulty" if same_dir else "replacement")  # restart, or fail over to a fresh worker
    try:
        # The new worker gets the partitions once the group drops the killed member (its
        # session times out: AION_SESSION_TIMEOUT, 6 s by default).
        assert await h.result(timeout=KILL_WAIT) == "woke"
    except Exception:
        print(cluster.logs())
        raise
    hist = await h.history()
    assert [e.body.timer_id for e in hist if e.type == "TimerFired"] == ["1", "2"]
    assert [e.body.timer_id for e in hist if e.type == "TimerStarted"] == ["1", "2"]  # woken once
    assert types(hist)[-1] == "WorkflowCompleted"
    assert [e.seq for e in hist] == list(range(1, len(hist) + 1))


async def test_kill9_after_fire_emitted_before_recorded(cluster, client):  # type: ignore[no-untyped-def]
    await _kill_at(cluster, client, "after_fire_emit", same_dir=True)


async def test_kill9_inline_fire_handed_to_kafka_before_commit(cluster, client):  # type: ignore[no-untyped-def]
    """A batch that took a due timer (AION_TIMER_FIRE=inline, the default) dies inside its
    transaction: nothing of it is visible, and the next owner fires the timer once."""
    await _kill_at(cluster, client, "inline_fire_append", same_dir=True)


async def test_a_failed_batch_sends_its_partitions_fires_through_the_topic(cluster, client, settings):  # type: ignore[no-untyped-def]
    """A batch with a timer's fire in it that fails (here: its transaction refused, once) turns
    its partition's fires to the commands topic for a while (where a fire that fails again is
    handled on its own): the timer fires once, as a FireTimer command on the topic, and the
    worker goes on."""
    engine = cluster.engine(fault="refuse_inline_fire")
    h = await client.start_workflow("SleepOnce", 1_000, id="fallback")
    assert await h.result(timeout=60) == "fired"
    assert terminal_events(await h.history()) == ["TimerFired"]
    fires = [c for c in read_commands(settings, ["fallback"]) if isinstance(c.body, FireTimer)]
    assert [c.command_id.startswith("timer:fallback:") for c in fires] == [True], fires
    assert engine.alive()
    log = engine.tail(200)
    assert "refuse_inline_fire" in log and "held 1 timer fires" in log, log


async def test_kill9_after_fire_recorded_before_wake(cluster, client):  # type: ignore[no-untyped-def]
    await _kill_at(cluster, client, "after_fire_recorded", same_dir=False)


async def test_overdue_timers_fire_after_restart(cluster, client):  # type: ignore[no-untyped-def]
    first = cluster.engine("e")
    # Timers long enough that none is due before the kill (20 starts and history reads take a
    # few seconds on a loaded machine), then a wait until every one of them is overdue.
    handles = [await client.start_workflow("SleepOnce", 8_000, id=f"overdue-{i}") for i in range(20)]
    started = time.monotonic()
    for h in handles:
        await wait_history(h, lambda x: "TimerStarted" in types(x))
    first.kill9()
    await asyncio.sleep(max(0.0, started + 8.5 - time.monotonic()))  # every timer is overdue now
    restarted = time.time() * 1000
    cluster.engine("e")
    assert [await h.result(timeout=KILL_WAIT) for h in handles] == ["fired"] * 20
    for h in handles:
        hist = await h.history()
        assert terminal_events(hist) == ["TimerFired"]
        fired = [e for e in hist if e.type == "TimerFired"][0]
        assert fired.recorded_at_ms >= restarted


async def test_stale_fire_after_continue_as_new_is_ignored(cluster, client, settings):  # type: ignore[no-untyped-def]
    cluster.engine()
    h = await client.start_workflow("Chain", 1, 4_000, id="chain")
    hist = await wait_history(h, lambda x: types(x).count("TimerStarted") == 2)
    old, new = [e for e in hist if e.type == "TimerStarted"]
    assert old.run_id != new.run_id and old.body.timer_id == new.body.timer_id == "1"
    # The old run's timer "1" fires late (as the wheel would, and with another command id).
    produce_commands(settings, [
        fire_cmd("chain", old.run_id, "1", old.body.fire_at_ms, f"timer:chain:{old.run_id}:1:{old.body.fire_at_ms}"),
        fire_cmd("chain", old.run_id, "1", old.body.fire_at_ms)])
    await asyncio.sleep(1.0)
    assert "TimerFired" not in types(await h.history())  # recorded into no run, suppressed nothing
    assert await h.result(timeout=30) == f"fired in run {new.run_id}"
    hist = await h.history()
    fired = [e for e in hist if e.type == "TimerFired"]
    assert len(fired) == 1 and fired[0].run_id == new.run_id
    assert fired[0].recorded_at_ms >= new.body.fire_at_ms


async def test_10k_timers_due_at_the_same_instant_fire_once(cluster, client, settings):  # type: ignore[no-untyped-def]
    cluster.engine()
    workflows, per = 100, 100
    # Wait for the engine, then let every workflow arm its timers before they are due.
    await (await client.start_workflow("SleepOnce", 10, id="warmup")).result(timeout=60)
    at = int(time.time() * 1000) + 6_000
    handles = await asyncio.gather(*(client.start_workflow("ManyTimers", at, per, id=f"many-{i}")
                                     for i in range(workflows)))
    t0 = time.monotonic()
    results = await asyncio.gather(*(h.result(timeout=90) for h in handles))
    assert results == [per] * workflows
    histories = read_events(settings, [h.id for h in handles])
    total = 0
    for h in handles:
        ev = histories[h.id]
        fired = [e.body.timer_id for e in ev if e.type == "TimerFired"]
        started = {e.body.timer_id for e in ev if e.type == "TimerStarted"}
        assert len(fired) == per and set(fired) == started, h.id
        assert all(e.body.fire_at_ms == at for e in ev if e.type == "TimerStarted")
        total += len(fired)
    assert total == workflows * per
    lags = sorted(fire_lags(histories))
    print(f"10k timers at one instant: fired in {time.monotonic() - t0:.1f}s after start of wait; "
          f"lag p50={lags[len(lags) // 2]}ms p99={lags[int(len(lags) * 0.99)]}ms max={lags[-1]}ms")




async def burst_and_probe(cluster, client, settings) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    """An engine; 8 x FIRE_BACKLOG timers due at one instant on the partition of workflow
    ``probe`` (four ``ManyTimers`` workflows), and ``probe`` started 50 ms into their burst;
    waits until all have closed. Returns the burst's size and its workflows' ids."""
    from aion.codec import partition_for
    from aion.engine._wheel import FIRE_BACKLOG

    cluster.engine()
    await (await client.start_workflow("SleepOnce", 10, id="warmup")).result(timeout=60)
    n = 8 * FIRE_BACKLOG  # on one partition: the burst workflows and the probe share it
    target = partition_for("probe", settings.partitions)
    ids = [w for w in (f"burst-{i}" for i in range(400)) if partition_for(w, settings.partitions) == target][:4]
    at = int(time.time() * 1000) + 8_000
    handles = await asyncio.gather(*(client.start_workflow("ManyTimers", at, n // len(ids), id=w) for w in ids))
    await asyncio.sleep(max(0.0, at / 1000 - time.time()) + 0.05)  # the burst is being fired
    probe = await client.start_workflow("SleepOnce", 1, id="probe")
    assert await probe.result(timeout=180) == "fired"
    assert [await h.result(timeout=180) for h in handles] == [n // len(ids)] * len(ids)
    return n, ids


async def test_a_start_during_a_timer_burst_waits_behind_at_most_a_backlog_of_fires(cluster, client, settings):  # type: ignore[no-untyped-def]
    """A burst of timers due at once does not queue every fire ahead of other commands: the
    wheel keeps at most FIRE_BACKLOG fires of a partition in flight, so a start sent during the
    burst finds at most about that many fires queued ahead of it on the commands topic (read
    from the log: fires before its command whose TimerFired was recorded after it was sent)."""
    from aion.engine._wheel import FIRE_BACKLOG

    cluster.env["AION_TIMER_FIRE"] = "topic"  # the wheel's bound on fires in flight on the commands topic
    n, ids = await burst_and_probe(cluster, client, settings)

    histories = read_events(settings, ids)
    fired_at = {(w, e.body.timer_id): e.recorded_at_ms for w in ids for e in histories[w] if e.type == "TimerFired"}
    assert len(fired_at) == n
    commands = read_commands(settings, [*ids, "probe"])
    i = next(k for k, c in enumerate(commands) if c.workflow_id == "probe" and c.type == "StartWorkflow")
    sent = commands[i].sent_at_ms
    ahead = [c for c in commands[:i] if isinstance(c.body, FireTimer)]
    queued = sum(1 for c in ahead if fired_at[(c.workflow_id, c.body.timer_id)] > sent)
    span_s = (max(fired_at.values()) - min(fired_at.values())) / 1000
    print(f"timer burst of {n} on one partition: the start sent into it had {len(ahead)} fires before it "
          f"on the commands topic, {queued} of them not yet recorded; drained at {n / max(span_s, 0.001):.0f} "
          f"fires/s")
    assert len(fired_at) - len(ahead) > FIRE_BACKLOG, "the start was sent after the burst had (nearly) been sent"
    assert queued <= FIRE_BACKLOG + 100, f"{queued} fires were queued ahead of a start sent during the burst"


async def test_a_start_during_an_inline_timer_burst_is_not_queued_behind_it(cluster, client, settings):  # type: ignore[no-untyped-def]
    """Fires taken by the partition's own batches (AION_TIMER_FIRE=inline, the default) share
    each batch with the commands read: a start sent during a burst of 8,000 fires on its
    partition is recorded within a few batches (read from the log: at most three batches'
    worth of fires recorded between the start's send and its WorkflowStarted, where queued
    behind the burst it would see all that were left), and every timer fires once."""
    n, ids = await burst_and_probe(cluster, client, settings)

    histories = read_events(settings, [*ids, "probe"])
    fired = sorted(e.recorded_at_ms for w in ids for e in histories[w] if e.type == "TimerFired")
    assert len(fired) == n
    assert not [c for c in read_commands(settings, ids) if isinstance(c.body, FireTimer)], \
        "inline fires must not go through the commands topic"
    sent = next(c.sent_at_ms for c in read_commands(settings, ["probe"]) if c.type == "StartWorkflow")
    started = next(e.recorded_at_ms for e in histories["probe"] if e.type == "WorkflowStarted")
    left = sum(1 for t in fired if t >= sent)
    between = sum(1 for t in fired if sent <= t <= started)
    span_s = (fired[-1] - fired[0]) / 1000
    print(f"inline timer burst of {n} on one partition: the start sent into it ({left} fires left) waited "
          f"{started - sent} ms, {between} fires recorded meanwhile; drained at {n / max(span_s, 0.001):.0f} fires/s")
    assert left > 3 * settings.batch_size, f"the start was sent after the burst had (nearly) drained: {left} left"
    assert between <= 3 * settings.batch_size, \
        f"{between} fires were recorded while a start sent during the burst waited ({left} were left)"
