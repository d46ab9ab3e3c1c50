"""The engine's visibility index (``engine/_visibility_index.py``): every list and count it
answers, page by page, equals the rows the same request selects from all rows
(``ListRequest.select``, what the changelog reader does), and it stays so as rows change,
while it is built and after. The rows live in a dict here (the index reads them by key)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from aion.common.list_filter import plan_filter
from aion.common.visibility import SCAN_BUDGET, ListRequest, summary_from_row
from aion.engine._visibility_index import VisibilityIndex, VisibilityIndexNotReady
from aion.model import Payload

T0 = 1_764_756_000_000
TYPES = ["Order", "Refund", "Ship"]
STATUSES = ["RUNNING", "COMPLETED", "FAILED", "CONTINUED_AS_NEW", "TERMINATED"]


def row(wid: str, rnd: random.Random) -> bytes:
    status = rnd.choice(STATUSES)
    started = None if rnd.random() < 0.02 else T0 + rnd.randrange(0, 1000) * 1000
    return json.dumps({
        "workflow_id": wid, "workflow_type": rnd.choice(TYPES), "run_id": f"r-{wid}", "status": status,
        "history_length": rnd.randrange(1, 50), "started_at_ms": started,
        "closed_at_ms": None if status == "RUNNING" else T0 + 2_000_000, "task_queue": "q",
        "search_attributes": {"Priority": str(rnd.randrange(5))}, "search_attribute_types": {"Priority": "Int"},
    }).encode()


class Rows:
    """One partition's ``workflows`` rows (key -> JSON), as RocksDB holds them."""

    def __init__(self) -> None:
        self.db: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def scan(self) -> list[tuple[bytes, bytes]]:
        return sorted(self.db.items())  # a snapshot, as a RocksDB iterator reads


def make(n: int, seed: int = 7) -> tuple[Rows, VisibilityIndex, random.Random]:
    rnd = random.Random(seed)
    rows = Rows()
    for i in range(n):
        wid = f"wf-{i:05d}"
        rows.db[wid.encode()] = row(wid, rnd)
    return rows, VisibilityIndex(lambda p: rows, lambda p: rows.scan()), rnd


def ask(index: VisibilityIndex, req: ListRequest, limit: int, after: Any = None, count: bool = False,
        reverse: bool = False) -> dict[str, Any]:
    body = {**req.to_json(), "limit": limit, "after": after, "count": count, "reverse": reverse}
    return json.loads(index.answer(0, [Payload("application/json", json.dumps(body).encode())]).data)


def listed(index: VisibilityIndex, req: ListRequest, limit: int, reverse: bool = False) -> list[str]:
    """Every row, page after page, as the client follows ``next``."""
    out: list[str] = []
    after = None
    while True:
        page = ask(index, req, limit, after, reverse=reverse)
        out += [r["workflow_id"] for r in page["rows"]]
        after = page["next"]
        if after is None:
            return out


def counted(index: VisibilityIndex, req: ListRequest) -> int:
    total, after = 0, None
    while True:
        page = ask(index, req, 1, after, count=True)
        total += page["count"]
        after = page["next"]
        if after is None:
            return total


def expected(rows: Rows, req: ListRequest) -> list[str]:
    every = {k.decode(): summary_from_row(json.loads(v)) for k, v in rows.db.items()}
    return [r.workflow_id for r in req.select(every)]


REQUESTS = [
    ListRequest.of(""),
    ListRequest.of("ExecutionStatus = 'Running'"),
    ListRequest.of("ExecutionStatus = 'Running' AND WorkflowType = 'Order'"),
    ListRequest.of("WorkflowType IN ('Order', 'Ship') AND ExecutionStatus != 'Running'"),
    ListRequest.of("ExecutionStatus = 'Running' OR ExecutionStatus = 'failed'"),
    ListRequest.of(f"StartTime BETWEEN {T0 + 100_000} AND {T0 + 300_000}"),
    ListRequest.of(f"StartTime > {T0 + 500_000} AND WorkflowType = 'Refund'"),
    ListRequest.of(f"StartTime <= {T0 + 10_000}"),
    ListRequest.of(f"StartTime = {T0 + 42_000}"),
    ListRequest.of("Priority > 2 AND ExecutionStatus = 'Completed'"),
    ListRequest.of("(WorkflowType = 'Order' AND Priority = 1) OR WorkflowType = 'Ship'"),
    ListRequest.of("WorkflowId STARTS_WITH 'wf-001'"),
    ListRequest.of("WorkflowType = 'Nope'"),
    ListRequest.of("ExecutionStatus = 'Running' AND ExecutionStatus = 'Failed'"),
    ListRequest.of("", type="Order", status="running", started_after=T0 + 200_000),
    ListRequest.of("", search_attributes={"Priority": 3}),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: r.query or repr(r.to_json()))
def test_lists_and_counts_equal_a_selection_of_every_row(req: ListRequest) -> None:
    rows, index, _ = make(2_500)
    asyncio.run(index.build(0))
    want = expected(rows, req)
    assert listed(index, req, 100) == want
    assert listed(index, req, 30) == want
    assert listed(index, req, 30, reverse=True) == want[::-1]  # newest first
    assert counted(index, req) == len(want)
    # the first page is the first rows
    assert [r["workflow_id"] for r in ask(index, req, 5)["rows"]] == want[:5] or (
        not ask(index, req, 5)["rows"] and ask(index, req, 5)["next"] is not None)


