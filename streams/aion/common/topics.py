"""Topic names, idempotent creation and validation with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from ..exceptions import AionError
from .access import AUTHORIZATION_CODES, AccessWatch, KafkaAuthorizationError, authorization_error, fetch_metadata
from .settings import Settings

__all__ = ["TopicNames", "TopicConfigError", "TopicAdminError", "TopicAuthorizationError", "ensure_topics",
           "validate_topics"]

_log = logging.getLogger(__name__)
_QUEUE_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_TOPIC_NAME = 249


class TopicConfigError(AionError):
    """The topics cannot be used as they are: missing, misconfigured, or not co-partitioned.

    The message says which topic, what is wrong and how to fix it.
    """


class TopicAdminError(TopicConfigError):
    """The topics could not be inspected or created (broker unreachable, not authorized, ...)."""


class TopicAuthorizationError(TopicAdminError, KafkaAuthorizationError):
    """The cluster's ACLs do not allow this principal to create or inspect the topics."""


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The topics of one deployment (``prefix``, ``aion`` by default)."""

    prefix: str = "aion"

    @property
    def commands(self) -> str:
        """Commands to workflows; key = workflow id."""
        return f"{self.prefix}.commands"

    @property
    def events(self) -> str:
        """Workflow histories; key = {workflow_id, seq}; compacted; co-partitioned with commands."""
        return f"{self.prefix}.events"

    @property
    def replies(self) -> str:
        """Replies to clients (key = command id); a client reads one partition of it."""
        return f"{self.prefix}.replies"

    @property
    def dlq(self) -> str:
        """Records the engine could not handle, with the reason."""
        return f"{self.prefix}.dlq"

    @property
    def deployments(self) -> str:
        """Deployed builds (key = build id) and routes (key = route/<type>); compacted, one partition."""
        return f"{self.prefix}.deployments"

    def activity_tasks(self, queue: str) -> str:
        """Activity tasks of one task queue."""
        if not queue or not _QUEUE_CHARS.match(queue):
            raise ValueError(
                f"task queue {queue!r} cannot be part of a topic name: use letters, digits, '.', '_' and '-'")
        return f"{self.prefix}.activity-tasks.{queue}"

    def all(self, task_queues: Iterable[str] = ("default",)) -> list[str]:
        """Every topic of the deployment with these task queues."""
        return [self.commands, self.events, self.replies, self.dlq, self.deployments,
                *(self.activity_tasks(q) for q in task_queues)]


def _topic_configs(settings: Settings, names: TopicNames) -> dict[str, dict[str, str]]:
    limit = settings.topic_config
    return {
        names.commands: dict(limit),
        names.events: {**limit, "cleanup.policy": "compact"},
        names.replies: dict(limit),
        names.dlq: dict(limit),
        names.deployments: {**limit, "cleanup.policy": "compact"},
    }


def _admin(settings: Settings) -> AdminClient:
    # librdkafka's own log lines (connection refused, ...) go to Python logging, not stderr;
    # failures reach the caller as TopicAdminError with a readable message, a refused login or
    # TLS handshake as KafkaAccessError (the admin's watch, see _partition_counts).
    watch = AccessWatch(settings)
    admin = AdminClient({**settings.confluent_config(), "client.id": f"{settings.topic_prefix}.admin",
                         "logger": _log, "error_cb": watch})
    admin._aion_watch = watch  # type: ignore[attr-defined]
    return admin


def _unreachable(settings: Settings, exc: BaseException) -> TopicAdminError:
    return TopicAdminError(
        f"could not reach Kafka at {settings.bootstrap_servers} ({exc}). Is the broker running? "
        "Start one with `docker/kafka-local/kafka-local start`, or point AION_BOOTSTRAP_SERVERS "
        "(--bootstrap) at your cluster.")


def _partition_counts(admin: AdminClient, settings: Settings, timeout: float) -> dict[str, int]:
    try:
        md = fetch_metadata(admin, admin._aion_watch, timeout)
    except KafkaException as exc:
        raise _unreachable(settings, exc) from exc
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def partition_counts(settings: Settings, topics: Sequence[str], *, timeout: float = 10.0) -> dict[str, int]:
    """The partition count of each of ``topics`` that exists (one metadata call)."""
    admin = _admin(settings)
    counts = _partition_counts(admin, settings, timeout)
    return {t: counts[t] for t in topics if t in counts}


def ensure_topics(settings: Settings, task_queues: Sequence[str] = ("default",), *,
                  timeout: float = 30.0, extra: Mapping[str, dict[str, str]] | None = None) -> list[str]:
    """Create the deployment's topics that do not exist yet; return the names it created.
    ``extra``: more topics (name -> config) with ``settings.partitions`` partitions each (the
    engine's table changelogs).

    Idempotent and safe to run from several processes at once. Existing topics are left as they
    are (see :func:`validate_topics`). Raises :class:`TopicAdminError` when the broker cannot be
    reached or refuses a creation.
    """
    names = TopicNames(settings.topic_prefix)
    configs = {**_topic_configs(settings, names), **(extra or {})}
    wanted = [*names.all(task_queues), *(n for n in (extra or {}) if n not in names.all(task_queues))]
    for name in wanted:
        if len(name) > _MAX_TOPIC_NAME:
            raise TopicConfigError(f"topic name {name!r} is longer than Kafka's {_MAX_TOPIC_NAME} characters: "
                                   "use a shorter topic prefix or task queue name")
    admin = _admin(settings)
    existing = _partition_counts(admin, settings, timeout)
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return []
    default_config = settings.topic_config
    new = [NewTopic(n, num_partitions=1 if n == names.deployments else settings.partitions,
                    replication_factor=settings.replication_factor,
                    config=configs.get(n, default_config)) for n in missing]
    created: list[str] = []
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process won the race: fine
            if isinstance(err, KafkaError) and err.code() in AUTHORIZATION_CODES:
                raise TopicAuthorizationError(
                    str(authorization_error(settings, err, "create", name))) from None
            raise TopicAdminError(
                f"could not create topic {name!r} on {settings.bootstrap_servers}: {exc}. "
                f"Check the broker's log and that this client may create topics "
                f"(replication factor {settings.replication_factor} needs that many brokers; "
                f"AION_REPLICATION_FACTOR sets it).") from exc
    _wait_visible(admin, settings, missing, timeout)
    return created


def _wait_visible(admin: AdminClient, settings: Settings, topics: list[str], timeout: float) -> None:
    """Wait until every partition of the created topics is served by its leader.

    Metadata lists a new partition's leader a moment before that broker has created the
    partition: in between, ListOffsets (consumers' watermarks) answers NOT_LEADER_OR_FOLLOWER.
    So wait for metadata, then for ListOffsets to succeed on every partition.
    """
    deadline = time.monotonic() + timeout
    problem = "no metadata yet"
    while True:
        md = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        pending = [
            t for t in topics
            if t not in md.topics or md.topics[t].error is not None
            or any(p.leader < 0 for p in md.topics[t].partitions.values())
        ]
        if pending:
            problem = f"topics {pending} have no partition leaders in metadata"
        else:
            wanted = {TopicPartition(t, p): OffsetSpec.latest() for t in topics for p in md.topics[t].partitions}
            try:
                for fut in admin.list_offsets(wanted, request_timeout=max(1.0, deadline - time.monotonic())).values():
                    fut.result()
                return
            except KafkaException as exc:
                problem = f"partitions not served yet ({exc})"
        if time.monotonic() >= deadline:
            raise TopicAdminError(f"topics {topics} were created but are not usable after {timeout:.0f}s: "
                                  f"{problem}; check the broker on {settings.bootstrap_servers}")
        time.sleep(0.05)


def validate_topics(settings: Settings, *, timeout: float = 30.0) -> None:
    """Refuse to run on topics that would lose or misroute history.

    Checks that the commands, events, replies and dead-letter topics exist, that the events topic
    is compacted (``cleanup.policy=compact`` only: ``delete`` would drop history), and that commands
    and events have ``settings.partitions`` partitions each (they are co-partitioned: a workflow's
    events go to the partition of its id on the commands topic). Raises :class:`TopicConfigError`
    naming the topic, the problem and the fix.
    """
    names = TopicNames(settings.topic_prefix)
    admin = _admin(settings)
    counts = _partition_counts(admin, settings, timeout)
    missing = [n for n in (names.commands, names.events, names.replies, names.dlq) if n not in counts]
    if missing:
        # A topic this principal may not describe is left out of the metadata: ask for it by name
        # to tell "not authorized" from "does not exist".
        try:
            err = admin.list_topics(missing[0], timeout=timeout).topics[missing[0]].error
        except (KafkaException, KeyError):
            err = None
        if err is not None and err.code() in AUTHORIZATION_CODES:
            raise TopicAuthorizationError(str(authorization_error(settings, err, "describe", missing[0])))
        raise TopicConfigError(
            f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}: "
            f"create them with `aion topics create --prefix {settings.topic_prefix} "
            f"--partitions {counts.get(names.commands, settings.partitions)}` "
            "(the broker does not create topics automatically).")

    resource = ConfigResource(ConfigResource.Type.TOPIC, names.events)
    try:
        entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    except KafkaException as exc:
        raise TopicAdminError(f"could not read the configuration of topic {names.events!r}: {exc}") from exc
    policy = entries["cleanup.policy"].value if "cleanup.policy" in entries else "delete"
    if sorted(p.strip() for p in (policy or "").split(",")) != ["compact"]:
        raise TopicConfigError(
            f"topic {names.events!r} has cleanup.policy={policy}; the events topic must be compacted "
            "(cleanup.policy=compact) or Kafka deletes workflow history by retention. Fix: "
            f"kafka-configs.sh --bootstrap-server {settings.bootstrap_servers} --alter --entity-type topics "
            f"--entity-name {names.events} --add-config cleanup.policy=compact")

    commands_n, events_n = counts[names.commands], counts[names.events]
    if events_n != commands_n:
        raise TopicConfigError(
            f"topic {names.events!r} has {events_n} partitions but {names.commands!r} has {commands_n}: "
            "they are co-partitioned (a workflow's events go to the partition of its id on the commands "
            f"topic). Give both the same count, e.g. kafka-topics.sh --bootstrap-server "
            f"{settings.bootstrap_servers} --alter --topic "
            f"{names.events if events_n < commands_n else names.commands} --partitions "
            f"{max(events_n, commands_n)} (only while no workflow has run: adding partitions moves "
            "workflow ids), or delete both and run `aion topics create`.")
    if commands_n != settings.partitions:
        raise TopicConfigError(
            f"topics {names.commands!r} and {names.events!r} have {commands_n} partitions but this "
            f"process is configured for {settings.partitions} (AION_PARTITIONS / --partitions): workflow "
            f"ids would go to the wrong partitions. Set AION_PARTITIONS={commands_n}.")
    misrouted = misrouted_workflows(settings, commands_n, timeout=min(timeout, 10.0))
    if misrouted:
        partition, wid, home = misrouted[0]
        raise TopicConfigError(
            f"topic {names.events!r} has {commands_n} partitions, but workflow {wid!r} was recorded on "
            f"partition {partition}, where {commands_n} partitions would put it on {home} "
            f"({len(misrouted)} partition(s) hold such workflows): partitions were added to a deployment "
            "in use. A workflow's partition is its id's hash modulo the partition count, and Kafka moves "
            "no records, so its commands would now go to a partition that does not hold its history. "
            "Adding partitions to a running deployment is refused; to grow, start a new deployment "
            "(another AION_TOPIC_PREFIX, created with more partitions), send new starts there, and keep "
            "this one's workers until its open workflows have closed (README, 'Adding partitions').")


def misrouted_workflows(settings: Settings, partitions: int, *, timeout: float = 10.0,
                        sample: int = 20) -> list[tuple[int, str, int]]:
    """(partition, workflow id, the partition its id hashes to) for the events partitions whose
    last records (up to ``sample`` of each) hold a workflow that ``partitions`` partitions would
    put elsewhere: the mark of partitions added to a topic in use. Reads O(partitions) records."""
    from confluent_kafka import Consumer

    from ..codec import Codec, partition_for

    topic = TopicNames(settings.topic_prefix).events
    codec = Codec(registry_url=settings.schema_registry_url)
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.routing-check",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed", "logger": _log})
    out: list[tuple[int, str, int]] = []
    try:
        todo: set[int] = set()
        assignment = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                todo.add(p)
                assignment.append(TopicPartition(topic, p, max(low, high - sample)))
        if not assignment:
            return out
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.partition() not in todo:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    todo.discard(msg.partition())
                continue
            key = msg.key()
            if key is None:
                continue
            try:
                wid = codec.decode_event_key(key).workflow_id
            except Exception:  # not an event key: nothing to judge by
                continue
            home = partition_for(wid, partitions)
            if home != msg.partition():
                out.append((msg.partition(), wid, home))
            todo.discard(msg.partition())
    finally:
        consumer.close()
    return out
