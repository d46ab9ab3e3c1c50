"""The timer wheel's partition storage and window (``aion.engine._timers``) on a real RocksDB
database (rocksdict, raw mode as Faust opens it); no broker."""

from __future__ import annotations

import time

import pytest
from rocksdict import Options, Rdict

from aion.engine._timers import (
    INDEX_PREFIX,
    META_LOW,
    LagHistogram,
    TerminalStore,
    WheelPartition,
    be_ms,
    ident_of,
    parse_timer_key,
    run_prefix,
    terminal_rows,
    timer_key,
    timer_rows,
)


@pytest.fixture
def db(tmp_path):  # type: ignore[no-untyped-def]
    d = Rdict(str(tmp_path / "timers"), Options(raw_mode=True))
    yield d
    d.close()


def rows(db) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    it = db.iter()
    it.seek_to_first()
    out = {}
    while it.valid():
        out[it.key()] = it.value()
        it.next()
    return out


def fire_all(part: WheelPartition, now: int) -> list[tuple[str, str, str, int]]:
    keys = part.take_due(now, 10**9)
    part.fired(keys, [])
    return [(r.workflow_id, r.run_id, r.timer_id, r.fire_at_ms) for r in (parse_timer_key(0, k) for k in keys)]


def test_keys_sort_by_due_time_and_round_trip() -> None:
    a = timer_key(1_000, "wf-z", "r", "1")
    b = timer_key(2_000, "wf-a", "r", "1")
    assert a < b
    assert parse_timer_key(3, b).fire_at_ms == 2_000
    assert parse_timer_key(3, b).timer_id == "1"
    assert run_prefix(ident_of("wf", "run", "a/x/1/s2c")) == b"wf\x00run\x00"
    assert be_ms(-5) == be_ms(0)  # clamped: bytes order stays time order


