"""Every use of Faust internals, in one place (faust-streaming is pinned to the version these
were read from; ``tests/unit/engine/test_faust_hooks.py`` fails when a release changes them).

- :func:`patch_worker_consumer`: Faust's worker consumer (aiokafka) reads with
  ``isolation_level=read_committed`` (Faust sets it only in its own exactly-once mode; the
  engine's changelogs are written in Kafka transactions, and a table restored from aborted
  records would hold what the log does not) and parks an empty fetch at most 100 ms (Faust
  hard-codes 1.5 s, and a rebalance's offset look-ups waited behind it: ~2.8 s of every quiet
  takeover).
- :func:`keep_paused`: Faust's consumer never fetches the commands topic (the engine reads it
  with librdkafka, ``_feed.py``), though the engine's agent subscribes to it for the assignment.
- :func:`request_rejoin`: a partition whose producer failed fatally (fenced, or a broker
  restart that lost the producer's epoch) is taken back only through a rebalance, which fences
  it in again and restores it before it is read.
- :func:`leave_group`: a worker told to stop (SIGTERM) leaves its group at once (aiokafka's
  LeaveGroup), before Faust's own shutdown (which leaves only once its services stopped).
- :func:`keep_databases_open`: Faust's RocksDB store drops the databases of the partitions a
  rebalance takes away (they close when released, after a full ``gc.collect()`` per table) and
  opens those of the partitions it brings, on the event loop, one after the other. The engine's
  stores keep a database they let go open, idle, and take it back when its partition returns;
  the warm-up opens the rest before the worker joins (:func:`open_idle`). Under load an open
  took 10–70 ms of the event loop (rocksdict holds the interpreter lock while it opens) and a
  close 3–10 ms: a hand-over's 15–30 of them held every partition of the worker taking over for
  0.2–0.9 s (issue 17, the rolling restart). The ``gc.collect()`` held the interpreter lock for
  seconds in a worker holding many resident workflows: the consumer thread missed its
  heartbeats and the group evicted the worker in the middle of a planned hand-over.
- :func:`db_for` and :func:`offset_row`: a table partition's rocksdict database and the row
  holding the changelog offset Faust's recovery starts after.
- :func:`skip_recovery_of`: Faust's recovery does not read the active changelog partitions the
  engine's catch-up (``_store.py``) already read (or that the engine kept from the previous
  assignment): their start and end are both the stored offset when the recovery starts. A start
  taken earlier let Faust re-apply the engine's own records behind it while it went on writing
  (a deleted row came back). Faust takes the end of a changelog from its own look-up, after the
  catch-up; a transactional changelog can grow by control records only
  in between (the commit markers of the worker's own last transaction, written after its
  commit returned; abort markers of a fencing), and Faust would then wait for records that
  never come — forever (seen after a broker restart under load) — or stop the worker with
  ``ConsistencyError`` when its look-up lags the stored offset.
"""

from __future__ import annotations

from typing import Any, Iterable

#: The faust-streaming release these hooks were read from.
FAUST_VERSION = "0.15.3"

#: Longest time the engine's Faust consumer lets the broker hold a fetch.
FETCH_MAX_WAIT_MS = 100


