"""The retention's index of closed workflows: a sweep takes the expired entries off the front of
a per-partition heap kept up by the engine's committed rows, instead of decoding every row of
every owned partition each time."""

from __future__ import annotations

import json

from aion.engine._retention import closed_at, expired


def _row(status: str, closed: int | None) -> bytes:
    return json.dumps({"status": status, "closed_at_ms": closed, "workflow_type": "T"}).encode()


def test_closed_at_reads_only_closed_rows() -> None:
    assert closed_at(_row("COMPLETED", 1_000)) == 1_000
    assert closed_at(_row("FAILED", 5)) == 5
    assert closed_at(_row("RUNNING", None)) is None
    assert closed_at(_row("CONTINUED_AS_NEW", 7)) is None  # the chain goes on
    assert closed_at(b"not json") is None
    assert expired(_row("COMPLETED", 1_000), now_ms=5_000, retention_ms=4_000)
    assert not expired(_row("COMPLETED", 1_001), now_ms=5_000, retention_ms=4_000)


class _App:
    rebalancing = False

    def task(self, fn: object) -> None:
        pass


class _Output:
    def __init__(self, owned: set[int]) -> None:
        self._owned = owned

    def owned(self) -> set[int]:
        return self._owned

    def lock_for(self, partition: int):  # type: ignore[no-untyped-def]
        import asyncio

        return asyncio.Lock()


async def test_a_sweep_scans_a_partition_once_then_takes_only_what_expired(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from aion.common.settings import Settings
    from aion.common.topics import TopicNames
    from aion.engine import _retention

    rows = {0: {b"a": _row("COMPLETED", 1_000), b"b": _row("RUNNING", None), b"c": _row("FAILED", 9_000)},
            1: {b"d": _row("COMPLETED", 2_000)}}
    scans: list[int] = []

    def scan_items(table: object, p: int):  # type: ignore[no-untyped-def]
        scans.append(p)
        return iter(rows[p].items())

    retired: list[tuple[int, list[str]]] = []

    async def retire(self, partition: int, wids: list[str], now: int) -> int:  # type: ignore[no-untyped-def]
        retired.append((partition, sorted(wids)))
        return len(wids)

    monkeypatch.setattr(_retention, "scan_items", scan_items)
    monkeypatch.setattr(_retention.Retention, "_retire", retire)
    tables = SimpleNamespace(history=None, workflows=None, terminal=None)
    r = _retention.Retention(_App(), Settings(retention_ms=4_000), None, TopicNames("x"), tables,  # type: ignore[arg-type]
                             _Output({0, 1}))
    assert await r.sweep(now_ms=6_500) == 2
    assert retired == [(0, ["a"]), (1, ["d"])] and sorted(scans) == [0, 1]
    # A workflow that closes later joins through the committed rows; no partition is scanned again.
    r.rows_committed(0, [("t", b"b", _row("COMPLETED", 6_000), 0), ("t", b"e", _row("RUNNING", None), 0)])
    retired.clear()
    assert await r.sweep(now_ms=10_500) == 1 and retired == [(0, ["b"])]
    assert await r.sweep(now_ms=13_500) == 1 and retired[-1] == (0, ["c"])
    assert sorted(scans) == [0, 1]
    # A partition that left and came back is scanned again.
    r.forget_partitions([1])
    await r.sweep(now_ms=13_600)
    assert sorted(scans) == [0, 1, 1]
