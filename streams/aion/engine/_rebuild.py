"""Rebuild an engine worker's RocksDB tables from the events topic (``aion rebuild``).

The events topic is the system of record; the engine's tables are caches of it:

- ``history``: the events topic *is* its changelog, so its rows are the topic's records
  (last record per ``{workflow_id, seq}`` key wins, a tombstone deletes);
- ``workflows`` (visibility rows), ``timers`` (armed timers of open runs) and
  ``timer_terminal`` (fired / cancelled timers, closed runs) are functions of each workflow's
  history, derived here with the runtime (``WorkflowExecution.from_history(...,
  run_code=False)``: engine state without workflow code) and written through the engine's own
  storage classes.

The rebuild reads the events topic from its first offset into *fresh* RocksDB folders (opened
with Faust's own RocksDB options, at Faust's own per-partition paths
``<data_dir>/v1/tables/<table>-<partition>.db``), compares digests with the tables it replaces,
records Faust's persisted offsets (so the worker's recovery resumes where the rebuild stopped
instead of re-applying old changelog records over the new state), then swaps the folders in.
The worker must be stopped: the current tables' RocksDB LOCK files are held for the whole
rebuild, so a worker started meanwhile waits instead of mixing old and new state.

Faust's persisted offset of a table partition is the offset of the last changelog record the
local database holds; recovery reads the changelog from the next one.

- history: the events partition's end offset at the start of the rebuild, minus one;
- the derived tables: the end offsets of their own changelog topics, read *before* the events
  topic. Every record already on those changelogs was written after the events it reflects
  were durable, so the rebuilt rows already contain what they say; newer records (from a
  worker that owns the partition meanwhile) are newer changes and recovery applies them on top.
  The changelogs themselves are not rewritten: a stale row on them is harmless (see the
  README's "Kafka-native use").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..codec import Codec
from ..codec import event_reader
from ..model import RUN_CLOSING_EVENTS, Event, TimerCancelled, TimerFired, WorkflowReopened
from ..runtime import WorkflowExecution
from ..runtime import effects as fx
from ._changelog import RebuildError, _consumer, _end_offsets, _topic_partitions, scan_events  # noqa: F401
from ._timers import ident_of
from ..common.settings import Settings
from ..common.topics import TopicNames

__all__ = [
    "RebuildError",
    "DataDirInUseError",
    "RebuildProgress",
    "TableDigest",
    "RebuildReport",
    "rebuild_tables",
    "scan_events",
    "read_histories",
    "DerivedTables",
]

#: Faust's key for a table partition's persisted changelog offset (``faust.stores.rocksdb``).
OFFSET_KEY = b"__faust\0offset__"


class DataDirInUseError(RebuildError):
    """A RocksDB database of the data folder is locked: an engine worker is using it."""


@dataclass
class RebuildProgress:
    """Where a rebuild is: reported to the ``progress`` callback a few times per second."""

    phase: str  # "read" (the events topic) | "derive" (workflows/timers rows) | "done"
    events: int
    total_events: int
    partitions_done: int
    partitions: int
    elapsed_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class TableDigest:
    """SHA-256 over a table's rows (key order, Faust's offset row excluded), old vs rebuilt."""

    table: str
    old: str
    new: str
    old_rows: int
    new_rows: int
    only_old: int = 0
    only_new: int = 0
    different: int = 0

    @property
    def matches(self) -> bool:
        return self.old == self.new


@dataclass
class RebuildReport:
    data_dir: Path
    table_dir: Path
    partitions: list[int]
    events: int
    workflows: int
    timers: int
    read_s: float
    total_s: float
    digests: list[TableDigest] = field(default_factory=list)
    #: Faust persisted offsets written: table -> partition -> offset.
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    swapped: bool = False
    #: Where the replaced tables were moved (None: discarded, or nothing replaced).
    backup_dir: Path | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / self.read_s if self.read_s > 0 else 0.0

    @property
    def matches(self) -> bool:
        return all(d.matches for d in self.digests)


# ---------------------------------------------------------------------------- reading the topic
# (in _changelog.py, shared with the takeover catch-up of _store.py)


def _seq_of(ev: Event) -> int:
    return ev.seq


def _group_by_workflow(codec: Codec, items: Iterable[tuple[bytes, bytes]],
                       decode: Callable[[bytes], Event] | None = None) -> Iterator[tuple[str, list[Event]]]:
    """Consecutive history rows (in key order) grouped per workflow, events sorted by seq.

    All keys of one workflow share a prefix (framing + length-prefixed id) that no other
    workflow's key starts with, so in key order a workflow's rows are contiguous; the
    workflow id is read from the event (decoding the key too would cost a second decode).
    ``decode`` (default ``codec.decode_event``) decodes one value, e.g. the faster
    :func:`aion.codec.event_reader`, which decodes exactly the same."""
    decode = decode or codec.decode_event
    current: str | None = None
    events: list[Event] = []
    for _, value in items:
        ev = decode(value)
        if ev.workflow_id != current:
            if current is not None and events:
                events.sort(key=_seq_of)
                yield current, events
            current, events = ev.workflow_id, []
        events.append(ev)
    if current is not None and events:
        events.sort(key=_seq_of)
        yield current, events


def read_histories(
    settings: Settings,
    *,
    workflow_id: str | None = None,
    codec: Codec | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, list[Event]]]:
    """Every workflow history on the events topic (or only ``workflow_id``'s), by partition.

    A partition's records are folded in memory (last record per key wins, tombstones delete)
    before its histories are yielded, so memory grows with the largest partition."""
    from ..codec import partition_for

    codec = codec or Codec(registry_url=settings.schema_registry_url)
    partitions = None if workflow_id is None else [partition_for(workflow_id, settings.partitions)]
    prefix = None
    if workflow_id is not None:
        from ._store import workflow_key_prefix

        prefix = workflow_key_prefix(codec, workflow_id)
    current: int | None = None
    rows: dict[bytes, bytes] = {}

    def flush() -> Iterator[tuple[str, list[Event]]]:
        items = sorted(rows.items())
        rows.clear()
        for wid, events in _group_by_workflow(codec, items):
            if workflow_id is None or wid == workflow_id:
                yield wid, events

    for p, _, key, value in scan_events(settings, partitions, progress=progress):
        if p != current:
            yield from flush()
            current = p
        if key is None or (prefix is not None and not key.startswith(prefix)):
            continue
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value
    yield from flush()


# ---------------------------------------------------------------------------- derived rows


#: Event bodies that change ``timer_terminal`` rows (a cheap first test per event).
_TERMINAL_BODIES: tuple[type, ...] = (TimerFired, TimerCancelled, WorkflowReopened, *RUN_CLOSING_EVENTS)


class DerivedTables:
    """The derived tables of one partition, written the way the engine writes them.

    Rows go through the engine's own storage classes (``WheelPartition`` for ``timers``,
    ``TerminalStore`` for ``timer_terminal``) so that the rebuilt rows have exactly the layout
    the running engine reads; ``dbs`` maps a table name to a database (rocksdict, raw mode)."""

    def __init__(self, partition: int, dbs: dict[str, Any], now_ms: int) -> None:
        from ._store import visibility_row as _visibility_row
        from ._timers import TerminalStore, WheelPartition, be_ms
        from ._wheel import TimerWheel

        self._visibility_row = _visibility_row
        self.partition = partition
        self.now_ms = now_ms
        self.workflows = dbs["workflows"]
        self.timers = WheelPartition(partition, dbs["timers"]) if "timers" in dbs else None
        if self.timers is not None:
            # Timers due within the engine's in-memory window at the time of the rebuild are
            # "near" rows (no index row), later ones indexed: as if armed now.
            self.timers.loaded_upto = be_ms(now_ms + TimerWheel.WINDOW_MS)
        self.terminal = TerminalStore(dbs["timer_terminal"]) if "timer_terminal" in dbs else None
        self.workflow_rows = 0
        self.timer_rows = 0

    def add(self, workflow_id: str, events: list[Event]) -> None:
        """Derive one workflow's rows from its whole history (events in seq order)."""
        ex = WorkflowExecution.from_history(None, workflow_id, events, run_code=False)
        self.workflows.put(workflow_id.encode(), self._visibility_row(ex))
        self.workflow_rows += 1
        timers = self.timers
        if timers is not None:
            for eff in ex.recovery_effects(self.now_ms):
                if isinstance(eff, fx.ScheduleTimer):
                    out: list[Any] = []
                    timers.arm(eff.fire_at_ms, ident_of(eff.workflow_id, eff.run_id, eff.timer_id), out)
                    self.timer_rows += 1
            timers.live.clear()
            timers.heap.clear()
        terminal = self.terminal
        if terminal is not None:
            # What the wheel's on_recorded keeps, event by event.
            sink: list[Any] = []
            for ev in events:
                b = ev.body
                if isinstance(b, _TERMINAL_BODIES):
                    if isinstance(b, TimerFired):
                        terminal.mark(ident_of(workflow_id, ev.run_id, b.timer_id), terminal.FIRED, sink)
                    elif isinstance(b, TimerCancelled):
                        terminal.mark(ident_of(workflow_id, ev.run_id, b.timer_id), terminal.CANCELLED, sink)
                    elif isinstance(b, RUN_CLOSING_EVENTS):
                        terminal.close_run(workflow_id, ev.run_id, sink)
                    elif isinstance(b, WorkflowReopened):
                        terminal.reopen_run(workflow_id, ev.run_id, sink)


