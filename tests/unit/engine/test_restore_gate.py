"""When an engine worker starts reading its assigned partitions (issue 17): only once the tables
of the *current* assignment have caught up — not when Faust's ``rebalancing`` flag says the
rebalance is over (the previous rebalance's recovery clears it when it ends after the next one
began) nor on a recovery's completion signal that arrives while the next assignment's catch-up
runs. Seen on a three-broker cluster under load: a worker marked partitions ready 10 ms before
their catch-up finished, read commands from a stale intake position with histories missing their
last events, and its timer wheel moved the persisted scan position above timer rows the catch-up
wrote behind it — timers no worker ever fired again.

The engine's state machine (fence in -> catch up -> read) with its Kafka-facing parts replaced by
fakes: no broker, no Faust worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aion import workflow
from aion.engine import _engine
from aion.engine._engine import Engine
from aion.engine._progress import POSITION_KEY
from aion.engine.settings import Settings
from aion.runtime import Registry


@workflow.defn
class Noop:
    @workflow.run
    async def run(self) -> None:
        return None


class FakeWriters:
    """The transactional producers: ``open`` fences in at once."""

    def __init__(self) -> None:
        self._owned: set[int] = set()

    def owned(self) -> set[int]:
        return set(self._owned)

    def held(self) -> set[int]:
        return set(self._owned)

    def close(self, partitions: set[int] | None = None) -> None:
        self._owned -= set(self._owned if partitions is None else partitions)

    async def open(self, partitions: set[int]) -> set[int]:
        self._owned |= partitions
        return set()

    def shutdown(self) -> None:
        pass


class FakeReader:
    """The librdkafka command reader: where each partition is read from."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    @property
    def assigned(self) -> set[int]:
        return set(self.offsets)

    def assign(self, offsets: dict[int, int]) -> None:
        for p, o in offsets.items():
            self.offsets.setdefault(p, o)

    def unassign(self, partitions: set[int]) -> None:
        for p in partitions:
            self.offsets.pop(p, None)

    def committed(self, partitions: set[int], timeout: float = 30.0) -> dict[int, int]:
        raise AssertionError("every partition has an intake position row")


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An engine worker assigned partitions 0, 1, 2 (generation 5) whose local ``progress``
    table still holds the intake positions of an earlier ownership (154): the log's are 196."""
    e: Any = Engine(Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="gate", partitions=6,
                             data_dir=tmp_path), Registry(workflows=[Noop]))
    e.writers = FakeWriters()
    e.reader = FakeReader()
    e._assigned_partitions = lambda: {0, 1, 2}
    e.progress_dbs = {p: {POSITION_KEY: b"154"} for p in range(6)}
    monkeypatch.setattr(_engine, "db_for", lambda table, p: e.progress_dbs[p])
    monkeypatch.setattr(_engine, "keep_paused", lambda consumer, topic: None)
    e.app.consumer_generation_id = 5
    e.app.rebalancing = False  # as Faust leaves it when a previous recovery ended late
    e.app.in_recovery = False  # Faust's recovery starts only after the tables' catch-up
    return e


def catch_up_running(e: Any, generation: int) -> dict[str, asyncio.Future[bool]]:
    """Each table's catch-up of ``generation`` started and still running (as ``_store`` records it)."""
    loop = asyncio.get_running_loop()
    jobs: dict[str, asyncio.Future[bool]] = {name: loop.create_future() for name in e.app.tables}
    e.app._aion_catch_ups = (generation, jobs)
    return jobs


def catch_up_finishes(e: Any, jobs: dict[str, asyncio.Future[bool]], *, failed: str | None = None) -> None:
    """The catch-up writes the log's intake positions (196) into the local table and ends."""
    for p in e.progress_dbs:
        e.progress_dbs[p] = {POSITION_KEY: b"196"}
    for name, job in jobs.items():
        job.set_result(name != failed)


async def test_no_partition_is_read_before_its_catch_up_is_done(engine: Any) -> None:
    await engine._fence_in(5)
    assert engine.writers.owned() == {0, 1, 2}
    jobs = catch_up_running(engine, 5)

    # A completion signal (a late one of the previous recovery) and the 1 s safety net while the
    # catch-up runs: nothing is read (before the fix both read from the stale 154).
    await engine._on_restored(engine.app)
    assert engine.owned() == set() and engine.reader.offsets == {}
    await engine._check_restored()
    assert engine.owned() == set() and engine.reader.offsets == {}

    catch_up_finishes(engine, jobs)
    await engine._check_restored()  # the safety net: the tables are caught up
    assert engine.owned() == {0, 1, 2}
    assert engine.reader.offsets == {0: 196, 1: 196, 2: 196}


async def test_the_completion_signal_starts_reading_once_caught_up(engine: Any) -> None:
    await engine._fence_in(5)
    catch_up_finishes(engine, catch_up_running(engine, 5))
    await engine._on_restored(engine.app)
    assert engine.owned() == {0, 1, 2}
    assert engine.reader.offsets == {0: 196, 1: 196, 2: 196}


async def test_a_caught_up_earlier_assignment_does_not_count(engine: Any) -> None:
    """The catch-up on record is generation 4's (done); generation 5 is fenced in and its
    catch-up has not started yet: nothing is read."""
    await engine._fence_in(5)
    jobs4 = catch_up_running(engine, 4)
    catch_up_finishes(engine, jobs4)
    await engine._on_restored(engine.app)
    await engine._check_restored()
    assert engine.owned() == set() and engine.reader.offsets == {}


async def test_a_newer_assignment_on_its_way_waits_for_its_own_restore(engine: Any) -> None:
    await engine._fence_in(5)
    catch_up_finishes(engine, catch_up_running(engine, 5))
    engine.app.consumer_generation_id = 6  # generation 6 is being assigned: its own fence-in comes
    await engine._on_restored(engine.app)
    await engine._check_restored()
    assert engine.owned() == set() and engine.reader.offsets == {}


async def test_a_failed_catch_up_waits_for_faust_s_recovery(engine: Any) -> None:
    """One table's catch-up failed: Faust's recovery reads its partitions, and only its
    completion signal (not the safety net) says they are restored."""
    await engine._fence_in(5)
    catch_up_finishes(engine, catch_up_running(engine, 5), failed="history")
    await engine._check_restored()
    assert engine.owned() == set()
    await engine._on_restored(engine.app)
    assert engine.owned() == {0, 1, 2}


async def test_catch_up_state() -> None:
    from aion.engine._store import catch_up_state

    app: Any = type("App", (), {})()
    assert catch_up_state(app, 3) is None  # nothing recorded yet
    loop = asyncio.get_running_loop()
    a, b = loop.create_future(), loop.create_future()
    app._aion_catch_ups = (3, {"a": a, "b": b})
    assert catch_up_state(app, 3) is None
    a.set_result(True)
    assert catch_up_state(app, 3) is None
    b.set_result(True)
    assert catch_up_state(app, 3) is True
    assert catch_up_state(app, 4) is None
    c = loop.create_future()
    c.set_exception(RuntimeError("boom"))
    app._aion_catch_ups = (4, {"a": a, "c": c})
    assert catch_up_state(app, 4) is False
