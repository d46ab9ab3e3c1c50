"""The engine's RocksDB stores keep a database open once opened (``aion/engine/_faust.py``:
``keep_databases_open``; ``aion/engine/_store.py``: ``open_databases``), on a real Faust store
and real RocksDB: a partition a rebalance takes away keeps its database open and idle, the
partition coming back takes that same database, and the warm-up opens the others before the
worker joins, within its open-files budget. No broker: nothing here connects."""

from __future__ import annotations

import asyncio
import logging
import resource
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from aion.engine._faust import idle_databases, keep_databases_open, open_idle, set_idle_limit
from aion.engine._store import open_databases
from aion.engine.worker import raise_open_files_limit


def _table(folder: Path, name: str = "t") -> Any:
    keep_databases_open()
    app = faust.App(f"aion-idle-{name}", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(folder))
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=4)


@pytest.fixture
def table(tmp_path: Path) -> Any:
    return _table(tmp_path)


def _tp(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


def test_a_revoked_partition_keeps_its_database_open_and_gets_it_back(table: Any) -> None:
    store = table.data
    db = store._db_for_partition(1)
    db[b"k"] = b"v"

    store.revoke_partitions(table, {_tp(table, 1)})

    assert 1 not in store._dbs  # no longer the table's: Faust's reads and sizes skip it
    assert idle_databases(store) == {1: db}  # still open
    again = store._db_for_partition(1)
    assert again is db and again[b"k"] == b"v"
    assert idle_databases(store) == {}


async def test_faust_s_rebalance_takes_the_idle_database_back(table: Any) -> None:
    """Through Faust's own ``on_rebalance``: revoked in one generation, assigned in the next."""
    store = table.data
    store._db_for_partition(2)[b"k"] = b"v"
    before = store._dbs[2]

    await store.on_rebalance(set(), {_tp(table, 2)}, set(), generation_id=2)
    assert 2 not in store._dbs and idle_databases(store)[2] is before

    store._db_for_partition(2)  # Faust's assignment opens an active's through _db_for_partition
    assert store._dbs[2] is before and idle_databases(store) == {}


def test_revokes_beyond_the_idle_limit_close_the_database(table: Any) -> None:
    store = table.data
    set_idle_limit(store, 1)
    for p in (0, 1):
        store._db_for_partition(p)

    store.revoke_partitions(table, {_tp(table, 0), _tp(table, 1)})

    assert len(idle_databases(store)) == 1 and store._dbs == {}


def test_open_idle_parks_what_is_open_and_opens_the_partition_asked(table: Any) -> None:
    store = table.data
    first = store._db_for_partition(2)  # as the warm-up's catch-up opens a local copy

    assert open_idle(store, 0) is True
    assert open_idle(store, 2) is False  # open already

    assert store._dbs == {}  # nothing is assigned before the worker joins
    assert sorted(idle_databases(store)) == [0, 2] and idle_databases(store)[2] is first
    assert [store.partition_path(p).exists() for p in range(4)] == [True, False, True, False]


def test_reset_state_lets_go_of_idle_databases(table: Any) -> None:
    store = table.data
    store._db_for_partition(0)[b"k"] = b"v"
    open_idle(store, 1)

    store.reset_state()

    assert idle_databases(store) == {}
    assert not store.partition_path(0).exists()
    # The LOCK of the removed databases is released: the partition opens afresh, empty.
    assert store._db_for_partition(0).get(b"k") is None


def test_stop_lets_go_of_idle_databases(tmp_path: Path) -> None:
    table = _table(tmp_path)
    open_idle(table.data, 0)

    asyncio.run(table.data.stop())

    assert idle_databases(table.data) == {}
    # Released: another store of the same folder opens it (RocksDB refuses a second open of a
    # database this process holds: "lock hold by current process").
    other = _table(tmp_path)
    other.data._db_for_partition(0)[b"k"] = b"v"


def test_open_databases_opens_every_partition_when_the_limit_allows(table: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="aion.engine"):
        assert open_databases([table], 4, files=100_000) == 4

    assert sorted(idle_databases(table.data)) == [0, 1, 2, 3]
    assert table.data.__dict__["_aion_idle_limit"] is None
    assert "limit" not in caplog.text


def test_open_databases_stops_at_a_quarter_of_the_open_files_limit(tmp_path: Path, caplog: Any) -> None:
    tables = [_table(tmp_path, "a"), _table(tmp_path, "b")]

    def count_open() -> int:  # 10 files before, 6 per database opened
        return 10 + 6 * sum(len(idle_databases(t.data)) for t in tables)

    with caplog.at_level(logging.WARNING, logger="aion.engine"):
        opened = open_databases(tables, 4, files=4 * 40, count_open=count_open)

    # Checked before each partition: 10, 22, 34 open files are under 40 (partitions 0-2 open),
    # 46 is not (partition 3 does not).
    assert opened == 6 and [sorted(idle_databases(t.data)) for t in tables] == [[0, 1, 2], [0, 1, 2]]
    assert [t.data.__dict__["_aion_idle_limit"] for t in tables] == [3, 3]
    assert "of 3 of the 4 partitions are open" in caplog.text and "ulimit -n" in caplog.text


def test_open_databases_stops_at_a_failed_open_and_the_worker_goes_on(tmp_path: Path, caplog: Any) -> None:
    table = _table(tmp_path)
    table.data.partition_path(1).parent.mkdir(parents=True, exist_ok=True)
    table.data.partition_path(1).write_text("not a database folder")

    with caplog.at_level(logging.WARNING, logger="aion.engine"):
        assert open_databases([table], 4, files=100_000) == 1

    assert sorted(idle_databases(table.data)) == [0]
    assert "an open failed" in caplog.text


def test_raise_open_files_limit_raises_the_soft_limit_up_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        now = raise_open_files_limit(want=512)
        assert now == min(512, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_databases_counts_no_limit_against_partitions_already_open(table: Any, caplog: Any) -> None:
    """A restarted worker's warm-up has its local copies open already: the opening ahead goes
    past them and stops at the first partition it would have to open."""
    for p in (0, 1):
        table.data._db_for_partition(p)  # opened by the warm-up's catch-up

    def count_open() -> int:
        return 10 + 6 * len(idle_databases(table.data))

    with caplog.at_level(logging.WARNING, logger="aion.engine"):
        assert open_databases([table], 4, files=4 * 22, count_open=count_open) == 0

    assert sorted(idle_databases(table.data)) == [0, 1] and table.data.__dict__["_aion_idle_limit"] == 2
    assert "of 2 of the 4 partitions are open" in caplog.text and "at partition 2" in caplog.text