def _derive_partition(partition: int, codec: Codec, decode: Callable[[bytes], Event], history_db: Any,
                      dbs: dict[str, Any], now_ms: int) -> tuple[int, int]:
    """Derive one partition's rows from its rebuilt ``history`` database into ``dbs``;
    returns (workflow rows, timer rows)."""
    out = DerivedTables(partition, dbs, now_ms)
    add = out.add
    for wid, evs in _group_by_workflow(codec, _rows(history_db), decode):
        add(wid, evs)
    return out.workflow_rows, out.timer_rows


# ---------------------------------------------------------------------------- parallel derive

#: Below this many events the derive stays in the calling process: starting worker processes
#: (a Python interpreter importing the engine, ~1 s of CPU each) costs more than it saves.
PARALLEL_MIN_EVENTS = 200_000


@dataclass
class _DeriveJob:
    """One partition's derive, for a worker process (paths and options, no open handles)."""

    partition: int
    paths: dict[str, str]  # table -> RocksDB folder (history and the derived tables)
    options: dict[str, Any]  # table -> Faust's RocksDBOptions (picklable: plain attributes)
    now_ms: int


def _worker_main() -> None:
    """A derive worker process: the registry URL, then jobs, arrive pickled on stdin; a
    ``("ready", None)`` and then one ``("ok", (workflow rows, timer rows))`` or
    ``("error", text)`` per job go back on stdout. Ends when stdin closes."""
    import pickle
    import traceback

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the result stream
    from . import _store, _wheel  # noqa: F401 - imported now, while the parent still reads the topic

    codec = Codec(registry_url=pickle.load(inp))
    decode = event_reader(codec)
    pickle.dump(("ready", None), out)
    out.flush()
    while True:
        try:
            job: _DeriveJob = pickle.load(inp)
        except EOFError:
            return
        try:
            dbs = {t: _open_fresh(job.options[t], Path(path)) for t, path in job.paths.items()}
            try:
                derived = {t: db for t, db in dbs.items() if t != "history"}
                result: tuple[str, Any] = ("ok", _derive_partition(
                    job.partition, codec, decode, dbs["history"], derived, job.now_ms))
            finally:
                for db in dbs.values():
                    db.close()
        except Exception as exc:  # reported to the parent, which raises it as a RebuildError
            result = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        pickle.dump(result, out)
        out.flush()


