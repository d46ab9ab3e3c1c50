"""The one settings object of engine workers, activity workers, clients and the CLI.

Each setting is declared once below, with its environment variable, default and meaning
(``field(metadata=...)``); :meth:`Settings.from_env` reads them all, keyword overrides (CLI flags)
win over the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..exceptions import AionError
from ..model.limits import HISTORY_FAIL_BYTES, HISTORY_FAIL_EVENTS, HISTORY_WARN_BYTES, HISTORY_WARN_EVENTS

__all__ = ["Settings", "SettingsError"]

_MIB = 1024 * 1024
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: The SASL mechanisms both clients (librdkafka and Faust's aiokafka) take from these settings
#: alone (GSSAPI and OAUTHBEARER need more than a user name and a password).
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SettingsError(AionError, ValueError):
    """A setting has a value that cannot work; the message names the setting and its variable."""


def _setting(default: Any, env: str, doc: str, *, repr: bool = True) -> Any:
    return field(default=default, repr=repr, metadata={"env": env, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the Kafka cluster is, how topics are named and sized, and engine tuning.

    ``Settings()`` gives the defaults (a local broker on 127.0.0.1:9092);
    ``Settings.from_env()`` reads ``AION_*`` variables; ``settings.replace(...)`` copies with changes.
    """

    bootstrap_servers: str = _setting(
        "127.0.0.1:9092", "AION_BOOTSTRAP_SERVERS", "Kafka bootstrap servers, comma separated host:port.")
    topic_prefix: str = _setting(
        "aion", "AION_TOPIC_PREFIX",
        "Prefix of every topic (<prefix>.commands, <prefix>.events, ...) and of consumer group ids; "
        "several deployments can share a cluster with different prefixes.")
    partitions: int = _setting(
        12, "AION_PARTITIONS",
        "Partitions of the topics this deployment creates. Commands and events are co-partitioned, so "
        "this must equal the partition count of existing topics.")
    replication_factor: int = _setting(
        1, "AION_REPLICATION_FACTOR", "Replication factor of created topics (1 for a single local broker).")
    min_insync_replicas: int = _setting(
        0, "AION_MIN_INSYNC_REPLICAS",
        "min.insync.replicas of the topics and table changelogs this deployment creates: how many replicas "
        "must have a write before it is acknowledged (acks=all). 0: one less than the replication factor, "
        "at least 1 — 2 of 3, so one broker may be down and nothing acknowledged is lost.")
    standby_replicas: int = _setting(
        0, "AION_STANDBY_REPLICAS",
        "Faust standby replicas of the engine's tables: another engine worker keeps a copy of each "
        "partition's tables up to date, so the one that takes over after a crash reads only the last "
        "moments of the changelogs instead of all of them. Costs each standby's disk and the CPU to "
        "follow the events topic (on 2 cores with 2 engines: takeover 8.3 -> 6.5 s, throughput halved); "
        "no effect with a single engine worker.")
    data_dir: Path = _setting(
        Path("./.data"), "AION_DATA_DIR", "Folder of an engine worker's RocksDB tables (one per worker).")
    cache_size: int = _setting(
        10_000, "AION_CACHE_SIZE", "Workflow instances an engine worker keeps resident in memory.")
    batch_size: int = _setting(
        500, "AION_BATCH_SIZE", "Most commands an engine worker handles in one group commit.")
    timer_batch: int = _setting(
        1_000, "AION_TIMER_BATCH", "Most due timers an engine worker fires per tick.")
    timer_fire: str = _setting(
        "inline", "AION_TIMER_FIRE",
        "How due timers reach their workflows. inline: the partition's next batch takes them (its "
        "TimerFired and the deletion of the timer's row in the batch's one transaction); topic: the "
        "timer wheel sends FireTimer commands through the commands topic in a transaction of its own "
        "(the way before 2026-12-05; a batch that fails with fires in it uses it for a while too).")
    history_warn_events: int = _setting(
        HISTORY_WARN_EVENTS, "AION_HISTORY_WARN_EVENTS",
        "Events in one run after which workflow.info().continue_as_new_suggested turns true.")
    history_fail_events: int = _setting(
        HISTORY_FAIL_EVENTS, "AION_HISTORY_FAIL_EVENTS", "Events in one run after which the run is terminated.")
    history_warn_bytes: int = _setting(
        HISTORY_WARN_BYTES, "AION_HISTORY_WARN_BYTES", "Payload bytes in one run after which continue-as-new is suggested.")
    history_fail_bytes: int = _setting(
        HISTORY_FAIL_BYTES, "AION_HISTORY_FAIL_BYTES", "Payload bytes in one run after which the run is terminated.")
    session_timeout: float = _setting(
        6.0, "AION_SESSION_TIMEOUT",
        "Seconds without heartbeats after which Kafka gives a dead worker's partitions to the others "
        "(engine and activity workers): most of the hand-over time after a kill -9. 6 is the lowest "
        "a default broker accepts (group.min.session.timeout.ms); a worker stalled longer than this "
        "(GC, swap, an overloaded host, a long pause of the broker) is taken for dead and its "
        "partitions move, so raise it on busy or far-away clusters.")
    heartbeat_interval: float = _setting(
        0.25, "AION_HEARTBEAT_INTERVAL",
        "Seconds between a worker's heartbeats to the group coordinator. A worker learns of a "
        "rebalance on its next heartbeat, and the group waits for the last one to rejoin, so this "
        "bounds how long a hand-over waits after a worker left (SIGTERM) or joined, or a dead "
        "worker's session expired; at most a third of the session timeout.")
    retention_ms: int = _setting(
        7 * 24 * 3600 * 1000, "AION_RETENTION_MS",
        "Milliseconds a closed workflow's history is kept before the engine retires it (tombstones on "
        "the events topic, rows removed from its tables); 0 keeps histories forever.")
    metrics_port: int = _setting(
        0, "AION_METRICS_PORT",
        "HTTP port of an engine or activity worker's operations endpoint: Prometheus metrics at "
        "/metrics, health at /healthz and /readyz (`aion worker` / `aion activity-worker` "
        "--metrics-port). 0 (default) serves nothing.")
    metrics_host: str = _setting(
        "0.0.0.0", "AION_METRICS_HOST",
        "Address the operations endpoint listens on (0.0.0.0: every interface, for a scraper on "
        "another host; 127.0.0.1: this host only). It serves counts and partition numbers, no "
        "workflow data, and has no authentication.")
    tracing: str | None = _setting(
        None, "AION_TRACING",
        "OpenTelemetry traces of `aion worker` and `aion activity-worker` (and the client in the same "
        "process): otlp (OTLP over HTTP, endpoint from OTEL_EXPORTER_OTLP_ENDPOINT), console (stderr) or "
        "file:PATH (JSON lines); unset: off. Needs the otel extra: pip install 'aion-streams[otel]'.")
    max_payload_bytes: int = _setting(
        2 * _MIB, "AION_MAX_PAYLOAD_BYTES",
        "Largest encoded payload (workflow input, activity result, ...) accepted; bigger ones are "
        "refused with an error. Topics are created to hold records of this size.")
    reply_topics: str | None = _setting(
        None, "AION_REPLY_TOPICS",
        "Topics besides <prefix>.replies that a command's reply_to may name (comma separated). The engine "
        "answers only there, at a partition that exists: a command naming anything else is refused and "
        "dead-lettered with the reason, so no sender can make the engine write into another topic.")
    schema_registry_url: str | None = _setting(
        None, "AION_SCHEMA_REGISTRY_URL",
        "Confluent Schema Registry URL; unset means the Avro single-object encoding (no registry).")
    security_protocol: str | None = _setting(
        None, "AION_SECURITY_PROTOCOL",
        "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL; the same for every process (engine and "
        "activity workers, clients, the CLI).")
    sasl_mechanism: str | None = _setting(
        None, "AION_SASL_MECHANISM",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with a SASL protocol.")
    sasl_username: str | None = _setting(
        None, "AION_SASL_USERNAME", "SASL user name (the principal User:<name> of the cluster's ACLs).")
    sasl_password: str | None = _setting(
        None, "AION_SASL_PASSWORD", "SASL password (never logged nor shown).", repr=False)
    ssl_cafile: str | None = _setting(
        None, "AION_SSL_CAFILE",
        "CA bundle (PEM) to verify the brokers' certificates (with SSL or SASL_SSL); unset: the system's CAs.")

    def __post_init__(self) -> None:
        # Accept str for data_dir (CLI, env) but always hold a Path.
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.security_protocol is not None:
            object.__setattr__(self, "security_protocol", self.security_protocol.upper())
        if self.sasl_mechanism is not None:
            object.__setattr__(self, "sasl_mechanism", self.sasl_mechanism.upper())
        self._validate()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
        """Defaults, then ``AION_*`` variables of ``environ`` (``os.environ``), then ``overrides``.

        Empty variables count as unset. Raises :class:`SettingsError` for a value that does not
        parse, and ``TypeError`` for an override that is not a setting.
        """
        env = os.environ if environ is None else environ
        _check_names(overrides)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"], "")
            if raw.strip() != "":
                values[f.name] = _parse(f, raw.strip())
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated like a new object)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """``(field, environment variable, default, meaning)`` of every setting, for help texts."""
        return [(f.name, f.metadata["env"], f.default, f.metadata["doc"]) for f in dataclasses.fields(cls)]

    # ------------------------------------------------------------------ derived values

    @property
    def max_record_bytes(self) -> int:
        """Size limit for one Kafka record: the largest payload plus room for the envelope.

        Topics are created with ``max.message.bytes`` of this, and producers should allow it
        (confluent-kafka ``message.max.bytes``, aiokafka ``max_request_size``).
        """
        return self.max_payload_bytes + _MIB

    @property
    def min_insync(self) -> int:
        """The ``min.insync.replicas`` of created topics: ``min_insync_replicas``, or with 0 one
        less than the replication factor (at least 1)."""
        return self.min_insync_replicas or max(1, self.replication_factor - 1)

    @property
    def topic_config(self) -> dict[str, str]:
        """The topic settings every topic and changelog this deployment creates gets."""
        return {"max.message.bytes": str(self.max_record_bytes), "min.insync.replicas": str(self.min_insync)}

    @property
    def reply_topic_list(self) -> tuple[str, ...]:
        """The topics of ``reply_topics`` (``AION_REPLY_TOPICS``), as a tuple."""
        return tuple(t.strip() for t in (self.reply_topics or "").split(",") if t.strip())

    def confluent_config(self) -> dict[str, Any]:
        """Connection settings for confluent-kafka (Producer, Consumer, AdminClient)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            # librdkafka paces a new client's connections by half this (50 ms by default), and
            # it drops its bootstrap connection once it learns the brokers: every new client's
            # first request waited ~50 ms for its second connection (a takeover opens a
            # transactional producer per partition and a reader: issue 17). A broker that is
            # down is still retried with an exponential back-off up to reconnect.backoff.max.ms.
            "reconnect.backoff.ms": 10,
        }
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        return conf

    def connection_env(self) -> dict[str, str]:
        """The ``AION_*`` variables that make a child process connect as this one does: the
        bootstrap servers and every security setting that is set (password included: for a
        child's environment, never for a log)."""
        names = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
                 "ssl_cafile")
        return {_ENV[n]: str(getattr(self, n)) for n in names if getattr(self, n) is not None}

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        def bad(name: str, why: str) -> SettingsError:
            env = _ENV[name]
            return SettingsError(f"setting {name} ({env}) = {getattr(self, name)!r} {why}")

        if not self.bootstrap_servers.strip():
            raise bad("bootstrap_servers", "is empty: give host:port of at least one broker, e.g. 127.0.0.1:9092")
        if not _TOPIC_CHARS.match(self.topic_prefix) or len(self.topic_prefix) > 180:
            raise bad("topic_prefix", "is not a valid topic prefix: use 1-180 characters of letters, "
                                      "digits, '.', '_' and '-'")
        for name, low in (("partitions", 1), ("replication_factor", 1), ("min_insync_replicas", 0),
                          ("standby_replicas", 0), ("cache_size", 1), ("batch_size", 1), ("timer_batch", 1), ("max_payload_bytes", 1),
                          ("retention_ms", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"must be a whole number >= {low}")
        if self.timer_fire not in ("inline", "topic"):
            raise bad("timer_fire", "is neither inline nor topic")
        if self.min_insync_replicas > self.replication_factor:
            raise bad("min_insync_replicas", f"is more than the replication factor (AION_REPLICATION_FACTOR) = "
                                             f"{self.replication_factor}: no write could ever be acknowledged")
        for name in ("session_timeout", "heartbeat_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise bad(name, "must be a number of seconds above 0 (and at most 3600)")
        if self.heartbeat_interval * 3 > self.session_timeout:
            raise bad("heartbeat_interval", f"is more than a third of session_timeout (AION_SESSION_TIMEOUT) = "
                                            f"{self.session_timeout:g}: a live worker could miss its session; "
                                            f"lower it or raise the session timeout")
        if isinstance(self.metrics_port, bool) or not isinstance(self.metrics_port, int) \
                or not 0 <= self.metrics_port <= 65535:
            raise bad("metrics_port", "must be a port number from 1 to 65535, or 0 for none")
        if not self.metrics_host.strip():
            raise bad("metrics_host", "is empty: give an address to listen on, e.g. 0.0.0.0 or 127.0.0.1")
        if self.security_protocol is not None and self.security_protocol not in _SECURITY_PROTOCOLS:
            raise bad("security_protocol", f"is not one of {', '.join(_SECURITY_PROTOCOLS)}")
        for topic in self.reply_topic_list:
            if not _TOPIC_CHARS.match(topic):
                raise bad("reply_topics", f"names {topic!r}, not a topic name (letters, digits, '.', '_', '-')")
        sasl = (self.security_protocol or "").startswith("SASL_")
        for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if getattr(self, name) and not sasl:
                # (bad() would show the value: never the password's)
                raise SettingsError(f"setting {name} ({_ENV[name]}) is set but security_protocol "
                                    "(AION_SECURITY_PROTOCOL) is not SASL_PLAINTEXT or SASL_SSL: set that too")
        if sasl:
            missing = [_ENV[n] for n in ("sasl_mechanism", "sasl_username", "sasl_password") if not getattr(self, n)]
            if missing:
                raise bad("security_protocol", f"needs {', '.join(missing)} as well (the SASL mechanism, user "
                                               "name and password)")
            if self.sasl_mechanism not in _SASL_MECHANISMS:
                raise bad("sasl_mechanism", f"is not one of {', '.join(_SASL_MECHANISMS)}")
        if self.ssl_cafile and "SSL" not in (self.security_protocol or ""):
            raise bad("ssl_cafile", "is set but security_protocol (AION_SECURITY_PROTOCOL) is not SSL or "
                                    "SASL_SSL: the connection would not use TLS")


_ENV: dict[str, str] = {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}


def _check_names(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(_ENV))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(_ENV)}")


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    env = f.metadata["env"]
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    parsers: dict[str, tuple[Callable[[str], Any], str]] = {
        "int": (int, "a whole number (e.g. 12)"),
        "float": (float, "a number (e.g. 0.005)"),
    }
    if kind in parsers:
        parse, what = parsers[kind]
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{env}={raw!r} is not {what}: fix or unset it") from None
    if kind == "Path":
        return Path(raw).expanduser()
    return raw