def test_the_hints_pick_only_the_rows_needed() -> None:
    """The first page of RUNNING workflows of one type reads that page, not the partition."""
    rows, index, _ = make(5_000)
    asyncio.run(index.build(0))
    req = ListRequest.of("ExecutionStatus = 'Running' AND WorkflowType = 'Order'")
    assert plan_filter(req.query)[1].exact
    before = index.stats["rows_read"]
    page = ask(index, req, 20)
    assert len(page["rows"]) == 20
    assert index.stats["rows_read"] - before == 20
    before = index.stats["rows_read"]
    ask(index, req, 1, count=True)
    assert index.stats["rows_read"] == before  # an exact count reads no row


def test_a_filter_the_index_cannot_narrow_is_answered_in_bounded_steps() -> None:
    rows, index, _ = make(3 * SCAN_BUDGET)
    asyncio.run(index.build(0))
    last = f"wf-{3 * SCAN_BUDGET - 1:05d}"
    req = ListRequest.of(f"WorkflowId = '{last}'")
    page = ask(index, req, 10)
    assert page["rows"] == [] and page["next"] is not None  # read SCAN_BUDGET rows, found none yet
    assert listed(index, req, 10) == [last]


def test_rows_that_change_while_and_after_the_index_is_built() -> None:
    rows, index, rnd = make(2_000, seed=3)

    async def build_with_changes() -> None:
        build = asyncio.ensure_future(index.build(0))
        await asyncio.sleep(0)
        assert not index.ready(0)
        with pytest.raises(VisibilityIndexNotReady):
            ask(index, REQUESTS[0], 10)
        # committed while the scan runs (the scan's snapshot has the older rows)
        changes = []
        for i in range(0, 2_000, 7):
            wid = f"wf-{i:05d}"
            value = None if i % 3 == 0 else row(wid, rnd)
            if value is None:
                rows.db.pop(wid.encode(), None)
            else:
                rows.db[wid.encode()] = value
            changes.append(("t", wid.encode(), value))
        index.committed(0, changes)
        await build

    asyncio.run(build_with_changes())
    for req in REQUESTS:
        assert listed(index, req, 200) == expected(rows, req), req
    # after: new rows, changed rows, retired rows
    rows.db[b"wf-00001"] = row("wf-00001", rnd)
    index.committed(0, [("t", b"wf-new", row("wf-new", rnd)), ("t", b"wf-00001", rows.db[b"wf-00001"])])
    rows.db[b"wf-new"] = json.dumps({**json.loads(row("wf-new", rnd)), "status": "RUNNING"}).encode()
    index.committed(0, [("t", b"wf-new", rows.db[b"wf-new"])])
    rows.db.pop(b"wf-00002", None)
    index.forget(0, ["wf-00002"])
    for req in REQUESTS:
        assert listed(index, req, 200) == expected(rows, req), req
        assert listed(index, req, 200, reverse=True) == expected(rows, req)[::-1], req
        assert counted(index, req) == len(expected(rows, req)), req


def test_a_bad_request_says_what_was_wrong() -> None:
    _, index, _ = make(10)
    asyncio.run(index.build(0))
    with pytest.raises(ValueError, match="bad list request"):
        index.answer(0, [Payload("application/json", b'{"query": "WorkflowType ="}')])
    with pytest.raises(ValueError, match="bad list request"):
        index.answer(0, [Payload("application/json", b'{"query": "", "started_after": "yesterday"}')])
    index.drop([0])
    with pytest.raises(VisibilityIndexNotReady):
        ask(index, REQUESTS[0], 10)


def test_a_parked_index_comes_back_only_when_no_row_moved() -> None:
    rows, index, rnd = make(500)
    asyncio.run(index.build(0))
    index.drop([0], lambda p: 41)  # a rebalance: parked at changelog offset 41
    assert not index.ready(0)
    assert index.assigned(0, 41) and index.ready(0)  # nobody wrote a row: the same index
    assert listed(index, REQUESTS[1], 100) == expected(rows, REQUESTS[1])
    index.drop([0], lambda p: 41)
    assert not index.assigned(0, 57)  # rows moved meanwhile (another owner): built again
    assert not index.ready(0)
    index.drop([0])  # revoked for good: forgotten
    assert not index.assigned(0, 41)


def test_the_facts_of_a_row_read_off_its_start_equal_the_decoded_row() -> None:
    from types import SimpleNamespace

    from aion.engine._store import visibility_row
    from aion.engine._visibility_index import _facts

    def ex(**kw: Any) -> Any:
        run = SimpleNamespace(started_at_ms=kw.pop("started", T0), started=SimpleNamespace(task_queue="q"))
        fields = dict(workflow_id="w-1", workflow_type="Order", run_id="r", status="RUNNING", history=[], run=run,
                      search_attributes={"status": "FAKE", "workflow_type": "x"})
        return SimpleNamespace(**{**fields, **kw})

    for e in (ex(), ex(status="completed"), ex(status=None), ex(workflow_type="Bestellung-é"), ex(started=None),
              ex(workflow_type='quote"d'), ex(workflow_id=None)):
        value = visibility_row(e)
        d = json.loads(value)
        status = d["status"].upper() if d["status"] else None
        start = d["started_at_ms"] if d["started_at_ms"] is not None else -1
        assert _facts(value) == (status, d["workflow_type"], start), value
