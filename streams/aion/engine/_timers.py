"""The timer wheel's storage and in-memory window, one partition at a time (no Kafka here).

Rows of the ``timers`` table (RocksDB, raw bytes, one database per partition)
------------------------------------------------------------------------------
- **time rows** ``be64(fire_at_ms) + ident`` -> ``b"1"`` | ``b"I"``, where ``ident`` is
  ``workflow_id \\0 run_id \\0 timer_id``. A scan reads them in firing order. The value says
  whether the timer also has an index row (``I``).
- **index rows** ``\\xff\\xffI + ident`` -> ``be64(fire_at_ms)``: only for timers armed beyond the
  in-memory window, so that a ``DropTimer`` (which names the timer, not its due time) finds
  a row that is not in memory without a scan. Timers armed inside the window are found in
  memory and need none (most activity timeouts: armed and dropped within seconds).
- **the scan position** ``\\xff\\xffM`` -> a time-row key: every time row below it has been
  fired or dropped. A worker taking the partition over starts its scan there instead of at
  the first key, so it never walks the run of deleted rows (tombstones) that firing leaves
  behind. It is raised at most once a second as timers fire, and lowered in the same batch
  as a row armed below it (a timer armed already overdue).

Time keys start with ``0x00`` (``fire_at_ms < 2**56``); index/meta rows and Faust's own
offset key (``__faust...``) sort after all of them, so a time scan stops at ``0x01``.

In memory (:class:`WheelPartition`), per owned partition: a heap of the time keys below
``loaded_upto`` (the near-due window, loaded from the table in bounded slices as time
advances) and ``live: ident -> time key``. Entries of dropped or re-armed timers stay in the
heap and are skipped when they come up (lazy deletion).

Rows of the ``timer_terminal`` table (:class:`TerminalStore`)
-------------------------------------------------------------
``ident`` -> ``b"F"`` (fired) | ``b"C"`` (cancelled), written when ``TimerFired`` /
``TimerCancelled`` is durable, and ``workflow_id \\0 run_id \\0`` -> ``b"X"`` when the run closes
(completed, failed, continued as new, ...); the run's per-timer rows are then deleted, the
one marker stands for all of them; a reopen (``WorkflowReopened``) deletes the marker again. A
due timer that is terminal is dropped before its fire is sent. Keys carry the run id, so a late
fire of an old run is judged against that run only and never touches the new run's timer of the
same id.
"""

from __future__ import annotations

import heapq
import struct
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from ..model import RUN_CLOSING_EVENTS, TimerCancelled, TimerFired, WorkflowReopened

__all__ = [
    "INDEX_PREFIX",
    "META_LOW",
    "TIME_END",
    "LagHistogram",
    "TerminalStore",
    "TimerRow",
    "WheelPartition",
    "be_ms",
    "ident_of",
    "parse_ident",
    "parse_timer_key",
    "run_prefix",
    "timer_key",
    "timer_rows",
    "terminal_rows",
]

_SEP = b"\x00"
TIME_END = b"\x01"
INDEX_PREFIX = b"\xff\xffI"
META_LOW = b"\xff\xffM"
_NEAR = b"1"
_INDEXED = b"I"

#: A row write to perform locally and on the table's changelog: ``(key, value or None)``.
Write = tuple[bytes, "bytes | None"]


class DB(Protocol):  # the subset of rocksdict.Rdict used here
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def iter(self) -> Any: ...


def be_ms(ms: int) -> bytes:
    """8-byte big-endian due time (clamped at 0 so that bytes order is time order)."""
    return struct.pack(">q", max(0, ms))


def ident_of(workflow_id: str, run_id: str, timer_id: str) -> bytes:
    return b"".join((workflow_id.encode(), _SEP, run_id.encode(), _SEP, timer_id.encode()))


def parse_ident(ident: bytes) -> tuple[str, str, str]:
    wf, run, tid = ident.split(_SEP, 2)
    return wf.decode(), run.decode(), tid.decode()


def run_prefix(ident: bytes) -> bytes:
    """``workflow_id \\0 run_id \\0``: the key of the run's closed marker, prefix of its timers."""
    first = ident.index(_SEP)
    return ident[: ident.index(_SEP, first + 1) + 1]


def timer_key(fire_at_ms: int, workflow_id: str, run_id: str, timer_id: str) -> bytes:
    """Time-row key: due time first, so a scan reads rows in firing order."""
    return be_ms(fire_at_ms) + ident_of(workflow_id, run_id, timer_id)


def timer_rows(fire_at_ms: int, workflow_id: str, run_id: str, timer_id: str) -> list[tuple[bytes, bytes]]:
    """The ``timers`` rows of one armed timer as a rebuild should write them: the time row and
    its index row (so a ``DropTimer`` finds it whether or not it is in memory)."""
    ident = ident_of(workflow_id, run_id, timer_id)
    at = be_ms(fire_at_ms)
    return [(at + ident, _INDEXED), (INDEX_PREFIX + ident, at)]


