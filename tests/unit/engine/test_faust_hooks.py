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


def test_tables_are_rebalanced_before_recovery_starts() -> None:
    """The engine fences its partitions in from the tables' ``on_rebalance`` hook: it must run
    before Faust's recovery reads any changelog."""
    from faust.tables.manager import TableManager

    src = inspect.getsource(TableManager.on_rebalance)
    assert src.index("table.on_rebalance") < src.index("self.recovery.on_rebalance")


def test_request_rejoin_reaches_the_aiokafka_coordinator_of_faust_s_consumer_thread() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

    assert callable(GroupCoordinator.request_rejoin)
    assert "self._consumer = self._create_consumer(" in inspect.getsource(AIOKafkaConsumerThread)
    assert "_thread" in inspect.getsource(Consumer)
