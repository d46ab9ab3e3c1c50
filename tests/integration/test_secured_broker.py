"""Aion against a secured Kafka: SASL_SSL with SCRAM-SHA-256, a self-signed CA, and
``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false`` (``kafka-local start
--secure``, started and stopped here on free ports, beside the session's plain broker).

Two tenants, each a principal made by ``kafka-local principal NAME PREFIX`` that holds only the
prefixed ACLs of its own topic prefix:

- tenant A runs a workflow with an activity, a timer and a signal through an engine worker and an
  activity worker (subprocesses), the client, the CLI, ``EventConsumer`` and ``aion rebuild``,
  all from the one set of ``AION_*`` settings;
- tenant A is refused everything of tenant B (describe, create, write, read, join, transactional
  id), each with the one-line error the user sees, and nothing of B's changes;
- a wrong password, or no trust in the broker's CA, fails in about a second with one line;
- the password appears in no log, no error and no CLI output.

Skipped only when Java is not installed (the broker needs it); everything else the secured broker
needs (openssl, javac for the ACL helper, Maven for the jars) is a failure when missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from aion.client import Client, EventConsumer, KafkaAuthenticationError, KafkaAuthorizationError, KafkaTLSError
from aion.engine.settings import Settings
from aion.engine.topics import TopicAuthorizationError, TopicNames, ensure_topics, validate_topics
from aion.testing.ports import free_ports

from _procs import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "docker" / "kafka-local" / "kafka-local"
PARTITIONS = 3
#: librdkafka's lines of the raw clients made here go to logging (captured), not stderr.
KAFKA_LOG = logging.getLogger("tests.kafka")


@pytest.fixture(autouse=True)
def _integration_broker() -> None:
    """This module brings its own (secured) broker: it does not need the session's plain one."""
    return None


# ------------------------------------------------------------------ the secured broker


@dataclass
class SecureBroker:
    bootstrap: str
    data: Path
    env: dict[str, str]  # environment of kafka-local commands for this broker

    @property
    def cafile(self) -> str:
        return str(self.data / "tls" / "ca.pem")

    def kafka_local(self, *args: str, password: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if password is not None:
            env["KAFKA_LOCAL_PRINCIPAL_PASSWORD"] = password
        return subprocess.run([str(KAFKA_LOCAL), *args, "--secure"], env=env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if os.environ.get("AION_SKIP_INTEGRATION") == "1":
        pytest.skip("AION_SKIP_INTEGRATION=1: integration tests skipped on request")
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: the secured broker (docker/kafka-local/kafka-local start --secure) "
                    "needs a Java 17+ runtime")
    data = tmp_path_factory.mktemp("kafka-secure")
    port = free_ports(2)
    controller = port + 1
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AION_", "KAFKA_LOCAL_"))}
    env.update(KAFKA_LOCAL_SECURE_PORT=str(port), KAFKA_LOCAL_SECURE_CONTROLLER_PORT=str(controller),
               KAFKA_LOCAL_SECURE_DIR=str(data))
    broker = SecureBroker(f"127.0.0.1:{port}", data, env)
    try:
        started = time.monotonic()
        out = broker.kafka_local("start")
        assert out.returncode == 0, f"kafka-local start --secure failed:\n{out.stdout}{out.stderr}"
        print(f"secured broker on {broker.bootstrap} started in {time.monotonic() - started:.1f}s")
        yield broker
    finally:
        # Also after a failed start: a broker that came up but never answered is stopped too.
        stop = broker.kafka_local("stop", timeout=120)
        if stop.returncode != 0:
            print(f"kafka-local stop --secure: {stop.stdout}{stop.stderr}")
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class Tenant:
    name: str
    password: str
    settings: Settings


def _tenant(broker: SecureBroker, tag: str) -> Tenant:
    name = f"tenant-{tag}-{uuid.uuid4().hex[:6]}"
    prefix = f"s{tag}{uuid.uuid4().hex[:6]}"
    password = uuid.uuid4().hex
    out = broker.kafka_local("principal", name, prefix, password=password, timeout=180)
    assert out.returncode == 0, f"kafka-local principal failed:\n{out.stdout}{out.stderr}"
    assert password not in out.stdout + out.stderr  # the password stays in its file
    env_file = broker.data / "principals" / f"{name}.env"
    assert env_file.stat().st_mode & 0o077 == 0, "the principal's settings file must be private (0600)"
    values = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            values[key] = value.strip("'")
    assert values["AION_SASL_PASSWORD"] == password and values["AION_TOPIC_PREFIX"] == prefix
    settings = Settings.from_env({**values, "AION_PARTITIONS": str(PARTITIONS)})
    return Tenant(name, password, settings)


@pytest.fixture(scope="module")
def tenants(secure_broker: SecureBroker) -> tuple[Tenant, Tenant]:
    a, b = _tenant(secure_broker, "a"), _tenant(secure_broker, "b")
    ensure_topics(b.settings)  # B's deployment exists: A must not see nor touch it
    return a, b


def _aion(settings: Settings, *args: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AION_")}
    e.update(settings.connection_env(), AION_TOPIC_PREFIX=settings.topic_prefix,
             AION_PARTITIONS=str(settings.partitions), AION_CONNECT_TIMEOUT="10")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "aion.cli", *args], env=e, capture_output=True, text=True,
                          timeout=timeout)


