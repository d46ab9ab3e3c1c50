"""The engine's visibility index: lists and counts answered by the engine that owns each partition.

Each engine worker keeps, per partition it owns, an in-memory index of its ``workflows`` rows
by (status, type), each bucket ordered by (start time, workflow id) in a ``SortedList``. A list
request (``__aion.list``: ``aion.common.visibility``) is answered from it: the filter's hints
(statuses, types, a start-time range: ``common/list_filter.py``) pick the buckets and the range,
the rows are read from RocksDB only for the candidates, and the full filter decides. The first
page of "RUNNING workflows of type X" costs the page, whatever else the partition holds; a
count the hints capture whole costs a few bisections per bucket.

The index is built by one scan of the partition's rows when the partition is assigned, in
chunks that yield to the event loop (a request meanwhile gets ``VisibilityIndexNotReady``: the
client asks again, or reads the changelog), and kept up by the engine's committed rows
(:meth:`VisibilityIndex.committed`) and the retention's deletions (:meth:`forget`). A row
committed while the scan runs wins over the scan's older copy (the scan reads a RocksDB
snapshot). A rebalance parks the index with the ``workflows`` table's changelog offset: when
the partition comes back and nobody wrote a row meanwhile (the offset is the same after the
catch-up) the index is taken back as it is, not built again — a rebalance that leaves a
worker its partitions costs no scan. Memory: about 250 bytes per workflow.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import re
from typing import Any, Callable, Iterable, Iterator, Sequence

from sortedcontainers import SortedList  # type: ignore[import-untyped]  # no stubs

from ..common.list_filter import Hints
from ..common.visibility import MAX_LIMIT, MAX_PAGE_BYTES, NO_START, SCAN_BUDGET, ListRequest, summary_from_row
from ..exceptions import AionError
from ..model import Payload

log = logging.getLogger("aion.engine.visibility")

JSON = "application/json"

Entry = tuple[int, str]  # (start time or NO_START, workflow id)
BucketKey = tuple[str | None, str | None]  # (status upper-cased, workflow type)


class VisibilityIndexNotReady(AionError):
    """The partition's index is still being built: ask again shortly."""


#: The start of a row as ``_store.visibility_row`` writes it (``json.dumps``, these keys first).
_HEAD = re.compile(rb'\{"workflow_id": (?:null|"[^"\\]*"), "workflow_type": (null|"[^"\\]*"), '
                   rb'"run_id": (?:null|"[^"\\]*"), "status": (null|"[^"\\]*"), "history_length": -?\d+, '
                   rb'"started_at_ms": (null|-?\d+)[,}]')


def _facts(row: bytes) -> tuple[str | None, str | None, int]:
    """(status, type, start) of a ``workflows`` row: read off the row's start when it has the
    engine's form (two thirds of the cost of decoding it), else decoded."""
    m = _HEAD.match(row)
    if m is not None:
        wf_type, status, started = m.groups()
        return (status[1:-1].decode().upper() or None if status != b"null" else None,
                wf_type[1:-1].decode() if wf_type != b"null" else None,
                int(started) if started != b"null" else NO_START)
    d = json.loads(row)
    status = d.get("status")
    started = d.get("started_at_ms")
    return (status.upper() if isinstance(status, str) and status else None,
            d.get("workflow_type") if isinstance(d.get("workflow_type"), str) else None,
            started if isinstance(started, int) and not isinstance(started, bool) else NO_START)


