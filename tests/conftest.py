"""Shared fixtures: one real Kafka broker per test session, and per-test topic names.

Where the broker comes from (first that applies):

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: that cluster (``.ci/run`` sets it after starting kafka-local);
2. a Docker engine answers: a single-node KRaft broker in a container started with testcontainers
   (image ``$AION_TEST_KAFKA_IMAGE``, default ``apache/kafka:4.1.1``, the image of
   docker/compose.yml; where no image registry is reachable, ``aion-local/kafka:4.1.1`` from
   docker/build-images.sh). When the image cannot be had (not present, cannot be pulled) the
   session falls back to 3. and says so in its summary line, unless ``AION_TEST_BROKER=docker``;
3. otherwise the local launcher ``docker/kafka-local/kafka-local`` (Java 17 + Maven, no Docker):
   reused when already running, else started here and stopped at the end of the session.

``AION_TEST_BROKER=env|docker|local`` forces one of them. When no broker can be had the
integration tests fail with instructions; ``AION_SKIP_INTEGRATION=1`` skips them instead (for a
laptop without Java). Set ``AION_KEEP_TOPICS=1`` to keep each test's topics for inspection.

The container is a plain testcontainers ``DockerContainer``, configured through the apache/kafka
image's ``KAFKA_*`` variables, not testcontainers' ``KafkaContainer``: that class runs Confluent's
start scripts (/etc/confluent/docker/...) and takes KRaft only from image tags of Confluent
Platform 7+, so it starts neither apache/kafka nor the locally built image. The broker's
advertised address is the host port published for it, chosen free before the start. The session
removes its container itself when it ends; where testcontainers' reaper image (ryuk) cannot be
pulled either, set ``TESTCONTAINERS_RYUK_DISABLED=true`` (docker/prove.sh does). Containers carry
the label ``aion.test-broker``, so that leftovers of a killed run can be found.

In parallel (``pytest -n N``, pytest-xdist) each worker process is a session of its own: the
workers share one kafka-local broker (the first to need it starts it under a file lock, and the
controlling process stops it when the whole run ends, not the worker that started it, which may
finish early); with Docker each worker starts a container of its own.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from aion.engine.settings import Settings

REPO = Path(__file__).resolve().parents[1]
KAFKA_LOCAL = REPO / "docker" / "kafka-local" / "kafka-local"
DEFAULT_DOCKER_IMAGE = "apache/kafka:4.1.1"

_HOW_TO_GET_A_BROKER = f"""\
Integration tests need a Kafka broker. Any one of:
  * start the local broker (Java 17 + Maven, no Docker): {KAFKA_LOCAL.relative_to(REPO)} start
    then run the tests again (or: export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092);
  * point the tests at a running cluster: export KAFKA_BOOTSTRAP_SERVERS=host:port;
  * run a Docker engine (the tests then start a Kafka container by themselves);
  * or skip them explicitly: export AION_SKIP_INTEGRATION=1"""

_BROKER_KEY = pytest.StashKey[str]()      # what the summary line says
_BOOTSTRAP_KEY = pytest.StashKey[str]()   # host:port, once a broker was had

#: A folder of the whole run, shared by the controlling process and its xdist workers (they
#: inherit the environment): the lock around the kafka-local start, and the note that this run
#: started it (then the controlling process stops it at the very end).
_RUN_DIR_ENV = "AION_TEST_RUN_DIR"
_STARTED_NOTE = "kafka-local-started-by-this-run"
_OWN_RUN_DIR_KEY = pytest.StashKey[str]()  # set in the process that made the run's folder


# ------------------------------------------------------------------ broker discovery


def _answers_metadata(bootstrap: str, timeout: float = 10.0) -> str | None:
    """None when the cluster at ``bootstrap`` answers a metadata request, else the error."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet_logger()})
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException: transport failure, timeout
        return str(exc)
    return None if md.brokers else "the cluster lists no brokers"


def _quiet_logger():  # type: ignore[no-untyped-def]
    import logging

    return logging.getLogger("tests.kafka")


def _docker_answers(timeout: float = 2.0) -> bool:
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no docker package, no socket, daemon down, timeout
        return False


