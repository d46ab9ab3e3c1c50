"""The broker is configured in four places: docker/kafka-local (the broker of CI and the demo), the
Kafka image that docker/build-images.sh builds (docker/images/kafka/server.properties), the
broker service of docker/compose.yml and the tests' Docker broker (tests/conftest.py). The Docker
ones run only where a Docker engine does (docker/prove.sh), so these checks keep them from
drifting apart between runs: every setting they share has the same value, they run the same
Kafka version, and the settings the engine relies on are in each of them."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"

#: Where and how a broker listens: different by design in each place.
PLACEMENT = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs",
             "listener.security.protocol.map", "inter.broker.listener.name", "controller.listener.names"}

#: What the engine relies on (topics never made by accident, groups form at once, compaction runs,
#: one replica of every internal topic).
RELIED_ON = {
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    "log.cleaner.enable": "true",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}


def _properties(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _env_to_key(name: str) -> str:
    """apache/kafka's naming (and docker/images/kafka/kafka-run's): KAFKA_LOG_DIRS -> log.dirs."""
    key = name.removeprefix("KAFKA_").lower()
    return key.replace("___", "-").replace("__", "\x01").replace("_", ".").replace("\x01", "_")


def kafka_local_config() -> dict[str, str]:
    """The single broker kafka-local starts by default: its settings' variables at their defaults
    (VAR="${KAFKA_LOCAL_...:-default}"); the lines left with variables are the placement."""
    script = (DOCKER / "kafka-local" / "kafka-local").read_text()
    body = re.search(r'cat > "\$CONFIG" <<EOF\n(.*?)\nEOF\n', script, re.S)
    assert body, "kafka-local's write_config heredoc not found"
    defaults = dict(re.findall(r'^([A-Z_]+)="\$\{KAFKA_LOCAL_[A-Z_]+:-([^}$"]*)\}"$', script, re.M))
    text = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), body.group(1))
    return _properties("\n".join(line for line in text.splitlines() if "$" not in line))


def image_config() -> dict[str, str]:
    return _properties((DOCKER / "images" / "kafka" / "server.properties").read_text())


def compose_kafka_env() -> dict[str, str]:
    text = (DOCKER / "compose.yml").read_text()
    service = re.search(r"\n  kafka:\n(.*?)\n  [a-z]+:\n", text, re.S)
    assert service, "the kafka service of compose.yml not found"
    env = dict(re.findall(r"^\s+(KAFKA_[A-Z_]+):\s*\"?([^\"#\n]*?)\"?\s*(?:#.*)?$", service.group(1), re.M))
    return {_env_to_key(k): v for k, v in env.items()}


def root_conftest():  # type: ignore[no-untyped-def]
    """tests/conftest.py as a module of its own (``import conftest`` may find another folder's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_aion_tests_root_conftest", REPO / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_env() -> dict[str, str]:
    return {_env_to_key(k): v for k, v in root_conftest()._CONTAINER_BROKER_ENV.items()}


def test_the_image_is_configured_like_kafka_local() -> None:
    local, image = kafka_local_config(), image_config()
    assert {k: v for k, v in image.items() if k not in PLACEMENT} == local


def test_compose_and_the_test_container_agree_with_kafka_local() -> None:
    local = kafka_local_config()
    for where, env in (("docker/compose.yml", compose_kafka_env()), ("tests/conftest.py", fixture_env())):
        differ = {k: (v, local[k]) for k, v in env.items() if k in local and local[k] != v}
        assert not differ, f"{where} differs from kafka-local (its value, kafka-local's): {differ}"
        missing = {k for k in RELIED_ON if k not in env}
        assert not missing, f"{where} leaves out settings the engine relies on: {sorted(missing)}"


def test_every_place_sets_what_the_engine_relies_on() -> None:
    for where, config in (("kafka-local", kafka_local_config()), ("the image", image_config())):
        assert {k: config.get(k) for k in RELIED_ON} == RELIED_ON, where


def test_one_kafka_version_everywhere() -> None:
    pom = (DOCKER / "kafka-local" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match
    version = match.group(1)
    assert root_conftest().DEFAULT_DOCKER_IMAGE == f"apache/kafka:{version}"
    assert f"${{AION_KAFKA_IMAGE:-apache/kafka:{version}}}" in (DOCKER / "compose.yml").read_text()
    assert f"aion-local/kafka:{version}" in (DOCKER / "build-images.sh").read_text()