def test_near_timers_fire_in_order_and_rows_go(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    assert part.load_slice(10_000, 100)  # empty table: window loaded up to 10 s
    out: list = []
    for at, tid in [(3_000, "c"), (1_000, "a"), (2_000, "b")]:
        assert part.arm(at, ident_of("wf", "r1", tid), out) is not None
    assert part.pending() == 3
    assert fire_all(part, 1_500) == [("wf", "r1", "a", 1_000)]
    assert fire_all(part, 5_000) == [("wf", "r1", "b", 2_000), ("wf", "r1", "c", 3_000)]
    assert part.pending() == 0
    assert not [k for k in rows(db) if k < b"\x01"]  # every time row deleted
    assert all(len(w) == 2 for w in out)


def test_far_timers_stay_in_the_table_until_the_window_reaches_them(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(60_000, 100)
    out: list = []
    assert part.arm(500_000, ident_of("wf", "r", "far"), out) is None  # beyond the window
    assert part.pending() == 0
    assert INDEX_PREFIX + ident_of("wf", "r", "far") in rows(db)
    assert fire_all(part, 1_000_000) == []  # not in memory yet
    part.load_slice(520_000, 100)
    assert part.pending() == 1
    assert fire_all(part, 1_000_000) == [("wf", "r", "far", 500_000)]
    assert rows(db) == {}  # time row and index row deleted


def test_drop_finds_memory_and_table_timers(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(60_000, 100)
    out: list = []
    part.arm(1_000, ident_of("wf", "r", "near"), out)
    part.arm(900_000, ident_of("wf", "r", "far"), out)
    assert part.drop(ident_of("wf", "r", "near"), out)
    assert part.drop(ident_of("wf", "r", "far"), out)
    assert not part.drop(ident_of("wf", "r", "never"), out)
    assert rows(db) == {}
    part.load_slice(2_000_000, 100)
    assert fire_all(part, 2_000_000) == []


def test_rearm_replaces_and_repeated_arm_is_a_no_op(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(60_000, 100)
    ident = ident_of("wf", "r", "hb")
    out: list = []
    part.arm(5_000, ident, out)
    n = len(out)
    assert part.arm(5_000, ident, out) is None and len(out) == n  # same row: nothing written
    part.arm(7_000, ident, out)  # moved
    assert fire_all(part, 6_000) == []
    assert fire_all(part, 7_000) == [("wf", "r", "hb", 7_000)]


def test_a_fire_in_flight_survives_a_failed_send(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(60_000, 100)
    part.arm(1_000, ident_of("wf", "r", "1"), [])
    keys = part.take_due(2_000, 10)
    assert part.take_due(2_000, 10) == []
    part.put_back(keys)  # the send failed
    assert fire_all(part, 2_000) == [("wf", "r", "1", 1_000)]


def test_scan_position_skips_fired_rows_after_failover(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(100_000, 10**6)
    out: list = []
    for i in range(1_000):
        part.arm(1_000 + i, ident_of("wf", "r", str(i)), out)
    part.arm(90_000, ident_of("wf", "r", "later"), out)
    assert len(fire_all(part, 5_000)) == 1_000
    part.advance_low(time.monotonic(), out, min_interval_s=0)
    assert db.get(META_LOW) == timer_key(90_000, "wf", "r", "later")
    # A new owner starts its scan at the persisted position: it loads just the one live row.
    other = WheelPartition(0, db)
    other.load_slice(100_000, 10)
    assert other.loaded_upto == be_ms(100_000)
    assert fire_all(other, 100_000) == [("wf", "r", "later", 90_000)]


def test_an_overdue_arm_lowers_the_scan_position(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(100_000, 100)
    out: list = []
    part.arm(50_000, ident_of("wf", "r", "a"), out)
    fire_all(part, 60_000)
    part.advance_low(time.monotonic(), out, min_interval_s=0)
    assert db.get(META_LOW) == be_ms(100_000)
    part.arm(10_000, ident_of("wf", "r", "late"), out)  # armed already overdue
    assert db.get(META_LOW) == timer_key(10_000, "wf", "r", "late")
    other = WheelPartition(0, db)  # failover before it fired
    other.load_slice(100_000, 100)
    assert fire_all(other, 100_000) == [("wf", "r", "late", 10_000)]


def test_load_is_bounded_per_slice(db) -> None:  # type: ignore[no-untyped-def]
    part = WheelPartition(0, db)
    part.load_slice(0, 10)
    for i in range(250):
        part.arm(10_000 + i, ident_of("wf", "r", str(i)), [])
    slices = 0
    while not part.load_slice(100_000, 100):
        slices += 1
        assert part.pending() <= 100 * slices
    assert part.pending() == 250 and slices == 2
    assert len(fire_all(part, 100_000)) == 250


def test_terminal_states_per_run(db) -> None:  # type: ignore[no-untyped-def]
    term = TerminalStore(db)
    out: list = []
    old, new = ident_of("wf", "run-1", "1"), ident_of("wf", "run-2", "1")
    term.mark(old, TerminalStore.FIRED, out)
    assert term.state(old) == b"F"
    assert term.state(new) is None  # same timer id, the next run: untouched
    term.mark(ident_of("wf", "run-1", "2"), TerminalStore.CANCELLED, out)
    term.close_run("wf", "run-1", out)
    assert rows(db) == {b"wf\x00run-1\x00": b"X"}  # one marker for the closed run
    assert term.state(old) == b"X" and term.state(ident_of("wf", "run-1", "a/1/1/s2c")) == b"X"
    assert term.state(new) is None
    term.mark(ident_of("wf", "run-1", "3"), TerminalStore.FIRED, out)  # closed: the marker covers it
    assert rows(db) == {b"wf\x00run-1\x00": b"X"}


def test_lag_histogram() -> None:
    h = LagHistogram()
    for ms in [0, 1, 3, 3, 8, 40, 120, 70_000]:
        h.observe(ms)
    s = h.snapshot()
    assert s["count"] == 8 and s["max_ms"] == 70_000
    assert s["buckets"]["le_1"] == 2 and s["buckets"]["le_5"] == 2 and s["buckets"]["le_inf"] == 1
    assert s["p50_ms"] == 8
    assert LagHistogram().snapshot()["p99_ms"] is None


def test_rebuilt_rows_match_what_the_wheel_writes(db) -> None:  # type: ignore[no-untyped-def]
    from aion.model import Event, TimerCancelled, TimerFired, TimerStarted, WorkflowContinuedAsNew

    for key, value in timer_rows(900_000, "wf", "r", "far"):
        db.put(key, value)
    part = WheelPartition(0, db)
    part.load_slice(60_000, 100)
    assert part.drop(ident_of("wf", "r", "far"), [])  # found through its index row
    assert rows(db) == {}

    def ev(seq, run, body):  # type: ignore[no-untyped-def]
        return Event("wf", seq, run, 1_000 * seq, body, f"c{seq}")

    history = [ev(1, "r1", TimerStarted("1", 5_000, 1_000)), ev(2, "r1", TimerFired("1")),
               ev(3, "r1", WorkflowContinuedAsNew("r2", "T", [], "default")),
               ev(4, "r2", TimerStarted("1", 9_000, 1_000)), ev(5, "r2", TimerCancelled("1"))]
    assert terminal_rows(history) == {b"wf\x00r1\x00": b"X", b"wf\x00r2\x001": b"C"}
