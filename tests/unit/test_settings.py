"""Settings: defaults, AION_* environment parsing, overrides, validation. No broker needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aion.engine.settings import Settings, SettingsError
from aion.engine.topics import TopicNames


def test_defaults_point_at_a_local_broker() -> None:
    s = Settings.from_env({})
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.topic_prefix == "aion"
    assert s.partitions == 12
    assert s.data_dir == Path("./.data")
    assert s.cache_size == 10_000
    assert s.schema_registry_url is None
    assert s.max_payload_bytes == 2 * 1024 * 1024
    assert s.security_protocol is None and s.sasl_username is None
    assert (s.metrics_port, s.metrics_host) == (0, "0.0.0.0")  # no metrics endpoint unless asked
    assert s == Settings()


def test_fail_over_defaults() -> None:
    # A dead worker's partitions move after the broker's lowest session timeout, and the survivor
    # hears of the rebalance within half a second of it.
    s = Settings()
    assert s.session_timeout == 6.0
    assert s.heartbeat_interval == 0.25
    assert s.standby_replicas == 0


def test_every_setting_is_read_from_its_variable() -> None:
    env = {
        "AION_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "AION_TOPIC_PREFIX": "shop",
        "AION_PARTITIONS": "24",
        "AION_REPLICATION_FACTOR": "3",
        "AION_MIN_INSYNC_REPLICAS": "3",
        "AION_STANDBY_REPLICAS": "1",
        "AION_DATA_DIR": "/var/lib/aion",
        "AION_CACHE_SIZE": "500",
        "AION_BATCH_SIZE": "64",
        "AION_TIMER_BATCH": "10",
        "AION_TIMER_FIRE": "topic",
        "AION_RETENTION_MS": "0",
        "AION_METRICS_PORT": "9464",
        "AION_METRICS_HOST": "127.0.0.1",
        "AION_TRACING": "otlp",
        "AION_SESSION_TIMEOUT": "7.5",
        "AION_HEARTBEAT_INTERVAL": "1.5",
        "AION_HISTORY_WARN_EVENTS": "100",
        "AION_HISTORY_FAIL_EVENTS": "500",
        "AION_HISTORY_WARN_BYTES": "1000",
        "AION_HISTORY_FAIL_BYTES": "5000",
        "AION_MAX_PAYLOAD_BYTES": "1048576",
        "AION_REPLY_TOPICS": "shop.replies.eu, other.answers",
        "AION_SCHEMA_REGISTRY_URL": "http://registry:8081",
        "AION_SECURITY_PROTOCOL": "sasl_ssl",
        "AION_SASL_MECHANISM": "SCRAM-SHA-512",
        "AION_SASL_USERNAME": "svc",
        "AION_SASL_PASSWORD": "s3cret",
        "AION_SSL_CAFILE": "/etc/ca.pem",
    }
    s = Settings.from_env(env)
    assert (s.bootstrap_servers, s.topic_prefix, s.partitions) == ("k1:9092,k2:9092", "shop", 24)
    assert (s.replication_factor, s.min_insync_replicas, s.standby_replicas) == (3, 3, 1)
    assert s.data_dir == Path("/var/lib/aion")
    assert (s.cache_size, s.batch_size, s.timer_batch, s.timer_fire) == (500, 64, 10, "topic")
    assert s.max_payload_bytes == 1048576
    assert s.retention_ms == 0
    assert (s.metrics_port, s.metrics_host) == (9464, "127.0.0.1")
    assert s.tracing == "otlp"
    assert (s.session_timeout, s.heartbeat_interval) == (7.5, 1.5)
    assert (s.history_warn_events, s.history_fail_events, s.history_warn_bytes, s.history_fail_bytes) == (100, 500, 1000, 5000)
    assert s.reply_topic_list == ("shop.replies.eu", "other.answers")
    assert s.schema_registry_url == "http://registry:8081"
    assert s.security_protocol == "SASL_SSL"  # normalised to upper case
    # every declared setting has a variable, and the test above covers them all
    assert {env_name for _, env_name, _, _ in Settings.describe()} == set(env)


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AION_TOPIC_PREFIX", "from-env")
    monkeypatch.setenv("AION_PARTITIONS", "7")
    s = Settings.from_env()
    assert (s.topic_prefix, s.partitions) == ("from-env", 7)


def test_overrides_win_over_the_environment_and_empty_variables_are_unset() -> None:
    s = Settings.from_env({"AION_PARTITIONS": "7", "AION_TOPIC_PREFIX": "  "}, partitions=3, data_dir="/tmp/x")
    assert s.partitions == 3
    assert s.topic_prefix == "aion"
    assert s.data_dir == Path("/tmp/x")  # str is accepted and held as a Path


def test_replace_copies_and_validates() -> None:
    s = Settings()
    t = s.replace(topic_prefix="other", partitions=4)
    assert (t.topic_prefix, t.partitions) == ("other", 4)
    assert (s.topic_prefix, s.partitions) == ("aion", 12)
    with pytest.raises(SettingsError, match="AION_PARTITIONS"):
        s.replace(partitions=0)
    with pytest.raises(TypeError, match="unknown setting.*partitons"):
        s.replace(partitons=4)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AION_PARTITIONS": "twelve"}, r"AION_PARTITIONS='twelve' is not a whole number"),
        ({"AION_PARTITIONS": "0"}, r"partitions \(AION_PARTITIONS\) = 0 must be a whole number >= 1"),
        ({"AION_SESSION_TIMEOUT": "soon"}, r"AION_SESSION_TIMEOUT='soon' is not a number"),
        ({"AION_TOPIC_PREFIX": "my prefix"}, r"AION_TOPIC_PREFIX.*not a valid topic prefix"),
        ({"AION_SECURITY_PROTOCOL": "TLS"}, r"AION_SECURITY_PROTOCOL.*not one of PLAINTEXT, SSL"),
        ({"AION_SASL_MECHANISM": "PLAIN"}, r"AION_SASL_MECHANISM.*set that too"),
        ({"AION_SESSION_TIMEOUT": "0"}, r"AION_SESSION_TIMEOUT.*must be a number of seconds above 0"),
        ({"AION_METRICS_PORT": "70000"}, r"AION_METRICS_PORT.*must be a port number"),
        ({"AION_TIMER_FIRE": "soon"}, r"timer_fire \(AION_TIMER_FIRE\) = 'soon' is neither inline nor topic"),
        ({"AION_METRICS_PORT": "-1"}, r"AION_METRICS_PORT.*must be a port number"),
        ({"AION_HEARTBEAT_INTERVAL": "-1"}, r"AION_HEARTBEAT_INTERVAL.*must be a number of seconds above 0"),
        ({"AION_SESSION_TIMEOUT": "6", "AION_HEARTBEAT_INTERVAL": "2.5"},
         r"AION_HEARTBEAT_INTERVAL.*more than a third of session_timeout \(AION_SESSION_TIMEOUT\) = 6"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bootstrap"):
        Settings.from_env({}, bootstrap="x:1")


def test_confluent_config_carries_connection_and_security() -> None:
    assert Settings(bootstrap_servers="b:1").confluent_config() == {"bootstrap.servers": "b:1", "reconnect.backoff.ms": 10}
    s = Settings(bootstrap_servers="b:1", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                 sasl_username="u", sasl_password="p", ssl_cafile="/ca.pem")
    assert s.confluent_config() == {
        "bootstrap.servers": "b:1",
        "reconnect.backoff.ms": 10,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
    }


def test_password_is_not_shown_in_repr() -> None:
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                 sasl_password="hunter2")
    assert "hunter2" not in repr(s)


def test_records_may_be_larger_than_the_largest_payload() -> None:
    s = Settings(max_payload_bytes=1000)
    assert s.max_record_bytes > 1000


def test_topic_names_follow_the_prefix() -> None:
    names = TopicNames("shop")
    assert names.all(("default", "gpu")) == [
        "shop.commands", "shop.events", "shop.replies", "shop.dlq", "shop.deployments",
        "shop.activity-tasks.default", "shop.activity-tasks.gpu",
    ]
    with pytest.raises(ValueError, match="task queue 'a b'"):
        names.activity_tasks("a b")


def test_importing_engine_settings_and_topics_does_not_import_faust() -> None:
    code = ("import sys, aion.engine, aion.engine.settings, aion.engine.topics; "
            "sys.exit(1 if any(m == 'faust' or m.startswith('faust.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_history_limits_have_one_set_of_defaults() -> None:
    """The engine's AION_HISTORY_* defaults, the runtime's HistoryLimits and the test environment
    suggest continue-as-new at the same point (they once said 10,240 and 10,000)."""
    from aion.runtime import HistoryLimits
    from aion.testing import WorkflowEnvironment

    s = Settings.from_env({})
    limits = HistoryLimits()
    assert (s.history_warn_events, s.history_fail_events, s.history_warn_bytes, s.history_fail_bytes) == (
        limits.warn_events, limits.fail_events, limits.warn_bytes, limits.fail_bytes)
    env = WorkflowEnvironment.start_time_skipping()
    assert env.registry.continue_as_new_suggested_after == s.history_warn_events == 10_240


def test_min_insync_replicas_follow_the_replication_factor() -> None:
    """Created topics and changelogs are written with min.insync.replicas: one less than the
    replication factor unless set (2 of 3), never more than it."""
    assert Settings.from_env({}).topic_config["min.insync.replicas"] == "1"
    assert Settings.from_env({"AION_REPLICATION_FACTOR": "3"}).min_insync == 2
    assert Settings.from_env({"AION_REPLICATION_FACTOR": "5", "AION_MIN_INSYNC_REPLICAS": "3"}).min_insync == 3
    with pytest.raises(SettingsError, match=r"min_insync_replicas .*more than the replication factor"):
        Settings.from_env({"AION_REPLICATION_FACTOR": "1", "AION_MIN_INSYNC_REPLICAS": "2"})