def patch_worker_consumer(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Wrap ``AIOKafkaConsumerThread._create_worker_consumer``: read committed, short fetch wait
    (both are read by aiokafka when the consumer starts)."""
    from faust.transport.drivers import aiokafka as driver

    cls: Any = driver.AIOKafkaConsumerThread
    if getattr(cls, "_aion_fetch_max_wait_ms", None) is None:
        create = cls._create_worker_consumer

        def _create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = create(self, transport)
            consumer._fetch_max_wait_ms = cls._aion_fetch_max_wait_ms
            consumer._isolation_level = "read_committed"  # aiokafka hands it to its Fetcher on start
            return consumer

        cls._create_worker_consumer = _create_worker_consumer
    cls._aion_fetch_max_wait_ms = max_wait_ms


def keep_databases_open() -> None:
    """Faust's ``rocksdb.Store`` keeps the database of a partition it lets go (revoked) open and
    idle instead of dropping it (which closed it), while the store holds fewer idle ones than
    its limit (:func:`set_idle_limit`; none by default), and takes an idle database back before
    it opens one from disk. A database idle while another worker owns its partition lags its
    changelog as a closed one would: it is caught up from its stored offset when the partition
    returns (the engine's catch-up for an active, Faust's recovery for a standby).
    ``reset_state`` and ``stop`` let go of the idle ones too; no full garbage collection runs on
    a revoke. The originals are kept in ``Store._aion_originals``."""
    from faust.stores import rocksdb

    cls: Any = rocksdb.Store
    if getattr(cls, "_aion_originals", None) is not None:
        return
    originals = {name: getattr(cls, name) for name in ("revoke_partitions", "_open_for_partition", "reset_state", "stop")}
    reset_state, stop = originals["reset_state"], originals["stop"]

    def revoke_partitions(self: Any, table: Any, tps: Iterable[Any]) -> None:
        idle = idle_databases(self)
        limit = self.__dict__.get("_aion_idle_limit")
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                db = self._dbs.pop(tp.partition, None)
                if db is not None and (limit is None or len(idle) < limit):
                    idle[tp.partition] = db

    def _open_for_partition(self: Any, partition: int) -> Any:
        db = idle_databases(self).pop(partition, None)
        return db if db is not None else _open_from_disk(self, partition)

    def _reset_state(self: Any) -> None:
        idle_databases(self).clear()
        reset_state(self)

    async def _stop(self: Any) -> None:
        idle_databases(self).clear()
        await stop(self)

    cls.revoke_partitions = revoke_partitions
    cls._open_for_partition = _open_for_partition
    cls.reset_state = _reset_state
    cls.stop = _stop
    cls._aion_originals = originals


#: Table databases this process opened from disk (the warm-up's and any other), in all.
OPENED_FROM_DISK = [0]


def _open_from_disk(store: Any, partition: int) -> Any:
    """Faust's own open of ``store``'s database of ``partition``, counted."""
    db = type(store)._aion_originals["_open_for_partition"](store, partition)
    OPENED_FROM_DISK[0] += 1
    return db


def idle_databases(store: Any) -> dict[int, Any]:
    """partition -> the open database of ``store`` (a Faust RocksDB store) that no assignment
    uses now (:func:`keep_databases_open`)."""
    idle: dict[int, Any] | None = store.__dict__.get("_aion_idle")
    if idle is None:
        idle = store.__dict__["_aion_idle"] = {}
    return idle


def set_idle_limit(store: Any, limit: int | None) -> None:
    """At most ``limit`` idle databases in ``store`` (None: no limit); a revoke beyond it closes."""
    store.__dict__["_aion_idle_limit"] = limit


def open_idle(store: Any, partition: int | None = None) -> bool:
    """Before the worker joins its group (nothing assigned yet): every database ``store`` has
    open goes idle; then the database of ``partition`` is opened, idle, unless it is open.
    Whether it opened one."""
    idle = idle_databases(store)
    for p in list(store._dbs):
        idle[p] = store._dbs.pop(p)
    if partition is None or partition in idle:
        return False
    idle[partition] = _open_from_disk(store, partition)
    return True


def keep_paused(consumer: Any, topic: str) -> None:
    """Faust's ``consumer`` never resumes fetching ``topic`` (its recovery resumes every
    non-changelog partition when it completes); its partitions are paused now too."""
    if getattr(consumer, "_aion_keep_paused", None) == topic:
        return
    resume = consumer.resume_partitions

    def resume_partitions(tps: Iterable[Any]) -> None:
        resume({tp for tp in tps if tp.topic != topic})

    consumer.resume_partitions = resume_partitions
    consumer._aion_keep_paused = topic
    try:
        assigned = consumer.assignment()
    except Exception:  # not started yet
        assigned = set()
    consumer.pause_partitions({tp for tp in assigned if tp.topic == topic})


def db_for(table: Any, partition: int) -> Any:
    """The rocksdict database of ``table`` for ``partition`` (opened on first use)."""
    return table.data._db_for_partition(partition)


def offset_row(table: Any, offset: int) -> tuple[bytes, bytes]:
    """The row in which ``table``'s RocksDB store keeps a partition's persisted changelog
    offset, as Faust's ``Store.set_persisted_offset`` writes it: written in the same write
    batch as the rows it covers (one RocksDB write, rows and offset together or neither)."""
    return table.data.offset_key, str(offset).encode()


def stored_offset(table: Any, partition: int) -> int | None:
    from faust.types import TP

    return table.data.persisted_offset(TP(table.changelog_topic.get_topic_name(), partition))


def standby_partitions(app: Any) -> set[Any]:
    """The topic partitions this worker holds as standbys (replicas of another's tables)."""
    return set(app.assignor.assigned_standbys())


def request_rejoin(consumer: Any) -> bool:
    """Have Faust's consumer rejoin its group (a rebalance: revoke, assign, restore), from its
    own thread's loop. Whether the request could be made."""
    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)
    coordinator = getattr(client, "_coordinator", None)
    loop = getattr(thread, "thread_loop", None)
    if coordinator is None or loop is None:
        return False
    loop.call_soon_threadsafe(coordinator.request_rejoin)
    return True