def _ends(settings: Settings) -> dict[str, dict[int, int]]:
    """End offset of every partition of the deployment's topics, read as ``settings``' principal."""
    names = TopicNames(settings.topic_prefix)
    c = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.probe", "logger": KAFKA_LOG})
    try:
        out = {}
        for topic in names.all():
            out[topic] = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                          for p in range(1 if topic == names.deployments else settings.partitions)}
        return out
    finally:
        c.close()


# ------------------------------------------------------------------ the broker itself


def test_the_principal_holds_only_its_prefixes_acls(secure_broker: SecureBroker, tenants) -> None:  # type: ignore[no-untyped-def]
    """What ``kafka-local principal`` granted, as the broker's authorizer lists it (asked as the
    super user admin; ``kafka-local acls NAME`` prints the same lines)."""
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType)

    a, _ = tenants
    admin_settings = a.settings.replace(
        sasl_username="admin", sasl_password=(secure_broker.data / "secrets" / "admin.password").read_text().strip())
    admin = AdminClient(admin_settings.confluent_config())
    found = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{a.name}", None, AclOperation.ANY,
        AclPermissionType.ANY), request_timeout=20).result()
    acls = sorted(f"{b.principal} {b.permission_type.name} {b.operation.name} {b.restype.name}"
                  f"({b.resource_pattern_type.name}) {b.name}" for b in found)
    p = a.settings.topic_prefix
    expected = sorted(
        f"User:{a.name} ALLOW {op} {kind}(PREFIXED) {p}{sep}"
        for sep in (".", "-")
        for kind, ops in (("TOPIC", ("CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE", "DELETE")),
                          ("GROUP", ("READ", "DESCRIBE")), ("TRANSACTIONAL_ID", ("WRITE", "DESCRIBE")))
        for op in ops)
    assert acls == expected  # prefixed only: nothing literal, no wildcard, nothing on the cluster


# ------------------------------------------------------------------ least privilege, working