class _DerivePool:
    """Worker processes deriving partitions in parallel (each partition has its own databases,
    so they need no coordination).

    Plain ``python -c`` children fed over pipes rather than ``multiprocessing``: its ``spawn``
    re-imports the caller's main script in every child (a script without a ``__main__`` guard
    would run again), and ``fork`` is unsafe with RocksDB's and librdkafka's threads."""

    def __init__(self, processes: int, registry_url: str | None) -> None:
        import pickle
        import subprocess

        import aion

        env = dict(os.environ)
        root = str(Path(aion.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        code = "from aion.engine._rebuild import _worker_main; _worker_main()"
        self.procs: list[Any] = []
        try:
            for _ in range(processes):
                proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
                self.procs.append(proc)
                pickle.dump(registry_url, proc.stdin)
                proc.stdin.flush()
        except BaseException:
            self.stop()
            raise

    def run(self, jobs: list[_DeriveJob]) -> Iterator[tuple[int, int]]:
        """(workflow rows, timer rows) per job, as the workers finish them."""
        import pickle
        import selectors

        todo = list(reversed(jobs))
        doing: dict[int, _DeriveJob | None] = {}
        sel = selectors.DefaultSelector()
        for i, proc in enumerate(self.procs):
            sel.register(proc.stdout, selectors.EVENT_READ, i)
            doing[i] = None
        try:
            while doing:
                for key, _ in sel.select():
                    i = key.data
                    proc, job = self.procs[i], doing[i]
                    try:
                        kind, value = pickle.load(proc.stdout)
                    except EOFError:
                        what = f"deriving partition {job.partition}" if job is not None else "starting"
                        raise RebuildError(
                            f"a derive worker process (pid {proc.pid}) exited ({proc.wait()}) while {what}; "
                            "its error is above. Run again, or with processes=1 to derive in one "
                            "process") from None
                    if kind == "error":
                        raise RebuildError(f"deriving the tables of partition "
                                           f"{job.partition if job else '?'} failed: {value}")
                    if kind == "ok":
                        yield value
                    if todo:
                        doing[i] = todo.pop()
                        pickle.dump(doing[i], proc.stdin)
                        proc.stdin.flush()
                    else:
                        del doing[i]
                        sel.unregister(proc.stdout)
        finally:
            sel.close()

    def close(self) -> None:
        """Let the workers end (stdin closed) and wait for them."""
        for proc in self.procs:
            proc.stdin.close()
        for proc in self.procs:
            proc.wait()
            proc.stdout.close()
        self.procs = []

    def stop(self) -> None:
        """End the workers at once (a failed or interrupted rebuild): they may be writing into
        the folders about to be removed."""
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except Exception:  # pragma: no cover - a broken pipe
                    pass
        self.procs = []


def _derive_pool(settings: Settings, events: int, partitions: int, processes: int | None) -> _DerivePool | None:
    """Worker processes for the derive, or None to derive in this process. The children
    rebuild their codec from the settings; with an in-memory ``mock://`` schema registry
    (tests) they could not read the schema ids, so they are not used then."""
    if processes is None:
        if events < PARALLEL_MIN_EVENTS:
            return None
        processes = os.cpu_count() or 1
    processes = min(processes, partitions)
    registry = settings.schema_registry_url
    if processes <= 1 or (registry is not None and registry.startswith("mock://")):
        return None
    return _DerivePool(processes, registry)


# ---------------------------------------------------------------------------- digests


def _rows(db: Any, skip: tuple[bytes, ...] = (OFFSET_KEY,)) -> Iterator[tuple[bytes, bytes]]:
    it = db.iter()
    it.seek_to_first()
    while it.valid():
        k = it.key()
        if k not in skip:
            yield k, it.value()
        it.next()


def _state_rows(db: Any) -> Iterator[tuple[bytes, bytes]]:
    """Rows that are state, not bookkeeping: without Faust's offset and the timer wheel's scan
    position (``META_LOW``: how far a worker's scan got, not which timers are armed)."""
    from ._timers import META_LOW

    return _rows(db, (OFFSET_KEY, META_LOW))


def _digest(table: str, old: list[Any], new: list[Any]) -> TableDigest:
    """Digest of the rows of ``old`` and ``new`` databases (one per partition, same order)."""
    h_old, h_new = hashlib.sha256(), hashlib.sha256()
    d = TableDigest(table, "", "", 0, 0)
    for odb, ndb in zip(old, new):
        o_it = _state_rows(odb) if odb is not None else iter(())
        n_it = _state_rows(ndb)
        o = next(o_it, None)
        n = next(n_it, None)
        while o is not None or n is not None:
            if n is None or (o is not None and o[0] < n[0]):
                assert o is not None
                _feed(h_old, o)
                d.old_rows += 1
                d.only_old += 1
                o = next(o_it, None)
            elif o is None or n[0] < o[0]:
                _feed(h_new, n)
                d.new_rows += 1
                d.only_new += 1
                n = next(n_it, None)
            else:
                _feed(h_old, o)
                _feed(h_new, n)
                d.old_rows += 1
                d.new_rows += 1
                if o[1] != n[1]:
                    d.different += 1
                o, n = next(o_it, None), next(n_it, None)
    d.old, d.new = h_old.hexdigest(), h_new.hexdigest()
    return d


def _feed(h: Any, row: tuple[bytes, bytes]) -> None:
    k, v = row
    h.update(b"".join((len(k).to_bytes(4, "big"), k, len(v).to_bytes(4, "big"), v)))


# ---------------------------------------------------------------------------- the rebuild


#: The tables this module rebuilds (``progress`` is not derived from the events: left as is).
REBUILT = ("history", "workflows", "timers", "timer_terminal")


def _tables(tables: Any) -> dict[str, Any]:
    """The engine app's Faust tables this module rebuilds, by name (``_app.EngineTables``)."""
    return {name: t for name, t in tables.by_name().items() if name in REBUILT}


def _open_fresh(options: Any, path: Path) -> Any:
    """Open a database of the rebuild's work folder (Faust's options), writing without the
    write-ahead log: the folder is thrown away if the rebuild fails, and closing a database
    flushes its memtables to disk before the folders are swapped in."""
    from rocksdict import WriteOptions

    db = options.open(path)
    wo = WriteOptions()
    wo.disable_wal = True
    db.set_write_options(wo)
    return db


def _open_old(table: Any, path: Path, data_dir: Path) -> Any:
    try:
        return table.data.rocksdb_options.open(path)
    except Exception as exc:
        if "lock" in str(exc).lower():
            raise DataDirInUseError(
                f"{path} is locked by another process: an engine worker (`aion worker`) is using the data "
                f"folder {data_dir}. Stop that worker first; `aion rebuild` replaces its tables and must not "
                "run beside it.") from exc
        raise RebuildError(f"cannot open {path}: {exc}") from exc


def rebuild_tables(
    settings: Settings,
    *,
    partitions: Iterable[int] | None = None,
    progress: Callable[[RebuildProgress], None] | None = None,
    swap: bool = True,
    keep_backup: bool = True,
    now_ms: int | None = None,
    processes: int | None = None,
) -> RebuildReport:
    """Rebuild the engine tables of the worker whose data folder is ``settings.data_dir``.

    ``partitions``: the partitions to rebuild (default: every partition of the events topic).
    ``swap=False`` builds and compares only (the fresh folders are removed afterwards).
    ``keep_backup``: move the replaced tables to ``<tabledir>/../replaced-<time>/`` (else delete).
    ``processes``: worker processes deriving partitions in parallel (1: in this process; default:
    one per CPU, up to the partition count, once the topic holds at least
    ``PARALLEL_MIN_EVENTS`` events).
    Raises :class:`DataDirInUseError` when a worker holds the data folder.
    """
    started = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    from ._app import build_app

    app, app_tables = build_app(settings)  # never started: table names, paths, changelogs
    codec = Codec(registry_url=settings.schema_registry_url)
    names = TopicNames(settings.topic_prefix)
    tables = _tables(app_tables)
    derived = [t for t in tables if t != "history"]
    table_dir = Path(app.conf.tabledir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work_dir = table_dir.parent / f"rebuild-{stamp}-{uuid.uuid4().hex[:6]}"

    # 0. Refuse at once (before asking the broker anything) when a worker holds the folder.
    for t in tables.values():
        for path in sorted(table_dir.glob(f"{t.name}-*.db")):
            _open_old(t, path, Path(settings.data_dir)).close()

    # 1. Where things are: partitions, end offsets (changelogs before the events topic).
    probe = _consumer(settings, "rebuild")
    try:
        n = _topic_partitions(probe, names.events)
        if n is None:
            raise RebuildError(f"topic {names.events!r} does not exist on {settings.bootstrap_servers}: nothing "
                               f"to rebuild from (check --prefix/AION_TOPIC_PREFIX)")
        if n != settings.partitions:
            raise RebuildError(f"{names.events!r} has {n} partitions but this process is configured for "
                               f"{settings.partitions}: set AION_PARTITIONS={n} (or --partitions {n})")
        wanted = sorted(set(range(n) if partitions is None else partitions))
        bad = [p for p in wanted if not 0 <= p < n]
        if bad:
            raise RebuildError(f"partition(s) {bad} do not exist: {names.events!r} has {n} partitions")
        changelog_ends: dict[str, dict[int, int]] = {}
        for table in derived:
            topic = tables[table].changelog_topic.get_topic_name()
            if _topic_partitions(probe, topic) is not None:
                changelog_ends[table] = {p: hi for p, (_, hi) in _end_offsets(probe, topic, wanted).items()}
            else:
                changelog_ends[table] = {}
        ends = _end_offsets(probe, names.events, wanted)
    finally:
        probe.close()
    total = sum(hi - lo for lo, hi in ends.values())

    # 2. Hold the current tables (their LOCK files) for the whole rebuild.
    old: dict[tuple[str, int], Any] = {}
    new: dict[tuple[str, int], Any] = {}
    pool: _DerivePool | None = None
    read_started = time.monotonic()
    read_s = 0.0

    def report(phase: str, events: int, done: int) -> None:
        if progress is not None:
            elapsed = time.monotonic() - read_started if phase == "read" else read_s
            progress(RebuildProgress(phase, events, total, done, len(wanted), elapsed))

    try:
        for table, t in tables.items():
            for p in wanted:
                path = t.data.partition_path(p)
                if path.exists():
                    old[(table, p)] = _open_old(t, path, Path(settings.data_dir))
        work_dir.mkdir(parents=True)
        for table, t in tables.items():
            for p in wanted:
                new[(table, p)] = _open_fresh(t.data.rocksdb_options, work_dir / f"{table}-{p}.db")

        # Worker processes for the derive (step 4) start now: their imports overlap the read.
        pool = _derive_pool(settings, total, len(wanted), processes)

        # 3. history: the events topic, record by record.
        from rocksdict import WriteBatch

        last = {"t": 0.0}

        def on_progress(records: int, done: int) -> None:
            t = time.monotonic()
            if t - last["t"] >= 0.2 or done == len(wanted):
                last["t"] = t
                report("read", records, done)

        batches: dict[int, Any] = {}
        pending_rows = 0
        events = 0

        def flush_batches() -> None:
            for p, wb in batches.items():
                new[("history", p)].write(wb)
            batches.clear()

        read_started = time.monotonic()
        for p, _, key, value in scan_events(settings, wanted, progress=on_progress, ends=ends):
            events += 1
            if key is None:
                continue
            wb = batches.get(p)
            if wb is None:
                wb = batches[p] = WriteBatch(raw_mode=True)
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
            pending_rows += 1
            if pending_rows >= 20_000:
                flush_batches()
                pending_rows = 0
        flush_batches()
        read_s = time.monotonic() - read_started

        # 4. The derived tables, per workflow from its history; Faust's persisted offsets.
        workflows = timers = 0
        offsets: dict[str, dict[int, int]] = {t: {} for t in tables}
        if pool is not None:
            # The children open the partitions' databases themselves: close them here first.
            for key in list(new):
                new.pop(key).close()
            jobs = [_DeriveJob(p, {t: str(work_dir / f"{t}-{p}.db") for t in tables},
                               {t: tables[t].data.rocksdb_options for t in tables}, now_ms) for p in wanted]
            for wf_rows, timer_rows in pool.run(jobs):
                workflows += wf_rows
                timers += timer_rows
            pool.close()
            pool = None
            for table, t in tables.items():
                for p in wanted:
                    new[(table, p)] = _open_fresh(t.data.rocksdb_options, work_dir / f"{table}-{p}.db")
        else:
            decode = event_reader(codec)
            for p in wanted:
                wf_rows, timer_rows = _derive_partition(
                    p, codec, decode, new[("history", p)], {t: new[(t, p)] for t in derived}, now_ms)
                workflows += wf_rows
                timers += timer_rows
        for p in wanted:
            if ends[p][1] > 0:
                offsets["history"][p] = ends[p][1] - 1
            for table in derived:
                hi = changelog_ends[table].get(p, 0)
                if hi > 0:
                    offsets[table][p] = hi - 1
            for table in tables:
                if p in offsets[table]:
                    new[(table, p)].put(OFFSET_KEY, str(offsets[table][p]).encode())
        report("derive", events, len(wanted))

        # 5. Digests: old vs rebuilt.
        digests = [
            _digest(table, [old.get((table, p)) for p in wanted], [new[(table, p)] for p in wanted])
            for table in tables
        ]
        result = RebuildReport(
            data_dir=Path(settings.data_dir), table_dir=table_dir, partitions=wanted, events=events,
            workflows=workflows, timers=timers, read_s=read_s, total_s=0.0, digests=digests, offsets=offsets)
    except BaseException:
        if pool is not None:
            pool.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    finally:
        for db in (*old.values(), *new.values()):
            try:
                db.close()
            except Exception:  # pragma: no cover - closing twice / already failed
                pass
    if not swap:
        shutil.rmtree(work_dir, ignore_errors=True)
        result.total_s = time.monotonic() - started
        report("done", events, len(wanted))
        return result

    # 6. Swap: the replaced tables go to a backup folder (or away), the fresh ones in.
    backup = table_dir.parent / f"replaced-{stamp}"
    table_dir.mkdir(parents=True, exist_ok=True)
    if old:
        backup.mkdir(parents=True, exist_ok=True)
    for table, t in tables.items():
        for p in wanted:
            target = t.data.partition_path(p)
            if (table, p) in old and target.exists():
                target.rename(backup / target.name)
            (work_dir / f"{table}-{p}.db").rename(target)
    shutil.rmtree(work_dir, ignore_errors=True)
    if old and not keep_backup:
        shutil.rmtree(backup, ignore_errors=True)
    result.backup_dir = backup if old and keep_backup else None
    result.swapped = True
    result.total_s = time.monotonic() - started
    report("done", events, len(wanted))
    return result
