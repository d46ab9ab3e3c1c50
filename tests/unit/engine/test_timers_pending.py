"""The timer wheel's pending writes (``aion.engine._wheel.Pending``) on a real RocksDB database:
a batch's timer rows reach RocksDB only once its transaction committed — the records the log
took, nothing else — so a worker killed between staging and commit leaves nothing in its data
folder that the log does not hold (the chaos test found such rows in reused folders: stale
timer rows that could fire a re-armed timer at its aborted time). No broker."""

from __future__ import annotations

import random

import pytest
from rocksdict import Options, Rdict

from aion.engine._timers import INDEX_PREFIX, TerminalStore, WheelPartition, be_ms, ident_of
from aion.engine._wheel import Pending, PendingDB


@pytest.fixture
def db(tmp_path):  # type: ignore[no-untyped-def]
    d = Rdict(str(tmp_path / "timers"), Options(raw_mode=True))
    yield d
    d.close()


def commit(db, pending: Pending, partition: int, out: list[tuple[bytes, bytes | None]]) -> None:  # type: ignore[no-untyped-def]
    """What TimerWheel.committed does with a committed transaction: its changelog records
    (``out``) into RocksDB, the pending writes forgotten."""
    for key, value in out:
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)
    pending.discard(partition)


def scan(db, start: bytes = b"") -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    it = db.iter()
    it.seek(start) if start else it.seek_to_first()
    out = []
    while it.valid():
        out.append((it.key(), it.value()))
        it.next()
    return out


def test_pending_rows_are_read_back_but_never_reach_rocksdb(db) -> None:  # type: ignore[no-untyped-def]
    db.put(b"kept", b"1")
    db.put(b"gone", b"1")
    pending = Pending()
    view = PendingDB(db, 0, pending)
    view.put(b"new", b"I")
    view.delete(b"gone")
    assert view.get(b"new") == b"I" and view.get(b"gone") is None and view.get(b"kept") == b"1"
    assert db.get(b"new") is None and db.get(b"gone") == b"1"  # a kill -9 now leaves RocksDB as the log has it
    assert pending.discard(0) == 2
    assert view.get(b"new") is None and view.get(b"gone") == b"1"


def test_a_view_made_before_a_commit_writes_into_the_next_transaction(db) -> None:  # type: ignore[no-untyped-def]
    pending = Pending()
    view = PendingDB(db, 3, pending)  # the wheel keeps one per partition across transactions
    view.put(b"a", b"1")
    pending.discard(3)
    view.put(b"b", b"1")
    assert view.get(b"a") is None and view.get(b"b") == b"1" and list(pending.peek(3, db) or []) == [b"b"]
    assert pending.peek(4, db) is None  # reading another partition leaves nothing behind


def test_iteration_merges_pending_writes_in_key_order(db) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    table: dict[bytes, bytes] = {}
    for _ in range(300):
        k = bytes([rng.randrange(40)]) + bytes([rng.randrange(256)])
        table[k] = b"t"
        db.put(k, b"t")
    pending = Pending()
    view = PendingDB(db, 0, pending)
    want = dict(table)
    for _ in range(200):
        k = bytes([rng.randrange(40)]) + bytes([rng.randrange(256)])
        if rng.random() < 0.5:
            view.delete(k)
            want.pop(k, None)
        else:
            view.put(k, b"p")
            want[k] = b"p"
    assert scan(view) == sorted(want.items())
    for start in (b"\x05", b"\x13\x80", b"\x27\xff", b"\xff"):
        assert scan(view, start) == [(k, v) for k, v in sorted(want.items()) if k >= start]


def test_a_timer_armed_and_dropped_in_one_batch_leaves_no_row(db) -> None:  # type: ignore[no-untyped-def]
    pending = Pending()
    part = WheelPartition(0, PendingDB(db, 0, pending))
    ident = ident_of("wf", "run", "2")
    out: list[tuple[bytes, bytes | None]] = []
    part.arm(10**12, ident, out)  # far: a time row and an index row, both pending
    assert db.get(INDEX_PREFIX + ident) is None
    assert part.drop(ident, out)  # found through the pending index row
    commit(db, pending, 0, out)
    assert scan(db) == []


def test_an_aborted_arm_leaves_nothing_to_fire_at_its_time(db) -> None:  # type: ignore[no-untyped-def]
    """The case the chaos test found: a worker staged a timer at one time, died before the
    commit; the next owner armed it at another time. Only the second row may exist."""
    pending = Pending()
    ident = ident_of("wf", "run", "a/1/s2c")
    first = WheelPartition(0, PendingDB(db, 0, pending))
    first.arm(10**12, ident, [])
    pending.discard(0)  # the transaction never committed (or the worker died before it did)
    second = WheelPartition(0, PendingDB(db, 0, pending))
    out: list[tuple[bytes, bytes | None]] = []
    second.arm(10**12 + 5_000, ident, out)
    commit(db, pending, 0, out)
    assert [k for k, _ in scan(db) if k < b"\x01"] == [be_ms(10**12 + 5_000) + ident]


def test_closing_a_run_removes_the_timer_marks_of_the_same_batch(db) -> None:  # type: ignore[no-untyped-def]
    pending = Pending()
    terminal = TerminalStore(PendingDB(db, 0, pending))
    out: list[tuple[bytes, bytes | None]] = []
    terminal.mark(ident_of("wf", "run", "1"), TerminalStore.FIRED, out)
    db.put(ident_of("wf", "run", "0"), TerminalStore.CANCELLED)  # an earlier, committed mark
    terminal.close_run("wf", "run", out)
    commit(db, pending, 0, out)
    assert scan(db) == [(b"wf\x00run\x00", TerminalStore.RUN_CLOSED)]