#: The broker settings the engine relies on, as in docker/kafka-local and docker/compose.yml
#: (apache/kafka drops its own defaults as soon as any KAFKA_* variable is given: all are here).
_CONTAINER_BROKER_ENV = {
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
    "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
    "KAFKA_MIN_INSYNC_REPLICAS": "1",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_NUM_PARTITIONS": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_LOG_CLEANER_ENABLE": "true",
    "KAFKA_LOG_CLEANER_BACKOFF_MS": "500",
}
_CONTAINER_LABEL = "aion.test-broker"


class _ImageUnavailable(Exception):
    """The Docker engine answers but has not got the broker image and cannot pull it."""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _docker_host_ip() -> str:
    """Where the host reaches a published port: the engine's host for a tcp:// DOCKER_HOST."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("DOCKER_HOST", ""))
    return url.hostname if url.scheme in ("tcp", "http", "https") and url.hostname else "127.0.0.1"


def _ensure_image(image: str) -> None:
    import docker
    from docker.errors import DockerException, ImageNotFound

    client = docker.from_env()
    try:
        client.images.get(image)
    except ImageNotFound:
        try:
            client.images.pull(image)
        except DockerException as exc:
            raise _ImageUnavailable(f"image {image} is not present and cannot be pulled ({exc}); "
                                    "without an image registry build it with docker/build-images.sh "
                                    "and set AION_TEST_KAFKA_IMAGE=aion-local/kafka:4.1.1") from None
    finally:
        client.close()


def _start_container(timeout: float = 120.0):  # type: ignore[no-untyped-def]
    """A started broker container whose published port answers metadata requests."""
    import time

    from testcontainers.core.container import DockerContainer

    image = os.environ.get("AION_TEST_KAFKA_IMAGE", DEFAULT_DOCKER_IMAGE)
    _ensure_image(image)
    host = _docker_host_ip()
    for attempt in range(3):  # a port found free can be taken before the container binds it
        port = _free_port()
        container = DockerContainer(image).with_bind_ports(port, port)
        container.with_kwargs(labels={_CONTAINER_LABEL: str(os.getpid())})
        # The client listener on the same port number inside and out, so the address the broker
        # advertises is the one the host reaches.
        for key, value in {**_CONTAINER_BROKER_ENV,
                           "CLUSTER_ID": _cluster_id(),
                           "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
                           "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}"}.items():
            container.with_env(key, value)
        try:
            container.start()
        except Exception as exc:
            container.stop()
            if "port is already allocated" in str(exc) or "address already in use" in str(exc):
                continue
            raise
        break
    else:
        raise RuntimeError("no free host port could be published for the broker container")

    bootstrap = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    problem: str | None = "not asked yet"
    try:
        while problem is not None:
            container.reload()
            if container.status not in ("created", "running"):
                raise RuntimeError(f"the broker container exited ({container.status}):\n"
                                   f"{_container_log_tail(container)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker container did not answer metadata on {bootstrap} "
                                   f"within {timeout:.0f} s ({problem}):\n{_container_log_tail(container)}")
            problem = _answers_metadata(bootstrap, timeout=2.0)
            if problem is not None:
                time.sleep(0.5)
    except BaseException:
        container.stop()
        raise
    return container, bootstrap


def _container_log_tail(container, lines: int = 30) -> str:  # type: ignore[no-untyped-def]
    try:
        out, err = container.get_logs()
        return "\n".join((out + err).decode(errors="replace").splitlines()[-lines:])
    except Exception as exc:
        return f"(no logs: {exc})"


def _kafka_local(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAFKA_LOCAL), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """``host:port`` of a real Kafka broker for this session (see the module docstring)."""
    if os.environ.get("AION_SKIP_INTEGRATION") == "1":
        pytest.skip("AION_SKIP_INTEGRATION=1: integration tests skipped on request")

    forced = os.environ.get("AION_TEST_BROKER", "").strip().lower()
    env_bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if forced not in ("", "env", "docker", "local"):
        pytest.fail(f"AION_TEST_BROKER={forced!r}: use env, docker or local (or leave it unset)", pytrace=False)

    if env_bootstrap and forced in ("", "env"):
        problem = _answers_metadata(env_bootstrap)
        if problem:
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={env_bootstrap} does not answer metadata requests "
                        f"({problem}).\n{_HOW_TO_GET_A_BROKER}", pytrace=False)
        _had_broker(request.config, env_bootstrap, f"{env_bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
        yield env_bootstrap
        return
    if forced == "env":
        pytest.fail(f"AION_TEST_BROKER=env but KAFKA_BOOTSTRAP_SERVERS is not set.\n{_HOW_TO_GET_A_BROKER}",
                    pytrace=False)

    docker_note = ""
    if forced == "docker" or (forced == "" and _docker_answers()):
        container = None
        try:
            container, bootstrap = _start_container()
        except _ImageUnavailable as exc:
            if forced == "docker":
                pytest.fail(f"AION_TEST_BROKER=docker: {exc}", pytrace=False)
            docker_note = f"; Docker answered, but {exc}"
        except Exception as exc:
            pytest.fail(f"could not start a Kafka container ({type(exc).__name__}: {exc}).\n"
                        "(Where testcontainers' reaper image cannot be pulled: TESTCONTAINERS_RYUK_DISABLED=true.)\n"
                        f"{_HOW_TO_GET_A_BROKER}", pytrace=False)
        if container is not None:
            _had_broker(request.config, bootstrap, f"{bootstrap} (Docker container {container.image})")
            try:
                yield bootstrap
            finally:
                container.stop()
            return

    # The local launcher: reuse a running broker, or start one (stopped when the run ends, see
    # pytest_unconfigure). One worker at a time: the others wait, then find it running.
    port = os.environ.get("KAFKA_LOCAL_PORT", "9092")
    bootstrap = f"127.0.0.1:{port}"
    run_dir = Path(os.environ[_RUN_DIR_ENV])
    with open(run_dir / "kafka-local.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _kafka_local("status").returncode == 0:
            how = ("started for this run" if (run_dir / _STARTED_NOTE).exists() else "already running")
        else:
            started = _kafka_local("start")
            if started.returncode != 0:
                pytest.fail(f"{KAFKA_LOCAL.relative_to(REPO)} start failed (exit {started.returncode}):\n"
                            f"{started.stdout}{started.stderr}\n{_HOW_TO_GET_A_BROKER}", pytrace=False)
            (run_dir / _STARTED_NOTE).write_text(port)
            how = "started for this run"
    _had_broker(request.config, bootstrap, f"{bootstrap} (kafka-local, {how}{docker_note})")
    yield bootstrap


def _had_broker(config: pytest.Config, bootstrap: str, what: str) -> None:
    config.stash[_BROKER_KEY] = what
    config.stash[_BOOTSTRAP_KEY] = bootstrap
    run_dir = os.environ.get(_RUN_DIR_ENV)
    if run_dir:  # for the summary line of the controlling process (pytest -n)
        Path(run_dir, "broker").write_text(what)


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _is_xdist_worker(config) and _RUN_DIR_ENV not in os.environ:
        os.environ[_RUN_DIR_ENV] = tempfile.mkdtemp(prefix="aion-test-run-")
        config.stash[_OWN_RUN_DIR_KEY] = os.environ[_RUN_DIR_ENV]


def pytest_unconfigure(config: pytest.Config) -> None:
    """In the controlling process (or the only one), after every worker ended: stop the
    kafka-local broker this run started, and remove the run's folder."""
    run_dir = config.stash.get(_OWN_RUN_DIR_KEY, None)
    if run_dir is None:
        return
    if (Path(run_dir) / _STARTED_NOTE).exists():
        _kafka_local("stop")
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    os.environ.pop(_RUN_DIR_ENV, None)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    broker = config.stash.get(_BROKER_KEY, None)
    run_dir = config.stash.get(_OWN_RUN_DIR_KEY, None)
    if broker is None and run_dir and Path(run_dir, "broker").exists():  # had by an xdist worker
        broker = Path(run_dir, "broker").read_text()
    if broker:
        terminalreporter.write_line(f"kafka broker: {broker}")


# ------------------------------------------------------------------ per-test names and settings


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A topic prefix no other test uses; the test's topics are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    bootstrap = request.config.stash.get(_BOOTSTRAP_KEY, None)
    if bootstrap and os.environ.get("AION_KEEP_TOPICS") != "1":
        _delete_topics(bootstrap, prefix)


def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Best effort: keeps a long-lived local broker small (fast restarts)."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet_logger()})
        names = [t for t in admin.list_topics(timeout=10).topics
                 if t.startswith((f"{prefix}.", f"{prefix}-", f"{prefix}_"))]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=10).values():
                try:
                    fut.result()
                except Exception:
                    pass
    except Exception:
        pass


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings on the session broker with this test's own topics (4 partitions)."""
    return Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4,
                    data_dir=tmp_path)