class PartitionIndex:
    """One partition's rows by (status, type), each bucket by (start time, workflow id)."""

    def __init__(self) -> None:
        self.facts: dict[str, tuple[BucketKey, int]] = {}
        self.buckets: dict[BucketKey, SortedList] = {}
        self._keys: dict[BucketKey, BucketKey] = {}  # one tuple per bucket, shared by its rows' facts

    def key(self, status: str | None, wf_type: str | None) -> BucketKey:
        k = (status, wf_type)
        return self._keys.setdefault(k, k)

    def load(self, entries: list[tuple[str, BucketKey, int]]) -> None:
        """Many rows at once (a build; keys from :meth:`key`): each bucket sorted once, not row
        by row."""
        new: dict[BucketKey, list[Entry]] = {}
        for wid, key, started in entries:
            if wid in self.facts:
                self._unbucket(wid, self.facts[wid])
            self.facts[wid] = (key, started)
            new.setdefault(key, []).append((started, wid))
        for key, items in new.items():
            old = self.buckets.get(key)
            self.buckets[key] = SortedList(items + list(old) if old else items)

    def __len__(self) -> int:
        return len(self.facts)

    def put(self, wid: str, status: str | None, wf_type: str | None, started: int) -> None:
        key = self.key(status, wf_type)
        old = self.facts.get(wid)
        if old is not None:
            if old == (key, started):
                return
            self._unbucket(wid, old)
        self.facts[wid] = (key, started)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = SortedList()
        bucket.add((started, wid))

    def remove(self, wid: str) -> None:
        old = self.facts.pop(wid, None)
        if old is not None:
            self._unbucket(wid, old)

    def _unbucket(self, wid: str, old: tuple[BucketKey, int]) -> None:
        bucket = self.buckets.get(old[0])
        if bucket is not None:
            bucket.discard((old[1], wid))
            if not bucket:
                del self.buckets[old[0]]

    def _chosen(self, hints: Hints) -> list[SortedList]:
        return [b for (status, wf_type), b in self.buckets.items()
                if (hints.statuses is None or status in hints.statuses)
                and (hints.types is None or wf_type in hints.types)]

    def candidates(self, hints: Hints, after: Entry | None = None, reverse: bool = False) -> Iterator[Entry]:
        """The entries the hints allow, after ``after``, in list order (``reverse``: newest first)."""
        lo: Entry | None = (hints.start_lo, "") if hints.start_lo is not None else None
        hi: Entry | None = (hints.start_hi + 1, "") if hints.start_hi is not None else None
        lo_incl = True
        if after is not None and not reverse and (lo is None or after >= lo):
            lo, lo_incl = after, False
        if after is not None and reverse and (hi is None or after < hi):
            hi = after
        ranges = [b.irange(lo, hi, (lo_incl, False), reverse=reverse) for b in self._chosen(hints)]
        return heapq.merge(*ranges, reverse=reverse) if len(ranges) != 1 else iter(ranges[0])

    def count(self, hints: Hints) -> int:
        """How many entries the hints allow (by bisection: no row is read)."""
        lo = hints.start_lo if hints.start_lo is not None else NO_START
        total = 0
        for b in self._chosen(hints):
            if hints.start_lo is None and hints.start_hi is None:
                total += len(b)
            else:
                end = b.bisect_left((hints.start_hi + 1, "")) if hints.start_hi is not None else len(b)
                total += max(0, end - b.bisect_left((lo, "")))
        return total


