"""Every Faust internal the engine relies on (``aion/engine/_faust.py``), checked against the
installed faust-streaming: a release that moves or renames one fails here, not in production."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import pytest

from aion.engine import _faust


def test_faust_is_the_pinned_release() -> None:
    assert version("faust-streaming") == _faust.FAUST_VERSION
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert f"faust-streaming[rocksdict]=={_faust.FAUST_VERSION}" in pyproject


def test_the_worker_consumer_factory_and_the_aiokafka_attributes_it_sets() -> None:
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "transport" in inspect.signature(AIOKafkaConsumerThread._create_worker_consumer).parameters
    # aiokafka keeps both in attributes that it hands to its Fetcher when the consumer starts.
    init = inspect.getsource(AIOKafkaConsumer.__init__)
    start = inspect.getsource(AIOKafkaConsumer.start)
    for attr in ("_fetch_max_wait_ms", "_isolation_level"):
        assert f"self.{attr} = " in init and f"self.{attr}" in start, attr
    from aiokafka.consumer.fetcher import Fetcher

    assert "read_committed" in inspect.getsource(Fetcher.__init__)


def test_patch_worker_consumer_sets_read_committed_and_the_fetch_wait() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    class _Consumer:
        _fetch_max_wait_ms = 1500
        _isolation_level = "read_uncommitted"

    original = AIOKafkaConsumerThread._create_worker_consumer
    marker = getattr(AIOKafkaConsumerThread, "_aion_fetch_max_wait_ms", None)
    try:
        AIOKafkaConsumerThread._aion_fetch_max_wait_ms = None
        AIOKafkaConsumerThread._create_worker_consumer = lambda self, transport: _Consumer()
        _faust.patch_worker_consumer(77)
        made = AIOKafkaConsumerThread._create_worker_consumer(object(), object())
        assert made._isolation_level == "read_committed" and made._fetch_max_wait_ms == 77
    finally:
        AIOKafkaConsumerThread._create_worker_consumer = original
        AIOKafkaConsumerThread._aion_fetch_max_wait_ms = marker


def test_keep_paused_filters_the_commands_topic_out_of_every_resume() -> None:
    from faust.transport.consumer import Consumer
    from faust.types import TP

    for name in ("pause_partitions", "resume_partitions", "assignment"):
        assert callable(getattr(Consumer, name, None)), name

    class _Consumer:
        def __init__(self) -> None:
            self.paused: set[TP] = set()
            self.resumed: set[TP] = set()

        def assignment(self) -> set[TP]:
            return {TP("c", 0), TP("other", 0)}

        def pause_partitions(self, tps):  # type: ignore[no-untyped-def]
            self.paused |= set(tps)

        def resume_partitions(self, tps):  # type: ignore[no-untyped-def]
            self.resumed |= set(tps)

    c = _Consumer()
    _faust.keep_paused(c, "c")
    assert c.paused == {TP("c", 0)}
    c.resume_partitions({TP("c", 0), TP("c", 1), TP("other", 0)})
    assert c.resumed == {TP("other", 0)}


def test_recovery_resumes_partitions_through_the_consumer_method_keep_paused_wraps() -> None:
    from faust.tables.recovery import Recovery

    src = inspect.getsource(Recovery)
    assert "consumer.resume_partitions(" in src
    # The signal the engine starts reading commands on, once the tables are restored.
    assert "on_rebalance_complete.send()" in src


@pytest.mark.parametrize("method", ["_db_for_partition", "set_persisted_offset", "persisted_offset"])
def test_the_rocksdb_store_methods_the_engine_calls(method: str) -> None:
    from faust.stores.rocksdb import Store

    assert callable(getattr(Store, method, None))
    assert "offset_key" in inspect.getsource(Store)


def test_the_rocksdb_store_methods_keep_databases_open_wraps() -> None:
    """Faust's own methods (not the engine's wrappers, once applied): a partition's database is
    opened through ``_open_for_partition`` only, and a revoke forgets it by popping ``_dbs``."""
    from faust.stores.rocksdb import Store

    _faust.keep_databases_open()
    originals = Store._aion_originals
    assert sorted(originals) == ["_open_for_partition", "reset_state", "revoke_partitions", "stop"]
    assert "self._dbs[partition] = self._open_for_partition(partition)" in inspect.getsource(Store._db_for_partition)
    assert "self._dbs.pop(tp.partition" in inspect.getsource(originals["revoke_partitions"])
    assert "self._dbs.clear()" in inspect.getsource(originals["reset_state"])
    assert "self._dbs.clear()" in inspect.getsource(originals["stop"])
    assert "rocksdb_options.open(" in inspect.getsource(originals["_open_for_partition"])


def test_tables_are_rebalanced_before_recovery_starts() -> None:
    """The engine fences its partitions in from the tables' ``on_rebalance`` hook: it must run
    before Faust's recovery reads any changelog."""
    from faust.tables.manager import TableManager

    src = inspect.getsource(TableManager.on_rebalance)
    assert src.index("table.on_rebalance") < src.index("self.recovery.on_rebalance")