async def test_a_workflow_runs_end_to_end_with_only_its_prefixes_acls(secure_broker, tenants, tmp_path):  # type: ignore[no-untyped-def]
    a, _ = tenants
    s = a.settings
    out = _aion(s, "topics", "create")
    assert out.returncode == 0, out.stdout + out.stderr
    cluster = Cluster(s, tmp_path)
    cluster.env.update(s.connection_env())  # the workers connect as tenant A
    try:
        cluster.engine("engine")
        cluster.activities()
        client = await Client.connect(settings=s, rpc_timeout=90.0)  # the engine may still be starting
        try:
            hello = await client.start_workflow("Hello", "secure", id="sec-hello")      # an activity
            sleeper = await client.start_workflow("Sleeper", 0.5, id="sec-sleeper")    # a timer
            approval = await client.start_workflow("Approval", 1, id="sec-approval")   # a signal
            await approval.signal("decide", "yes")
            try:
                assert await hello.result(timeout=90) == "Hello, secure!"
                assert await sleeper.result(timeout=60) == "rested"
                assert await approval.result(timeout=60) == ["yes"]
            except Exception:
                print(cluster.logs())
                raise
            assert [e.type for e in await hello.history()] == [
                "WorkflowStarted", "ActivityScheduled", "ActivityStarted", "ActivityCompleted", "WorkflowCompleted"]
        finally:
            await client.close()

        # EventConsumer in a consumer group under the prefix.
        seen: set[str] = set()
        with EventConsumer(f"{s.topic_prefix}.projection", settings=s, event_types=["WorkflowCompleted"],
                           from_beginning=True) as events:
            deadline = time.monotonic() + 30
            while len(seen) < 3 and time.monotonic() < deadline:
                seen.update(rec.workflow_id for rec in events.poll(1.0))
        assert seen == {"sec-hello", "sec-sleeper", "sec-approval"}

        # The CLI, with the same settings in its environment.
        out = _aion(s, "workflow", "describe", "sec-approval")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "COMPLETED" in out.stdout

        # aion rebuild of the stopped engine worker's tables, from the events topic.
        cluster.stop()
        out = _aion(s, "rebuild", "--data-dir", str(tmp_path / "engine"), "--no-swap", timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "digests match" in out.stdout, out.stdout

        # The password is in no log and no output.
        for log in tmp_path.glob("*.log"):
            assert a.password not in log.read_text(errors="replace"), f"{log.name} shows the password"
        assert a.password not in out.stdout + out.stderr
    finally:
        cluster.stop()


# ------------------------------------------------------------------ least privilege, refusing


async def test_a_tenant_is_refused_everything_of_another_tenant(tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    before = _ends(b.settings)
    # Tenant A's principal, pointed at tenant B's prefix.
    a_on_b = a.settings.replace(topic_prefix=b.settings.topic_prefix)
    names = TopicNames(b.settings.topic_prefix)
    refused = "not authorized by the cluster's ACLs"

    # The client: one line, at connect.
    with pytest.raises(KafkaAuthorizationError) as info:
        await Client.connect(settings=a_on_b)
    assert f"may not describe topic '{names.events}'" in str(info.value) and refused in str(info.value)
    assert "\n" not in str(info.value) and a.password not in str(info.value)

    # The CLI: exit code 7 and one line.
    out = _aion(a_on_b, "workflow", "describe", "anything")
    assert out.returncode == 7, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("aion: Kafka at ") and refused in out.stderr

    # Topics: B's are invisible (validate), and A may not create any under B's prefix.
    with pytest.raises(TopicAuthorizationError, match=f"may not describe topic '{names.commands}'"):
        validate_topics(a_on_b, timeout=10)
    with pytest.raises(TopicAuthorizationError, match=f"may not create topic '{b.settings.topic_prefix}\\."):
        ensure_topics(a_on_b, task_queues=["extra"], timeout=10)
    out = _aion(a_on_b, "topics", "create", "--task-queue", "extra")
    assert out.returncode == 7 and "may not create topic" in out.stderr, out.stdout + out.stderr

    # Reading B's events.
    with pytest.raises(KafkaAuthorizationError, match=f"may not describe topic '{names.events}'"):
        EventConsumer(None, settings=a_on_b, from_beginning=True)
    # Joining a consumer group of B's (on A's own events topic).
    with EventConsumer(f"{b.settings.topic_prefix}.projection", settings=a.settings) as events:
        with pytest.raises(KafkaAuthorizationError, match="may not join consumer group"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                events.poll(0.5)

    # Writing B's commands topic (a raw producer: the broker's refusal as delivered).
    errors: list[KafkaError] = []
    p = Producer({**a.settings.confluent_config(), "logger": KAFKA_LOG})
    p.produce(names.commands, b"not yours", key=b"wf", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    del p

    # Fencing B's engine: B's transactional ids are not A's.
    t = Producer({**a.settings.confluent_config(), "transactional.id": f"{b.settings.topic_prefix}-engine-p0",
                  "logger": KAFKA_LOG})
    try:
        t.init_transactions(20)
        raise AssertionError("init_transactions with another tenant's transactional id succeeded")
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, exc
    del t

    # Nothing of B's changed.
    assert _ends(b.settings) == before


async def test_wrong_password_or_untrusted_broker_fails_fast_with_one_line(tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    wrong = a.settings.replace(sasl_password="not-" + a.password)
    untrusted = a.settings.replace(ssl_cafile=None)  # the system's CAs do not know kafka-local's

    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as info:
        await Client.connect(settings=wrong)
    assert time.monotonic() - started < 5
    assert f"refused the login of user '{a.name}' (SCRAM-SHA-256 over SASL_SSL)" in str(info.value)
    assert a.password not in str(info.value)

    started = time.monotonic()
    with pytest.raises(KafkaTLSError, match="the broker's certificate is not trusted"):
        await Client.connect(settings=untrusted)
    assert time.monotonic() - started < 5

    cases: list[tuple[Settings, str]] = [(wrong, "refused the login"), (untrusted, "certificate is not trusted")]
    for settings, expected in cases:
        for args in (("workflow", "describe", "x"), ("worker", "--workflows", "engine_workflows")):
            # What starting the command costs on this machine now (more while other tests run).
            started = time.monotonic()
            assert _aion(settings, "--version").returncode == 0
            startup = time.monotonic() - started
            started = time.monotonic()
            out = _aion(settings, *args, env={"PYTHONPATH": str(Path(__file__).parent)})
            took = time.monotonic() - started
            assert out.returncode == 7, (args, out.stdout + out.stderr)
            assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
            assert a.password not in out.stdout + out.stderr
            # Not the 10 s metadata timeout: at most 6 s more than starting the command.
            assert took - startup < 6, f"{args} took {took:.1f}s ({startup:.1f}s to start the command)"
