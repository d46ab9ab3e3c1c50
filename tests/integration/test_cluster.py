"""``kafka-local --cluster``: three KRaft brokers on this machine, and what the deployment's
topics get on them — replication factor 3 and ``min.insync.replicas`` 2, so that a write
acknowledged with ``acks=all`` survives the loss of one broker and no write is acknowledged
while two are down. (The engine on such a cluster, with brokers killed under load, is the
chaos test's cluster mode: README, "A replicated cluster".)"""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from aion.common.settings import Settings
from aion.common.topics import TopicNames, ensure_topics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
from chaos_cluster import OwnCluster, start_new  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnCluster]:
    if shutil.which("java") is None:
        pytest.fail("kafka-local --cluster needs Java 17+ (and Maven, once)")
    own = OwnCluster.on_free_ports(tmp_path_factory.mktemp("kafka-cluster"))
    r = start_new(own)
    assert r.returncode == 0, f"kafka-local start --cluster failed:\n{r.stdout}{r.stderr}"
    try:
        yield own
    finally:
        for node in (1, 2, 3):  # its data is thrown away: no clean shutdown needed (40 s less)
            own.run("kill", node)


def _produce(bootstrap: str, topic: str, timeout: float) -> str | None:
    """One record with acks=all; None when acknowledged, else the error."""
    errors: list[str] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": int(timeout * 1000), "logger": _quiet})
    p.produce(topic, key=b"k", value=b"v", partition=0,
              on_delivery=lambda err, msg: errors.append(err.name() if err else ""))
    p.flush(timeout + 5)
    return errors[0] or None if errors else "no delivery report"


class _Quiet:
    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return self.log


_quiet = _Quiet()


def test_three_brokers_replicate_the_deployment_topics(cluster: OwnCluster) -> None:
    status = cluster.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("answering metadata") == 3, status.stdout

    settings = Settings(bootstrap_servers=cluster.bootstrap, topic_prefix=f"c{uuid.uuid4().hex[:8]}",
                        partitions=3, replication_factor=3)
    ensure_topics(settings)
    names = TopicNames(settings.topic_prefix)
    admin = AdminClient(settings.confluent_config())
    md = admin.list_topics(timeout=10)
    assert len(md.brokers) == 3
    for topic in (names.commands, names.events, names.replies, names.dlq):
        parts = md.topics[topic].partitions
        assert {len(p.replicas) for p in parts.values()} == {3}, topic
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        cfg = admin.describe_configs([res])[res].result(timeout=10)
        assert cfg["min.insync.replicas"].value == "2", topic

    # One broker down (kill -9): acks=all writes go on, to the leaders on the other two.
    leader = md.topics[names.commands].partitions[0].leader
    assert cluster.run("kill", leader).returncode == 0
    err = _produce(cluster.bootstrap, names.commands, timeout=120)
    assert err is None, f"acks=all write with broker {leader} down: {err}"

    # Two down: fewer in-sync replicas than min.insync.replicas, nothing is acknowledged.
    other = next(b for b in (1, 2, 3) if b != leader)
    assert cluster.run("kill", other).returncode == 0
    err = _produce(cluster.bootstrap, names.commands, timeout=8)
    assert err is not None, "a write was acknowledged with one broker of three"

    # Both back: the cluster answers again and writes are acknowledged.
    for node in (leader, other):
        r = cluster.run("start", node)
        assert r.returncode == 0, r.stdout + r.stderr
    err = _produce(cluster.bootstrap, names.commands, timeout=120)
    assert err is None, f"acks=all write with all brokers back: {err}"
    status = cluster.run("status")
    assert status.stdout.count("answering metadata") == 3, status.stdout