async def leave_group(consumer: Any, timeout: float) -> bool:
    """Close the group membership of Faust's ``consumer`` now (aiokafka's coordinator: stop
    heartbeating and send LeaveGroup), from its own thread's loop: the group rebalances at
    once instead of after the session timeout, and this member never rejoins. Whether the
    group was left within ``timeout`` seconds."""
    import asyncio

    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)
    coordinator = getattr(client, "_coordinator", None)
    loop = getattr(thread, "thread_loop", None)
    if coordinator is None or loop is None or not loop.is_running():
        return False
    fut = asyncio.run_coroutine_threadsafe(coordinator.close(), loop)
    try:
        await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
    except Exception:
        return False
    return True


def skip_recovery_of(app: Any, tps: Iterable[Any]) -> None:
    """Faust's next recovery of ``app`` treats the active changelog partitions ``tps`` as
    restored: their end is taken to be their stored offset (see the module docs). Wraps
    ``Recovery._build_highwaters`` once; ``app._aion_caught_up`` is the set consulted."""
    from faust.tables.recovery import Recovery

    caught: set[Any] = getattr(app, "_aion_caught_up", None) or set()
    caught.update(tps)
    app._aion_caught_up = caught
    if getattr(Recovery, "_aion_wrapped", False):
        return
    build = Recovery._build_highwaters

    async def _build_highwaters(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await build(self, consumer, tps, destination, title)
        done = getattr(self.app, "_aion_caught_up", None)
        if title != "active" or not done:
            return
        tables = {t.changelog_topic.get_topic_name(): t for t in self.app.tables.values()}
        starts = getattr(self, "active_offsets", None)
        for tp in list(destination):
            table = tables.get(tp.topic)
            if tp in done and table is not None:
                stored = stored_offset(table, tp.partition)
                destination[tp] = stored if stored is not None else -1
                if starts is not None:
                    # Its start too: Faust took it when the partition was assigned (or kept it
                    # from an earlier recovery), and the engine has written on since. Reading
                    # from there would apply the engine's own records again — behind it, while
                    # it writes: a row it deleted came back (a timer row of a cancelled timer,
                    # in the chaos test and in CI). Start = end: nothing is read.
                    starts[tp] = destination[tp]

    Recovery._build_highwaters = _build_highwaters
    Recovery._aion_wrapped = True


def forget_recovery_skips(app: Any) -> None:
    """A new assignment: every partition is caught up (or not) again."""
    app._aion_caught_up = set()
