"""The timer wheel's in-memory side: per-partition heaps of armed timers.

Durability lives in the ``timers`` table (one row per armed timer, keyed by due time so a
scan reads them in firing order); this module only keeps what the owning worker has armed
in memory so that a tick costs O(due timers), and drops a partition's timers on revocation.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass

_SEP = b"\x00"


@dataclass(frozen=True, slots=True)
class TimerRow:
    partition: int
    fire_at_ms: int
    workflow_id: str
    run_id: str
    timer_id: str

    @property
    def key(self) -> bytes:
        return timer_key(self.fire_at_ms, self.workflow_id, self.run_id, self.timer_id)

    @property
    def ident(self) -> tuple[str, str, str]:
        return (self.workflow_id, self.run_id, self.timer_id)


def timer_key(fire_at_ms: int, workflow_id: str, run_id: str, timer_id: str) -> bytes:
    """Row key ordered by due time: 8-byte big-endian ms, then the timer's identity."""
    return b"".join(
        (struct.pack(">q", fire_at_ms), workflow_id.encode(), _SEP, run_id.encode(), _SEP, timer_id.encode())
    )


def parse_timer_key(partition: int, key: bytes) -> TimerRow:
    (fire_at,) = struct.unpack(">q", key[:8])
    wf, run, tid = key[8:].split(_SEP, 2)
    return TimerRow(partition, fire_at, wf.decode(), run.decode(), tid.decode())


class TimerHeaps:
    """Armed timers per partition; cancelled entries are skipped lazily when popped."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, bytes]]] = {}
        self._rows: dict[bytes, TimerRow] = {}
        self._by_ident: dict[tuple[str, str, str], bytes] = {}

    def arm(self, row: TimerRow) -> None:
        old = self._by_ident.get(row.ident)
        if old is not None and old != row.key:
            self._rows.pop(old, None)
        key = row.key
        self._rows[key] = row
        self._by_ident[row.ident] = key
        heapq.heappush(self._heaps.setdefault(row.partition, []), (row.fire_at_ms, key))

    def disarm(self, workflow_id: str, run_id: str, timer_id: str) -> TimerRow | None:
        key = self._by_ident.pop((workflow_id, run_id, timer_id), None)
        if key is None:
            return None
        return self._rows.pop(key, None)

    def forget(self, row: TimerRow) -> None:
        """Drop a row that has fired (its durable row is deleted by the caller)."""
        self._rows.pop(row.key, None)
        if self._by_ident.get(row.ident) == row.key:
            del self._by_ident[row.ident]

    def pop_due(self, now_ms: int, limit: int) -> list[TimerRow]:
        due: list[TimerRow] = []
        for heap in self._heaps.values():
            while heap and heap[0][0] <= now_ms and len(due) < limit:
                _, key = heapq.heappop(heap)
                row = self._rows.get(key)
                if row is not None:
                    due.append(row)
        return due

    def next_due_ms(self) -> int | None:
        best: int | None = None
        for heap in self._heaps.values():
            while heap and heap[0][1] not in self._rows:
                heapq.heappop(heap)
            if heap and (best is None or heap[0][0] < best):
                best = heap[0][0]
        return best

    def drop_partition(self, partition: int) -> None:
        heap = self._heaps.pop(partition, [])
        for _, key in heap:
            row = self._rows.pop(key, None)
            if row is not None and self._by_ident.get(row.ident) == key:
                del self._by_ident[row.ident]

    def pending(self, partition: int | None = None) -> int:
        if partition is None:
            return len(self._rows)
        return sum(1 for r in self._rows.values() if r.partition == partition)

    def partitions(self) -> set[int]:
        return set(self._heaps)