def test_standby_partitions_come_from_the_app_s_assignor() -> None:
    from types import SimpleNamespace

    from faust.assignor import PartitionAssignor
    from faust.types import TP

    assert callable(getattr(PartitionAssignor, "assigned_standbys", None))
    app = SimpleNamespace(assignor=SimpleNamespace(assigned_standbys=lambda: {TP("t", 1)}))
    assert _faust.standby_partitions(app) == {TP("t", 1)}


def test_request_rejoin_reaches_the_aiokafka_coordinator_of_faust_s_consumer_thread() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

    assert callable(GroupCoordinator.request_rejoin)
    assert "self._consumer = self._create_consumer(" in inspect.getsource(AIOKafkaConsumerThread)
    assert "_thread" in inspect.getsource(Consumer)


def test_recovery_highwaters_come_from_build_highwaters_and_gate_the_restore() -> None:
    """skip_recovery_of wraps Recovery._build_highwaters: the recovery must still take the
    active ends from it (with the ``-1`` it applies) and decide from them whether to read."""
    from faust.tables import recovery

    src = inspect.getsource(recovery)
    src = src[src.index("async def _restart_recovery"):]
    assert 'self._build_highwaters)(\n                        consumer, assigned_active_tps, active_highwaters, "active"' in src
    assert src.index("_build_highwaters") < src.index("active_offsets[tp] > active_highwaters[tp]")
    assert src.index("_build_highwaters") < src.index("self.need_recovery()")
    # The starts skip_recovery_of sets (active_offsets) are read after it, and only raised by
    # _build_offsets (to the log's earliest offset, when compaction removed what lay before).
    assert src.index("_build_highwaters") < src.index("self._build_offsets)(\n                        consumer, assigned_active_tps, active_offsets")
    build = inspect.getsource(recovery.Recovery._build_offsets)
    assert "destination[tp] = max(last_value, new_value)" in build


async def test_skip_recovery_of_sets_the_end_of_caught_up_partitions_to_their_stored_offset() -> None:
    """A caught-up partition's end is its stored offset (nothing to read, no ConsistencyError
    when Faust's look-up lags it); others keep the end Faust looked up."""
    from types import SimpleNamespace

    from faust.tables.recovery import Recovery
    from faust.types import TP

    from aion.engine._faust import forget_recovery_skips, skip_recovery_of

    stored = {TP("t-changelog", 0): 558, TP("t-changelog", 1): None}
    table = SimpleNamespace(changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-changelog"),
                            data=SimpleNamespace(persisted_offset=lambda tp: stored.get(tp)))
    app = SimpleNamespace(tables={"t": table})

    class Looked:
        async def highwaters(self, *tps):  # type: ignore[no-untyped-def]
            return {tp: 558 for tp in tps}  # the log's end: offset 557 is its last

    # Faust's starts, taken when the partitions were assigned: before the engine wrote on.
    starts = {TP("t-changelog", 0): 400, TP("t-changelog", 1): None, TP("t-changelog", 2): 12}
    rec = SimpleNamespace(app=app, log=SimpleNamespace(info=lambda *a, **k: None),
                          _highwater_logtable=lambda *a, **k: "", active_offsets=starts)
    tps = {TP("t-changelog", 0), TP("t-changelog", 1), TP("t-changelog", 2)}
    forget_recovery_skips(app)
    skip_recovery_of(app, {TP("t-changelog", 0), TP("t-changelog", 1)})
    dest: dict = {}
    await Recovery._build_highwaters(rec, Looked(), tps, dest, "active")
    assert dest == {TP("t-changelog", 0): 558, TP("t-changelog", 1): -1, TP("t-changelog", 2): 557}
    # A caught-up partition's start is its end: Faust reads none of the engine's own records
    # again (from 400 it re-applied them behind the engine as it wrote on: a deleted row came back).
    assert starts == {TP("t-changelog", 0): 558, TP("t-changelog", 1): -1, TP("t-changelog", 2): 12}
    standby: dict = {}
    await Recovery._build_highwaters(rec, Looked(), tps, standby, "standby")
    assert set(standby.values()) == {557}
    forget_recovery_skips(app)
    again: dict = {}
    await Recovery._build_highwaters(rec, Looked(), tps, again, "active")
    assert set(again.values()) == {557}