def terminal_rows(events: Iterable[Any]) -> dict[bytes, bytes]:
    """The ``timer_terminal`` rows one workflow's history implies (for a rebuild from the
    events topic): fired / cancelled timers of open runs, one marker per closed run."""
    rows: dict[bytes, bytes] = {}
    closed: set[bytes] = set()
    for ev in events:
        b = ev.body
        prefix = ev.workflow_id.encode() + _SEP + ev.run_id.encode() + _SEP
        if isinstance(b, WorkflowReopened):
            rows.pop(prefix, None)
            closed.discard(prefix)
            continue
        if prefix in closed:
            continue
        if isinstance(b, (TimerFired, TimerCancelled)):
            rows[prefix + b.timer_id.encode()] = TerminalStore.FIRED if isinstance(b, TimerFired) else TerminalStore.CANCELLED
        elif isinstance(b, RUN_CLOSING_EVENTS):
            for k in [k for k in rows if k.startswith(prefix)]:
                del rows[k]
            rows[prefix] = TerminalStore.RUN_CLOSED
            closed.add(prefix)
    return rows


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


def parse_timer_key(partition: int, key: bytes) -> TimerRow:
    (fire_at,) = struct.unpack(">q", key[:8])
    wf, run, tid = parse_ident(key[8:])
    return TimerRow(partition, fire_at, wf, run, tid)


# ============================================================================ one partition


class WheelPartition:
    """One owned partition: its ``timers`` rows and the near-due window in memory.

    Every method that changes rows writes them to ``db`` at once and appends them to the
    ``out`` list it is given, for the caller to send to the table's changelog.
    """

    __slots__ = ("partition", "db", "heap", "live", "indexed", "loaded_upto", "low_persisted",
                 "low_written_at")

    def __init__(self, partition: int, db: DB) -> None:
        self.partition = partition
        self.db = db
        self.heap: list[bytes] = []
        self.live: dict[bytes, bytes] = {}
        self.indexed: set[bytes] = set()
        #: Every live time row below this key is in memory; None until the first load slice.
        self.loaded_upto: bytes | None = None
        self.low_persisted: bytes | None = None
        self.low_written_at = 0.0

    # ------------------------------------------------------------------ rows
    def _put(self, key: bytes, value: bytes | None, out: list[Write]) -> None:
        if value is None:
            self.db.delete(key)
        else:
            self.db.put(key, value)
        out.append((key, value))

    def low(self) -> bytes:
        """The persisted scan position (b"" when none was written yet)."""
        if self.low_persisted is None:
            self.low_persisted = self.db.get(META_LOW) or b""
        return self.low_persisted

    def find(self, ident: bytes) -> tuple[bytes | None, bool]:
        """The time key of the armed timer ``ident`` (memory, else its index row) and
        whether it has an index row."""
        key = self.live.get(ident)
        if key is not None:
            return key, key in self.indexed
        at = self.db.get(INDEX_PREFIX + ident)
        if at is None:
            return None, False
        return at + ident, True

    def arm(self, fire_at_ms: int, ident: bytes, out: list[Write]) -> bytes | None:
        """Arm (or re-arm) a timer. Returns its key when it went into memory, else None."""
        key = be_ms(fire_at_ms) + ident
        old, old_indexed = self.find(ident)
        if old == key:
            return None  # already armed (a repeated ScheduleTimer)
        if old is not None:
            self._delete(old, ident, old_indexed, out)
        near = self.loaded_upto is not None and key < self.loaded_upto
        if near:
            self._put(key, _NEAR, out)
            self.live[ident] = key
            heapq.heappush(self.heap, key)
        else:
            self._put(key, _INDEXED, out)
            self._put(INDEX_PREFIX + ident, key[:8], out)
        if key < self.low():
            # Armed below the scan position (already overdue): lower it with the row, or a
            # worker taking over would start scanning above this row and never fire it.
            self._put(META_LOW, key, out)
            self.low_persisted = key
        return key if near else None

    def drop(self, ident: bytes, out: list[Write]) -> bool:
        old, indexed = self.find(ident)
        if old is None:
            return False
        self._delete(old, ident, indexed, out)
        return True

    def _delete(self, key: bytes, ident: bytes, indexed: bool, out: list[Write]) -> None:
        self._put(key, None, out)
        if indexed:
            self._put(INDEX_PREFIX + ident, None, out)
            self.indexed.discard(key)
        if self.live.get(ident) == key:
            del self.live[ident]

    # ------------------------------------------------------------------ the window
    def load_slice(self, target_ms: int, max_rows: int) -> bool:
        """Load time rows below ``target_ms`` into memory, at most ``max_rows`` of them;
        True when the window is loaded up to the target."""
        if self.loaded_upto is None:
            self.loaded_upto = self.low()
        target = be_ms(target_ms)
        if self.loaded_upto >= target:
            return True
        it = self.db.iter()
        it.seek(self.loaded_upto)
        n = 0
        live, heap, indexed = self.live, self.heap, self.indexed
        while it.valid():
            key = it.key()
            if key >= target or key >= TIME_END:
                break
            if n >= max_rows:
                self.loaded_upto = key
                return False
            ident = key[8:]
            if live.get(ident) != key:
                live[ident] = key
                heapq.heappush(heap, key)
                if it.value() == _INDEXED:
                    indexed.add(key)
            n += 1
            it.next()
        self.loaded_upto = target
        return True

    def next_due(self) -> bytes | None:
        heap, live = self.heap, self.live
        while heap and live.get(heap[0][8:]) != heap[0]:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def take_due(self, now_ms: int, limit: int) -> list[bytes]:
        """Pop up to ``limit`` live keys due at ``now_ms``. They stay live (and their rows
        stay) until :meth:`fired` or :meth:`put_back`."""
        bound = be_ms(now_ms + 1)
        heap, live = self.heap, self.live
        due: list[bytes] = []
        while heap and len(due) < limit and heap[0] < bound:
            key = heapq.heappop(heap)
            if live.get(key[8:]) == key:
                due.append(key)
        return due

    def put_back(self, keys: Iterable[bytes]) -> None:
        """Keys taken but not fired (the send failed): due again at the next tick."""
        for key in keys:
            if self.live.get(key[8:]) == key:
                heapq.heappush(self.heap, key)

    def fired(self, keys: Iterable[bytes], out: list[Write]) -> None:
        """The fires of ``keys`` are on the log (or were dropped as terminal): delete the rows."""
        live = self.live
        for key in keys:
            ident = key[8:]
            if live.get(ident) == key:  # else dropped or re-armed meanwhile (rows handled then)
                self._delete(key, ident, key in self.indexed, out)

    def advance_low(self, now_s: float, out: list[Write], min_interval_s: float = 1.0) -> None:
        """Raise the persisted scan position to the smallest key still pending (rate-limited).
        Call only when no taken key is in flight."""
        if self.loaded_upto is None or now_s - self.low_written_at < min_interval_s:
            return
        nxt = self.next_due()
        low = nxt if nxt is not None else self.loaded_upto
        if low > self.low():
            self._put(META_LOW, low, out)
            self.low_persisted = low
            self.low_written_at = now_s

    def pending(self) -> int:
        """Armed timers in memory (the near-due window)."""
        return len(self.live)