class VisibilityIndex:
    """The index of every partition this worker owns (made by ``Engine.__init__``).

    ``rows_of(p)`` is the partition's RocksDB rows (``get(key)``), ``scan(p)`` iterates its
    ``(key, value)`` rows."""

    def __init__(self, rows_of: Callable[[int], Any], scan: Callable[[int], Iterable[tuple[bytes, bytes]]]) -> None:
        self.rows_of = rows_of
        self.scan = scan
        self.parts: dict[int, PartitionIndex] = {}
        #: partition -> workflow ids committed while its scan runs (the scan's copy is older)
        self._building: dict[int, set[str]] = {}
        #: partition -> (its index, the changelog offset the index reflects), after a rebalance
        self._parked: dict[int, tuple[PartitionIndex, int]] = {}
        self.stats = {"builds": 0, "reused": 0, "answers": 0, "rows_read": 0}

    def ready(self, partition: int) -> bool:
        return partition in self.parts and partition not in self._building

    # ------------------------------------------------------------------ upkeep
    def committed(self, partition: int, records: Iterable[Sequence[Any]]) -> None:
        """The engine committed these ``workflows`` row records (topic, key, value, ...)."""
        self._apply(partition, ((rec[1].decode(), rec[2]) for rec in records))

    def forget(self, partition: int, workflow_ids: Iterable[str]) -> None:
        """These workflows' rows left the partition (retired)."""
        self._apply(partition, ((wid, None) for wid in workflow_ids))

    def _apply(self, partition: int, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Rows that changed (a value) or went (None), newer than any copy a running scan has."""
        idx = self.parts.get(partition)
        if idx is None:
            return
        dirty = self._building.get(partition)
        for wid, value in rows:
            if dirty is not None:
                dirty.add(wid)
            if value is None:
                idx.remove(wid)
                continue
            try:
                idx.put(wid, *_facts(value))
            except (ValueError, TypeError, AttributeError):
                log.warning("partition %d: workflows row of %r is not JSON; left out of the index", partition, wid)
                idx.remove(wid)

    def drop(self, partitions: Iterable[int], offsets: Callable[[int], int | None] | None = None) -> None:
        """These partitions stop being processed here. With ``offsets`` (the changelog offset
        of each partition's rows now), a built index is parked (module docs); else forgotten."""
        for p in partitions:
            idx = self.parts.pop(p, None)
            building = self._building.pop(p, None) is not None
            offset = None
            if idx is not None and not building and offsets is not None:
                try:
                    offset = offsets(p)
                except Exception as exc:  # its store is gone: build it again when it comes back
                    log.debug("partition %d: no changelog offset (%s); its index is dropped", p, exc)
            if offset is not None and idx is not None:
                self._parked[p] = (idx, offset)
            else:
                self._parked.pop(p, None)

    def assigned(self, partition: int, offset: int | None) -> bool:
        """``partition`` is processed here again, its rows at changelog ``offset``: True when its
        parked index still holds (nobody wrote a row since), which is then in use; False: build."""
        parked = self._parked.pop(partition, None)
        if parked is None or offset is None or parked[1] != offset:
            return False
        self.parts[partition] = parked[0]
        self.stats["reused"] += 1
        return True

    async def build(self, partition: int) -> None:
        """Scan the partition's rows into a new index (yielding to the loop every 5,000 rows)."""
        idx = PartitionIndex()
        dirty: set[str] = set()
        self.parts[partition] = idx
        self._building[partition] = dirty
        rows = iter(self.scan(partition))
        entries: list[tuple[str, BucketKey, int]] = []
        while chunk := list(itertools.islice(rows, 5000)):
            if self.parts.get(partition) is not idx:
                return  # revoked (or built again) meanwhile
            for key, value in chunk:
                if value is None:
                    continue
                try:
                    status, wf_type, started = _facts(value)
                except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
                    continue
                entries.append((key.decode(), idx.key(status, wf_type), started))
            await asyncio.sleep(0)
        if self.parts.get(partition) is not idx:
            return
        # rows committed meanwhile are in the index already, newer than the scan's copies
        idx.load([e for e in entries if e[0] not in dirty] if dirty else entries)
        self._building.pop(partition, None)
        self.stats["builds"] += 1
        log.debug("partition %d: visibility index built (%d rows)", partition, len(idx))

    # ------------------------------------------------------------------ answers
    def answer(self, partition: int, args: Sequence[Payload]) -> Payload:
        """The answer to a ``__aion.list`` request (``aion.common.visibility``). Raises
        ``ValueError`` for a malformed request, :class:`VisibilityIndexNotReady` while the
        index is being built."""
        try:
            d = json.loads(args[0].data) if args else {}
            req = ListRequest.from_json(d)
            limit = int(d.get("limit", 100))
            after_raw = d.get("after")
            after: Entry | None = (int(after_raw[0]), str(after_raw[1])) if after_raw else None
            counting = bool(d.get("count", False))
            reverse = bool(d.get("reverse", False))
        except (ValueError, TypeError, IndexError, AttributeError, KeyError) as e:
            raise ValueError(f"bad list request: {e}") from None
        limit = min(max(1, limit), MAX_LIMIT)
        if not self.ready(partition):
            raise VisibilityIndexNotReady(f"the visibility index of partition {partition} is being built")
        idx = self.parts[partition]
        self.stats["answers"] += 1
        matches, hints = req.plan()
        if hints.empty:
            return _page([], None, 0 if counting else None)
        if counting and hints.exact:
            return _page([], None, idx.count(hints))
        db = self.rows_of(partition)
        rows: list[bytes] = []
        size = 0
        n = 0
        scanned = 0
        last: Entry | None = None
        for entry in idx.candidates(hints, after, reverse):
            if scanned >= SCAN_BUDGET or (not counting and (len(rows) >= limit or size >= MAX_PAGE_BYTES)):
                self.stats["rows_read"] += scanned
                return _page(rows, last, n if counting else None)
            scanned += 1
            last = entry
            raw = db.get(entry[1].encode())
            if raw is None:
                continue
            if not hints.exact:
                try:
                    if not matches(summary_from_row(json.loads(raw), entry[1])):
                        continue
                except (ValueError, TypeError, AttributeError):
                    continue
            n += 1
            if not counting:
                rows.append(raw)
                size += len(raw)
        self.stats["rows_read"] += scanned
        return _page(rows, None, n if counting else None)


def _page(rows: list[bytes], after: Entry | None, count: int | None) -> Payload:
    body = (b'{"rows":[' + b",".join(rows) + b'],"next":' + json.dumps(list(after) if after else None).encode()
            + b',"count":' + json.dumps(count).encode() + b"}")
    return Payload(JSON, body)
