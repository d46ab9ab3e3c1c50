"""The engine's TimerWheel service on real RocksDB behind a stand-in for Faust (no broker):
fires, terminal-state drops, reload after reassignment, metrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from aion.bench._timers import InProcessWheel
from aion.model import Event, TimerFired, WorkflowCompleted
from aion.runtime import effects as fx


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
async def w(tmp_path):  # type: ignore[no-untyped-def]
    iw = InProcessWheel(tmp_path, partitions=2)
    yield iw
    await iw.stop()


def fires(w: InProcessWheel) -> int:
    return w.fires_sent


async def until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_fires_due_timers_once_and_deletes_rows(w) -> None:  # type: ignore[no-untyped-def]
    wheel = w.wheel
    w.start()
    at = now_ms() + 100
    await wheel.apply([(0, fx.ScheduleTimer("wf-a", "r", "1", at)), (1, fx.ScheduleTimer("wf-b", "r", "1", at)),
                       (0, fx.ScheduleTimer("wf-c", "r", "1", at + 3_600_000))])
    await until(lambda: wheel.stats["fired"] == 2)
    await asyncio.sleep(0.2)
    assert fires(w) == 2 and wheel.pending() == 0
    snap = wheel.snapshot()
    assert snap["send_lag_ms"]["count"] == 2 and snap["pending_in_memory"] == {0: 0, 1: 0}


async def test_dropped_and_terminal_timers_are_not_sent(w) -> None:  # type: ignore[no-untyped-def]
    wheel = w.wheel
    w.start()
    at = now_ms() + 150
    await wheel.apply([(0, fx.ScheduleTimer("wf", "r1", "1", at)), (0, fx.ScheduleTimer("wf", "r1", "2", at)),
                       (0, fx.ScheduleTimer("wf", "r1", "a/x/1/s2c", at)),
                       (1, fx.ScheduleTimer("other", "r9", "1", at)), (1, fx.ScheduleTimer("other", "r9", "2", at))])
    # Timer 1 fired already (a duplicate fire got there first), timer 2 was dropped, and run r9 closed.
    wheel.on_recorded([(0, Event("wf", 5, "r1", now_ms(), TimerFired("1"), "c5")),
                       (1, Event("other", 9, "r9", now_ms(), WorkflowCompleted(None), "c9"))])  # type: ignore[arg-type]
    await wheel.apply([(0, fx.DropTimer("wf", "r1", "2"))])
    await until(lambda: wheel.stats["fired"] + wheel.stats["dropped_terminal"] >= 4)
    await asyncio.sleep(0.2)
    assert fires(w) == 1  # only the activity timeout of the open run
    assert wheel.stats["dropped_terminal"] == 3


async def test_a_new_run_is_not_suppressed_by_the_old_one(w) -> None:  # type: ignore[no-untyped-def]
    wheel = w.wheel
    w.start()
    wheel.on_recorded([(0, Event("wf", 3, "old", now_ms(), TimerFired("1"), "c3"))])
    await wheel.apply([(0, fx.ScheduleTimer("wf", "new", "1", now_ms() + 50))])
    await until(lambda: wheel.stats["fired"] == 1)
    assert wheel.stats["dropped_terminal"] == 0


async def test_reassignment_reloads_and_fires_overdue(w) -> None:  # type: ignore[no-untyped-def]
    wheel = w.wheel
    await wheel._tick()  # windows loaded (nothing due)
    await wheel.apply([(0, fx.ScheduleTimer("wf", "r", "1", now_ms() + 200)),
                       (1, fx.ScheduleTimer("wf2", "r", "1", now_ms() + 7_200_000))])
    wheel.on_revoked({0, 1})
    assert wheel.pending() == 0
    await asyncio.sleep(0.3)  # overdue while nobody owned the partition
    wheel.on_assigned()
    w.start()
    await until(lambda: wheel.stats["fired"] == 1)
    assert wheel.pending() == 0
    # The far timer is still in the table: found and dropped through its index row.
    await wheel.apply([(1, fx.DropTimer("wf2", "r", "1"))])
    assert wheel.stats["disarmed"] == 1


async def test_lag_histogram_from_recorded_fires(w) -> None:  # type: ignore[no-untyped-def]
    wheel = w.wheel
    w.start()
    at = now_ms() + 50
    await wheel.apply([(0, fx.ScheduleTimer("wf", "r", "1", at))])
    await until(lambda: wheel.stats["fired"] == 1)
    wheel.on_recorded([(0, Event("wf", 2, "r", at + 12, TimerFired("1"), "c2"))])
    lag = wheel.snapshot()["fire_lag_ms"]
    assert lag["count"] == 1 and lag["max_ms"] == 12


async def test_staged_rows_reach_rocksdb_only_with_their_committed_transaction(w) -> None:  # type: ignore[no-untyped-def]
    """A batch's timer rows are pending until its transaction commits: a worker killed in
    between leaves none in its data folder; a transaction that never ended leaves none for the
    next one to read or write."""
    from aion.engine._faust import db_for
    from aion.engine._timers import ident_of

    wheel = w.wheel
    raw = db_for(wheel.timers, 0)
    at = now_ms() + 3_600_000
    wheel.begin(0)
    writes = wheel.stage([], [(0, fx.ScheduleTimer("wf", "r", "1", at))])
    assert len(writes) == 2  # the time row and its index row, as changelog records
    assert raw.get(b"\xff\xffI" + ident_of("wf", "r", "1")) is None  # nothing in RocksDB yet
    wheel.begin(0)  # the next transaction of the partition: the unfinished one's rows are gone
    assert wheel.stage([], [(0, fx.DropTimer("wf", "r", "1"))]) == []  # nothing to drop
    wheel.begin(0)
    await wheel.apply([(0, fx.ScheduleTimer("wf", "r", "2", at))])
    assert raw.get(b"\xff\xffI" + ident_of("wf", "r", "2")) is not None  # committed: written


async def test_a_batch_right_after_an_assignment_finds_near_timers(w) -> None:  # type: ignore[no-untyped-def]
    """A near timer (due within the window) has no index row: a drop or re-arm that reaches a
    new owner before the loop loaded the window must still find its row, or the row lingers
    (and fires, stale) while a second row is armed beside it."""
    from aion.engine._faust import db_for
    from aion.engine._timers import ident_of

    wheel = w.wheel
    await wheel._tick()  # windows loaded: the arms below are near rows
    at = now_ms() + 20_000
    await wheel.apply([(0, fx.ScheduleTimer("wf", "r", "1", at)), (0, fx.ScheduleTimer("wf", "r", "2", at))])
    raw = db_for(wheel.timers, 0)

    def rows(tid: str) -> list[bytes]:
        ident = ident_of("wf", "r", tid)
        return [k for k, _ in raw.items() if k.endswith(ident) and len(k) == 8 + len(ident)]

    assert len(rows("1")) == len(rows("2")) == 1 and raw.get(b"\xff\xffI" + ident_of("wf", "r", "1")) is None
    wheel.on_revoked({0, 1})
    wheel.on_assigned()  # a new assignment: no window in memory until the loop's next tick
    await wheel.apply([(0, fx.DropTimer("wf", "r", "1")), (0, fx.ScheduleTimer("wf", "r", "2", at + 5_000))])
    assert wheel.stats["drop_missed"] == 0 and wheel.stats["disarmed"] == 1
    assert rows("1") == []  # dropped
    assert [k[:8] for k in rows("2")] == [(at + 5_000).to_bytes(8, "big")]  # re-armed: one row, the new one
