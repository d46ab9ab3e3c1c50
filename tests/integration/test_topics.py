"""Topic administration against the real broker: idempotent creation, and validation that
refuses topics which would lose or misroute workflow history."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from aion.engine.settings import Settings
from aion.engine.topics import TopicConfigError, TopicNames, ensure_topics, validate_topics


def _describe(settings: Settings) -> tuple[dict[str, int], dict[str, str]]:
    """Partition counts of the prefix's topics, and the events topic's configuration."""
    admin = AdminClient(settings.confluent_config())
    md = admin.list_topics(timeout=10)
    counts = {n: len(t.partitions) for n, t in md.topics.items() if n.startswith(settings.topic_prefix + ".")}
    res = ConfigResource(ConfigResource.Type.TOPIC, TopicNames(settings.topic_prefix).events)
    entries = admin.describe_configs([res])[res].result(timeout=10)
    return counts, {k: v.value for k, v in entries.items()}


def _create(settings: Settings, topics: dict[str, tuple[int, dict[str, str]]]) -> None:
    """Create topics by hand (as an operator might) and wait until the broker lists them."""
    admin = AdminClient(settings.confluent_config())
    new = [NewTopic(name, n, 1, config=cfg) for name, (n, cfg) in topics.items()]
    for fut in admin.create_topics(new).values():
        fut.result(timeout=10)
    # CreateTopics returns once the controller committed the topics; the broker's metadata
    # cache catches up a moment later.
    deadline = time.monotonic() + 10
    while not set(topics) <= set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, f"created topics {sorted(topics)} never appeared in metadata"
        time.sleep(0.05)


def test_ensure_topics_creates_the_deployment_once(settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    created = ensure_topics(settings, task_queues=("default", "gpu"))
    expected = [names.commands, names.events, names.replies, names.dlq,
                names.activity_tasks("default"), names.activity_tasks("gpu")]
    assert sorted(created) == sorted([*expected, names.deployments])

    counts, events_config = _describe(settings)
    # the deployments topic has one partition: one order of builds and routes for every worker
    assert counts == {**{name: settings.partitions for name in expected}, names.deployments: 1}
    assert events_config["cleanup.policy"] == "compact"
    assert int(events_config["max.message.bytes"]) >= settings.max_payload_bytes

    # Idempotent: nothing new, nothing changed, and the result validates.
    assert ensure_topics(settings, task_queues=("default", "gpu")) == []
    assert _describe(settings) == (counts, events_config)
    validate_topics(settings)

    # A new task queue later only adds its topic.
    assert ensure_topics(settings, task_queues=("default", "batch")) == [names.activity_tasks("batch")]


def test_concurrent_ensure_topics_do_not_fail(settings: Settings) -> None:
    errors: list[BaseException] = []
    created: list[list[str]] = []

    def run() -> None:
        try:
            created.append(ensure_topics(settings))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # every topic was created exactly once across the racing callers
    all_created = sorted(n for names in created for n in names)
    assert all_created == sorted(TopicNames(settings.topic_prefix).all())
    validate_topics(settings)


def test_validate_refuses_missing_topics(settings: Settings) -> None:
    with pytest.raises(TopicConfigError, match=r"do not exist .*aion topics create"):
        validate_topics(settings)


def test_validate_refuses_an_events_topic_that_is_not_compacted(settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    n = settings.partitions
    _create(settings, {
        names.commands: (n, {}),
        names.events: (n, {"cleanup.policy": "delete"}),
        names.replies: (n, {}),
        names.dlq: (n, {}),
    })
    with pytest.raises(TopicConfigError) as info:
        validate_topics(settings)
    message = str(info.value)
    assert f"topic '{names.events}' has cleanup.policy=delete" in message
    assert "must be compacted (cleanup.policy=compact)" in message
    assert "--add-config cleanup.policy=compact" in message  # the fix


def test_validate_refuses_compact_plus_delete(settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    n = settings.partitions
    _create(settings, {
        names.commands: (n, {}),
        names.events: (n, {"cleanup.policy": "compact,delete"}),
        names.replies: (n, {}),
        names.dlq: (n, {}),
    })
    with pytest.raises(TopicConfigError, match=r"cleanup.policy=compact,delete; the events topic must be compacted"):
        validate_topics(settings)


def test_validate_refuses_events_and_commands_with_different_partition_counts(settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    _create(settings, {
        names.commands: (4, {}),
        names.events: (2, {"cleanup.policy": "compact"}),
        names.replies: (4, {}),
        names.dlq: (4, {}),
    })
    with pytest.raises(TopicConfigError) as info:
        validate_topics(settings)
    message = str(info.value)
    assert f"topic '{names.events}' has 2 partitions but '{names.commands}' has 4" in message
    assert "co-partitioned" in message
    assert f"--alter --topic {names.events} --partitions 4" in message


def test_validate_refuses_settings_with_another_partition_count(settings: Settings) -> None:
    ensure_topics(settings)  # 4 partitions
    with pytest.raises(TopicConfigError, match=r"have 4 partitions but this process is configured for 6 .*AION_PARTITIONS=4"):
        validate_topics(settings.replace(partitions=6))


def test_ensure_topics_names_an_unreachable_broker(topic_prefix: str) -> None:
    s = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix=topic_prefix)
    with pytest.raises(TopicConfigError, match=r"could not reach Kafka at 127.0.0.1:1.*kafka-local start"):
        ensure_topics(s, timeout=1)


def test_topics_are_served_as_soon_as_ensure_topics_returns(settings: Settings) -> None:
    # Kafka lists a new partition's leader slightly before that broker serves it (NOT_LEADER
    # on ListOffsets in between); ensure_topics waits that out, so callers need no retries.
    from confluent_kafka import Consumer, TopicPartition

    ensure_topics(settings, task_queues=("default", "other"))
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}-probe"})
    try:
        names = TopicNames(settings.topic_prefix)
        for topic in names.all(("default", "other")):
            for p in range(1 if topic == names.deployments else settings.partitions):  # deployments: one
                assert consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5) == (0, 0)
    finally:
        consumer.close()


def test_partitions_added_to_a_deployment_in_use_are_refused(settings: Settings) -> None:
    """Adding partitions moves workflow ids (hash modulo the count) away from their histories:
    once a workflow has events, an operator who grows both topics and AION_PARTITIONS gets a
    refusal naming a misrouted workflow, not an engine that loses track of it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewPartitions

    from aion.codec import Codec, partition_for
    from aion.common.topics import misrouted_workflows
    from aion.model import Event, EventKey, MarkerRecorded

    ensure_topics(settings)
    n = settings.partitions
    wids = [f"grown-{i}" for i in range(40) if partition_for(f"grown-{i}", n) != partition_for(f"grown-{i}", n + 1)]
    codec = Codec()
    names = TopicNames(settings.topic_prefix)
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for wid in wids[:8]:  # events where the engine writes them: the partition of the id
        ev = Event(wid, 1, "run-0", int(time.time() * 1000), MarkerRecorded("m", "x", None))
        p.produce(names.events, key=codec.encode_event_key(EventKey(wid, 1)), value=codec.encode_event(ev),
                  partition=partition_for(wid, n))
    assert p.flush(10) == 0
    validate_topics(settings)  # as created: no workflow is misrouted
    assert misrouted_workflows(settings, n) == []

    admin = AdminClient(settings.confluent_config())
    for fut in admin.create_partitions([NewPartitions(names.commands, n + 1), NewPartitions(names.events, n + 1)]).values():
        fut.result(timeout=10)
    grown = settings.replace(partitions=n + 1)
    deadline = time.monotonic() + 10
    while len(admin.list_topics(timeout=10).topics[names.events].partitions) != n + 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with pytest.raises(TopicConfigError, match=r"partitions were added to a deployment in use.*new deployment"):
        validate_topics(grown)
    found = misrouted_workflows(grown, n + 1)
    assert found and all(wid in wids and home == partition_for(wid, n + 1) for _, wid, home in found)


def test_the_engine_tables_changelogs_exist_before_the_worker_starts(settings: Settings) -> None:
    """``aion worker`` creates its tables' changelogs itself, before Faust's worker joins the
    group (issue 17): left to Faust they could appear after the group leader had looked them up,
    and its assignor then gave their partitions to nobody — no worker restored the ``timers``
    table on a takeover until the leader's metadata was refreshed, minutes later."""
    from aion.engine._app import build_app, changelog_topics

    _app, tables = build_app(settings)
    logs = changelog_topics(settings, tables)
    prefix = f"{settings.topic_prefix}-engine-"
    assert sorted(logs) == sorted(f"{prefix}{t}-changelog" for t in ("workflows", "progress", "timers",
                                                                     "timer_terminal"))
    created = ensure_topics(settings, extra=logs)
    assert set(logs) <= set(created)
    admin = AdminClient(settings.confluent_config())
    md = admin.list_topics(timeout=10)
    for name in logs:
        assert len(md.topics[name].partitions) == settings.partitions
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        entries = admin.describe_configs([res])[res].result(timeout=10)
        assert entries["cleanup.policy"].value == "compact"
    assert ensure_topics(settings, extra=logs) == []  # idempotent
