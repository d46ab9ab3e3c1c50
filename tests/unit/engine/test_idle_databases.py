"""The engine's RocksDB stores keep a database open once opened (``aion/engine/_faust.py``:
``keep_databases_open``; ``aion/engine/_store.py``: ``open_databases``), on a real Faust store
and real RocksDB: a partition a rebalance takes away keeps its database open and idle, the
partition coming back takes that same database, and the warm-up opens the others before the
worker joins, within its open-files budget. No broker: nothing here connects."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from aion.engine._faust import idle_databases, keep_databases_open, open_idle
from aion.engine._store import FILES_PER_DATABASE, open_databases


@pytest.fixture
def table(tmp_path: Path) -> Any:
    keep_databases_open()
    app = faust.App("aion-idle-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    return app.Table("t", key_type=bytes, value_type=bytes, partitions=4)


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


def test_open_idle_parks_what_is_open_and_opens_the_rest_up_to_its_limit(table: Any) -> None:
    store = table.data
    first = store._db_for_partition(2)  # as the warm-up's catch-up opens a local copy

    assert open_idle(store, range(4), limit=3) == 2  # 2 was open already: 0 and 1 opened

    assert store._dbs == {}  # nothing is assigned before the worker joins
    assert sorted(idle_databases(store)) == [0, 1, 2] and idle_databases(store)[2] is first
    assert [store.partition_path(p).exists() for p in range(4)] == [True, True, True, False]
    assert store._db_for_partition(0) is not None and sorted(idle_databases(store)) == [1, 2]


def test_reset_state_lets_go_of_idle_databases(table: Any) -> None:
    store = table.data
    open_idle(store, range(2), limit=2)

    store.reset_state()

    assert idle_databases(store) == {}
    assert not store.partition_path(0).exists()
    # The LOCK of the removed databases is released: the partition opens afresh.
    fresh = store._db_for_partition(0)
    assert fresh.get(b"k") is None


def test_open_databases_stays_within_a_quarter_of_the_open_files_limit(table: Any, caplog: Any) -> None:
    budget = 4 * FILES_PER_DATABASE * 2  # a quarter of it: two databases

    with caplog.at_level(logging.WARNING, logger="aion.engine"):
        opened = open_databases([table], 4, files=budget)

    assert opened == 2 and sorted(idle_databases(table.data)) == [0, 1]
    assert "lets a worker open 2 of its 4 partitions' databases" in caplog.text
    assert "ulimit -n" in caplog.text


def test_open_databases_opens_every_partition_when_the_limit_allows(table: Any, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="aion.engine"):
        assert open_databases([table], 4, files=100_000) == 4

    assert sorted(idle_databases(table.data)) == [0, 1, 2, 3]
    assert "ulimit" not in caplog.text