# ============================================================================ terminal states


class TerminalStore:
    """The ``timer_terminal`` rows of one partition."""

    __slots__ = ("db",)

    FIRED = b"F"
    CANCELLED = b"C"
    RUN_CLOSED = b"X"

    def __init__(self, db: DB) -> None:
        self.db = db

    def state(self, ident: bytes) -> bytes | None:
        """``F``/``C`` for a fired/cancelled timer, ``X`` when its run has closed, else None."""
        v = self.db.get(ident)
        if v is not None:
            return v
        return self.db.get(run_prefix(ident))

    def mark(self, ident: bytes, state: bytes, out: list[Write]) -> None:
        if self.db.get(run_prefix(ident)) is not None:
            return  # the run is closed: its marker covers this timer
        self.db.put(ident, state)
        out.append((ident, state))

    def close_run(self, workflow_id: str, run_id: str, out: list[Write]) -> None:
        prefix = workflow_id.encode() + _SEP + run_id.encode() + _SEP
        if self.db.get(prefix) is not None:
            return
        it = self.db.iter()
        it.seek(prefix + b"\x00")
        stale = []
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            stale.append(key)
            it.next()
        for key in stale:
            self.db.delete(key)
            out.append((key, None))
        self.db.put(prefix, self.RUN_CLOSED)
        out.append((prefix, self.RUN_CLOSED))

    def reopen_run(self, workflow_id: str, run_id: str, out: list[Write]) -> None:
        """The run was reopened (``WorkflowReopened``): its closed marker goes, so that the
        timers the reopen arms again fire."""
        prefix = workflow_id.encode() + _SEP + run_id.encode() + _SEP
        if self.db.get(prefix) is not None:
            self.db.delete(prefix)
            out.append((prefix, None))


# ============================================================================ metrics


class LagHistogram:
    """Fire lag in milliseconds: fixed buckets (cumulative counts) plus the recent samples
    for exact percentiles."""

    BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 60_000)

    def __init__(self, recent: int = 10_000) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.count = 0
        self.total = 0
        self.max = 0
        self.recent: deque[int] = deque(maxlen=recent)

    def observe(self, ms: int) -> None:
        ms = max(0, int(ms))
        self.counts[bisect_right(self.BOUNDS, ms - 1) if ms > 0 else 0] += 1
        self.count += 1
        self.total += ms
        if ms > self.max:
            self.max = ms
        self.recent.append(ms)

    def percentile(self, q: float) -> int | None:
        if not self.recent:
            return None
        values = sorted(self.recent)
        return values[min(len(values) - 1, int(q / 100 * len(values)))]

    def snapshot(self) -> dict[str, Any]:
        buckets = {f"le_{b}": c for b, c in zip(self.BOUNDS, self.counts)}
        buckets["le_inf"] = self.counts[-1]
        return {
            "count": self.count,
            "mean_ms": round(self.total / self.count, 2) if self.count else None,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": self.max if self.count else None,
            "buckets": buckets,
        }
