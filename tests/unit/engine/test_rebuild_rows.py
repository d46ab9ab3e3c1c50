"""``aion rebuild``'s pure parts: rows derived from a history equal the rows the engine wrote
while running it; grouping of history rows; digests; retention's expiry rule. No broker."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from rocksdict import Options, Rdict

from aion import workflow
from aion.codec import Codec
from aion.engine._store import visibility_row as _visibility_row
from aion.engine._rebuild import OFFSET_KEY, DerivedTables, _digest, _group_by_workflow, _rows
from aion.engine._retention import expired, sweep_interval_s
from aion.engine._timers import TerminalStore, WheelPartition, be_ms, ident_of
from aion.engine._wheel import TimerWheel
from aion.model import (
    RUN_CLOSING_EVENTS,
    Command,
    Event,
    FireTimer,
    Payload,
    SignalWorkflow,
    StartWorkflow,
    TimerCancelled,
    TimerFired,
)
from aion.runtime import Registry, WorkflowExecution
from aion.runtime import effects as fx

CODEC = Codec()
T0 = 1_800_000_000_000


@workflow.defn
class Sleepy:
    """A near timer that fires, then a far one that stays armed."""

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(seconds=5))
        await workflow.sleep(timedelta(hours=2))
        return "done"


@workflow.defn
class Deadline:
    """A deadline raced by a signal: the signal wins, the timer is cancelled."""

    def __init__(self) -> None:
        self.ok = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.ok, timeout=timedelta(minutes=30))
        return "approved"

    @workflow.signal
    def approve(self) -> None:
        self.ok = True


REGISTRY = Registry(workflows=[Sleepy, Deadline])


def _db(tmp_path, name: str) -> Rdict:  # type: ignore[no-untyped-def]
    return Rdict(str(tmp_path / name), Options(raw_mode=True))


class LiveEngine:
    """What the engine does with one partition's rows while it runs the workflows."""

    def __init__(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        self.timers_db = _db(tmp_path, "live-timers")
        self.terminal_db = _db(tmp_path, "live-terminal")
        self.workflows_db = _db(tmp_path, "live-workflows")
        self.part = WheelPartition(0, self.timers_db)
        self.terminal = TerminalStore(self.terminal_db)
        self.ex: dict[str, WorkflowExecution] = {}
        self.n = 0

    def command(self, workflow_id: str, body: object, now: int) -> list[Event]:
        self.n += 1
        self.part.load_slice(now + TimerWheel.WINDOW_MS, 10_000)  # the wheel keeps its window loaded
        ex = self.ex.setdefault(workflow_id, WorkflowExecution.new(REGISTRY, workflow_id))
        step = ex.handle(Command(f"c{self.n}", workflow_id, now, body), now)  # type: ignore[arg-type]
        out: list = []
        for ev in step.events:  # on_recorded
            b = ev.body
            if isinstance(b, TimerFired):
                self.terminal.mark(ident_of(workflow_id, ev.run_id, b.timer_id), TerminalStore.FIRED, out)
            elif isinstance(b, TimerCancelled):
                self.terminal.mark(ident_of(workflow_id, ev.run_id, b.timer_id), TerminalStore.CANCELLED, out)
            elif isinstance(b, RUN_CLOSING_EVENTS):
                self.terminal.close_run(workflow_id, ev.run_id, out)
        for eff in step.effects:  # the wheel's apply()
            if isinstance(eff, fx.ScheduleTimer):
                self.part.arm(eff.fire_at_ms, ident_of(eff.workflow_id, eff.run_id, eff.timer_id), out)
            elif isinstance(eff, fx.DropTimer):
                self.part.drop(ident_of(eff.workflow_id, eff.run_id, eff.timer_id), out)
        if step.events:
            self.workflows_db.put(workflow_id.encode(), _visibility_row(ex))
        return step.events

    def fire(self, workflow_id: str, timer_id: str, now: int) -> None:
        """The wheel fires a due timer: FireTimer on the log, then its row is deleted."""
        ex = self.ex[workflow_id]
        ident = ident_of(workflow_id, ex.run_id or "", timer_id)
        key = self.part.live[ident]
        fire_at = int.from_bytes(key[:8], "big")
        assert fire_at <= now
        self.command(workflow_id, FireTimer(ex.run_id or "", timer_id, fire_at), now)
        self.part.fired([key], [])

    def history(self, workflow_id: str) -> list[Event]:
        return list(self.ex[workflow_id].history)


def _state(db: Rdict) -> dict[bytes, bytes]:
    from aion.engine._timers import META_LOW

    return {k: v for k, v in db.items() if k not in (OFFSET_KEY, META_LOW)}


def test_derived_rows_equal_the_rows_the_engine_wrote(tmp_path) -> None:  # type: ignore[no-untyped-def]
    live = LiveEngine(tmp_path)
    live.command("sleepy", StartWorkflow("Sleepy", []), T0)
    live.fire("sleepy", "1", T0 + 5_000)                       # the near timer fires; a 2 h one is armed
    live.command("deadline", StartWorkflow("Deadline", []), T0)
    live.command("deadline", SignalWorkflow("approve", []), T0 + 1_000)   # the deadline is cancelled
    assert live.ex["deadline"].status == "COMPLETED" and live.ex["sleepy"].status == "RUNNING"

    dbs = {"workflows": _db(tmp_path, "wf"), "timers": _db(tmp_path, "tm"), "timer_terminal": _db(tmp_path, "tt")}
    out = DerivedTables(0, dbs, now_ms=T0 + 6_000)
    for wid in ("deadline", "sleepy"):
        out.add(wid, live.history(wid))
    assert out.workflow_rows == 2 and out.timer_rows == 1

    assert _state(dbs["workflows"]) == _state(live.workflows_db)
    assert _state(dbs["timers"]) == _state(live.timers_db)
    assert _state(dbs["timer_terminal"]) == _state(live.terminal_db)
    # What that means: the far timer has its time row and index row; the fired one is terminal;
    # the completed run is one closed marker.
    run = live.ex["sleepy"].run_id
    far = be_ms(T0 + 5_000 + 2 * 3600_000) + ident_of("sleepy", run, "2")
    assert dbs["timers"].get(far) == b"I"
    assert dbs["timer_terminal"].get(ident_of("sleepy", run, "1")) == TerminalStore.FIRED
    assert dbs["timer_terminal"].get(f"deadline\0{live.ex['deadline'].run_id}\0".encode()) == TerminalStore.RUN_CLOSED
    row = json.loads(dbs["workflows"].get(b"deadline"))
    assert row["status"] == "COMPLETED" and row["closed_at_ms"] == T0 + 1_000

    # The engine's own window code finds the rebuilt timer and can drop it by name.
    part = WheelPartition(0, dbs["timers"])
    assert part.load_slice(T0 + 3 * 3600_000, 100)
    assert part.find(ident_of("sleepy", run, "2"))[0] == far
    for db in (*dbs.values(), live.timers_db, live.terminal_db, live.workflows_db):
        db.close()


def test_a_timer_due_soon_is_a_near_row_without_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    live = LiveEngine(tmp_path)
    live.command("sleepy", StartWorkflow("Sleepy", []), T0)
    dbs = {"workflows": _db(tmp_path, "wf"), "timers": _db(tmp_path, "tm")}  # an engine without timer_terminal
    out = DerivedTables(0, dbs, now_ms=T0 + 1_000)
    out.add("sleepy", live.history("sleepy"))
    assert _state(dbs["timers"]) == {be_ms(T0 + 5_000) + ident_of("sleepy", live.ex["sleepy"].run_id, "1"): b"1"}
    assert out.terminal is None


def _event_rows(*ids_and_counts: tuple[str, int]) -> list[tuple[bytes, bytes]]:
    from aion.model import MarkerRecorded

    rows = []
    for wid, n in ids_and_counts:
        for seq in range(1, n + 1):
            ev = Event(wid, seq, "r", T0, MarkerRecorded("m", str(seq), Payload("text/plain", b"")), f"c{seq}")
            rows.append((CODEC.encode_event_key(ev.key), CODEC.encode_event(ev)))
    return sorted(rows)  # key order, as a RocksDB scan yields them


def test_history_rows_group_per_workflow_in_seq_order() -> None:
    # 'a' is a prefix of 'ab', seq 200 encodes in two bytes: grouping must still be exact.
    groups = dict(_group_by_workflow(CODEC, _event_rows(("a", 200), ("ab", 3), ("b", 1))))
    assert sorted(groups) == ["a", "ab", "b"]
    assert [e.seq for e in groups["a"]] == list(range(1, 201))
    assert [e.seq for e in groups["ab"]] == [1, 2, 3]


def test_digest_names_what_differs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old, new = _db(tmp_path, "old"), _db(tmp_path, "new")
    for db in (old, new):
        db.put(b"same", b"1")
        db.put(b"changed", b"x")
    old.put(OFFSET_KEY, b"7")  # bookkeeping: not part of the digest
    old.put(b"only-old", b"1")
    new.put(b"only-new", b"1")
    new.put(b"changed", b"y")
    d = _digest("t", [old], [new])
    assert (d.only_old, d.only_new, d.different, d.old_rows, d.new_rows) == (1, 1, 1, 3, 3)
    assert not d.matches
    old.delete(b"only-old")
    new.delete(b"only-new")
    new.put(b"changed", b"x")
    assert _digest("t", [old], [new]).matches
    assert [k for k, _ in _rows(old)] == [b"changed", b"same"]
    # A partition without an old table digests like an empty one.
    empty = _digest("t", [None], [new])
    assert empty.old_rows == 0 and empty.only_new == 2
    old.close()
    new.close()


def test_state_without_running_code() -> None:
    live_ex = WorkflowExecution.new(REGISTRY, "s")
    step = live_ex.handle(Command("c1", "s", T0, StartWorkflow("Sleepy", [])), T0)
    rebuilt = WorkflowExecution.from_history(None, "s", step.events, run_code=False)
    assert rebuilt.status == "RUNNING" and rebuilt.instance is None
    assert [e.timer_id for e in rebuilt.recovery_effects(T0) if isinstance(e, fx.ScheduleTimer)] == ["1"]


@pytest.mark.parametrize("row, now, expected", [
    ({"status": "RUNNING", "closed_at_ms": None}, T0 + 10**9, False),
    ({"status": "COMPLETED", "closed_at_ms": T0}, T0 + 999, False),
    ({"status": "COMPLETED", "closed_at_ms": T0}, T0 + 1000, True),
    ({"status": "FAILED", "closed_at_ms": T0}, T0 + 5000, True),
    ({"status": "CONTINUED_AS_NEW", "closed_at_ms": T0}, T0 + 5000, False),
    ({"status": "COMPLETED"}, T0 + 5000, False),
])
def test_retention_expiry_rule(row: dict, now: int, expected: bool) -> None:
    assert expired(json.dumps(row).encode(), now, 1000) is expected


def test_sweep_interval_is_a_quarter_of_the_retention_within_bounds() -> None:
    assert sweep_interval_s(1000) == 0.5
    assert sweep_interval_s(8000) == 2.0
    assert sweep_interval_s(7 * 24 * 3600 * 1000) == 60.0


def test_rebuild_refuses_a_data_folder_in_use_before_contacting_kafka(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from faust.stores.rocksdb import RocksDBOptions

    from aion.engine._rebuild import DataDirInUseError, rebuild_tables
    from aion.engine.settings import Settings

    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    held = RocksDBOptions().open(tables / "workflows-3.db")  # as a running worker holds it
    try:
        with pytest.raises(DataDirInUseError, match="workflows-3.db is locked.*Stop that worker first"):
            rebuild_tables(Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path))
    finally:
        held.close()
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["tables"]  # nothing built