def test_faust_reads_the_stream_processing_timeout_from_the_environment() -> None:
    """tests/integration/test_engine_logs.py shortens Faust's livelock timeout (5 minutes) for an
    engine process through this variable."""
    from faust.types.settings.settings import Settings as FaustSettings

    param = FaustSettings.SETTINGS["stream_processing_timeout"]
    assert param.env_name == "STREAM_PROCESSING_TIMEOUT" and param.default == 300.0


def _livelock_errors(acking: bool) -> list[str]:
    """What Faust's livelock check logs for one partition that has records past the consumer's
    position and no stream reading it, long after start — an engine's events or commands
    partition — when the topic is (not) an acking one."""
    from types import SimpleNamespace

    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    tp = TP("p.events", 0)
    logged: list[str] = []
    log = SimpleNamespace(error=lambda msg, *args: logged.append(msg % args))
    state = SimpleNamespace(highwater=120, position=7, timestamp=1_000_000.0 * 1000)
    assignment = SimpleNamespace(active=True, state_value=lambda aiotp: state)
    client = SimpleNamespace(_fetcher=SimpleNamespace(_subscriptions=SimpleNamespace(
        subscription=SimpleNamespace(assignment=assignment))))
    app = SimpleNamespace(
        monitor=SimpleNamespace(stream_inbound_time={}),
        topics=SimpleNamespace(acks_enabled_for=lambda topic: acking),
        conf=SimpleNamespace(stream_processing_timeout=300.0, broker_commit_livelock_soft_timeout=300.0))
    thread = SimpleNamespace(
        consumer=SimpleNamespace(app=app), app=app, log=log, time_started=0.0,
        tp_fetch_request_timeout_secs=300.0, tp_stream_timeout_secs=300.0, tp_commit_timeout_secs=300.0,
        _ensure_consumer=lambda: client)
    for name in ("_verify_aiokafka_event_path", "_log_slow_processing_stream", "_log_slow_processing_commit",
                 "_log_slow_processing", "_make_slow_processing_error"):
        setattr(thread, name, getattr(AIOKafkaConsumerThread, name).__get__(thread))
    AIOKafkaConsumerThread.verify_event_path(thread, 1_000_000.5, tp)  # 11.6 days after start
    return logged


def test_faust_s_livelock_check_cries_wolf_on_an_acking_topic_and_skips_others() -> None:
    """Why the engine declares its commands and events topics ``acks=False`` (_app.py): the
    check's stream and commit branches only look at acking topics."""
    assert any("Stream has not started processing TP(topic='p.events', partition=0)" in m
               for m in _livelock_errors(acking=True))
    assert _livelock_errors(acking=False) == []


def test_the_engine_s_faust_topics_are_not_acking(tmp_path: Path) -> None:
    """Faust's conductor counts a topic as acking when a channel on it has ``acks`` set; the
    engine's Faust app has none: the commands topic (its agent's, never fetched by Faust) and
    the events topic (history's changelog) are declared ``acks=False``, like the changelogs
    Faust declares for the other tables."""
    from faust.transport.conductor import Conductor

    from aion.engine._app import build_app
    from aion.engine.settings import Settings

    assert "if channel.acks:\n                        self._acking_topics.add(topic)" in inspect.getsource(
        Conductor._update_indices)
    app, tables = build_app(Settings(topic_prefix="p", data_dir=tmp_path))
    assert tables.commands_topic.acks is False and tables.events_topic.acks is False
    assert tables.history.changelog_topic is tables.events_topic
    for table in tables.by_name().values():
        assert table.changelog_topic.acks is False, table.name
