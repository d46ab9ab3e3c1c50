"""The engine worker's Faust app and its tables, declared in one place.

The engine (``_engine.py``) runs them; the rebuild (``_rebuild.py``) rewrites a stopped
worker's tables offline with the same names, paths and RocksDB options; neither imports the
other. The tables (raw bytes rows in RocksDB, partitioned like the commands topic):

- ``history``: its changelog *is* the events topic (key ``{workflow_id, seq}``, compacted);
- ``workflows``: visibility rows (``_store.visibility_row``);
- ``progress``: intake positions and heartbeat details (``_progress.py``);
- ``timers`` and ``timer_terminal``: the timer wheel's rows (``_wheel.py``, ``_timers.py``).

Each is a :class:`~._store.CaughtUpTable`: fenced in, then caught up from its changelog before
Faust's recovery, on every assignment.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import faust

from ._faust import keep_databases_open, patch_worker_consumer
from ._store import CaughtUpTable
from ..common.settings import Settings, SettingsError
from ..common.topics import TopicNames


@dataclass
class EngineTables:
    """The Faust topics and tables of one engine app."""

    commands_topic: Any
    events_topic: Any
    history: Any
    workflows: Any
    progress: Any
    timers: Any
    terminal: Any

    def by_name(self) -> dict[str, Any]:
        return {t.name: t for t in (self.history, self.workflows, self.progress, self.timers, self.terminal)}


def build_app(settings: Settings) -> tuple[faust.App, EngineTables]:
    """The engine's Faust app (not started) and its topics and tables."""
    n = settings.partitions
    names = TopicNames(settings.topic_prefix)
    patch_worker_consumer()  # read committed; short fetch waits (see _faust.py)
    keep_databases_open()  # a rebalance neither closes nor opens a database on the event loop (_faust.py)
    app = faust.App(
        f"{settings.topic_prefix}-engine",
        broker=[f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=n,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=1,
        producer_acks=-1,
        broker_commit_every=1000,
        # Fail-over: a killed worker's partitions move after this long without heartbeats.
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=0.5,
        stream_buffer_maxsize=4096,
        # A command or event may carry max_payload_bytes of payload: fetch and send that much.
        consumer_max_fetch_size=settings.max_record_bytes,
        producer_max_request_size=settings.max_record_bytes,
        broker_credentials=_faust_credentials(settings),
        logging_config=None,
        Table=CaughtUpTable,  # fenced in, then caught up from its changelog before Faust's recovery
        # Faust's check that a partition's stored offset is not past its own look-up of the
        # changelog's end stopped the worker (ConsistencyError) when the stored offset was
        # legitimately ahead: moved on by the engine's own commits to a partition it keeps
        # through a rebalance (between Faust's two look-ups), or by the catch-up of the next
        # assignment while the previous one's recovery was still running (seen in a rolling
        # restart, issue 17). The engine's catch-up (_store.py) is what makes a table match
        # its changelog; stored offsets only move after a committed write or a catch-up.
        recovery_consistency_check=False,
    )
    raw: dict[str, Any] = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    # acks=False: Faust never processes either topic as a stream (the engine reads the commands
    # with its own consumer, _feed.py, and keeps Faust's copy paused; the events topic is
    # history's changelog, which Faust declares acks=False for its own tables). An acking topic is
    # one whose stream Faust expects to consume and commit: its livelock check (every 2.5 x
    # broker_commit_interval, per assigned partition) logged a multi-line ERROR "Stream has not
    # started processing TP(...)" for every partition of both, from stream_processing_timeout
    # (5 min) after start, for as long as the worker ran.
    commands_topic = app.topic(names.commands, partitions=n, acks=False, **raw)
    events_topic = app.topic(names.events, partitions=n, compacting=True, acks=False, **raw)
    # Faust creates the tables' changelogs: with the deployment's min.insync.replicas (and size limit).
    tbl: dict[str, Any] = dict(key_type=bytes, value_type=bytes, partitions=n, extra_topic_configs=settings.topic_config)
    tables = EngineTables(
        commands_topic=commands_topic,
        events_topic=events_topic,
        history=app.Table("history", changelog_topic=events_topic, **tbl),
        workflows=app.Table("workflows", **tbl),
        progress=app.Table("progress", **tbl),
        timers=app.Table("timers", **tbl),
        terminal=app.Table("timer_terminal", **tbl),
    )
    return app, tables


def changelog_topics(settings: Settings, tables: EngineTables) -> dict[str, dict[str, str]]:
    """The engine tables' own changelog topics (name -> config: compacted, with the deployment's
    topic settings), which ``aion worker`` creates before the Faust worker starts (``history``'s
    changelog is the events topic, created with the deployment's topics).

    Left to Faust, they are created while the worker starts — possibly after it has joined its
    group: the group leader's assignor then finds no partitions for them in its metadata
    ("Ignoring missing topic"), assigns none to anybody and, until its metadata is refreshed
    (minutes), no worker restores those tables on a takeover — the ``timers`` table of a
    partition that changed hands came up empty, and its workflows' timers never fired (issue 17,
    seen in the single-broker chaos run on a loaded machine)."""
    events = tables.events_topic.get_topic_name()
    out: dict[str, dict[str, str]] = {}
    for table in tables.by_name().values():
        name = table.changelog_topic.get_topic_name()
        if name != events:
            out[name] = {**settings.topic_config, "cleanup.policy": "compact"}
    return out


def _faust_credentials(settings: Settings) -> Any:
    """The Faust (aiokafka) form of the connection security that ``Settings.confluent_config()``
    gives librdkafka: one set of ``AION_*`` settings for both clients.

    aiokafka takes TLS as an ``ssl.SSLContext`` (verifying the broker's certificate and host name
    against ``ssl_cafile``, or the system's CAs) and SASL as ``sasl_mechanism`` (PLAIN,
    SCRAM-SHA-256, SCRAM-SHA-512) with ``sasl_plain_username`` / ``sasl_plain_password``, which
    Faust's credentials objects fill in."""
    proto = (settings.security_protocol or "PLAINTEXT").upper()
    if proto == "PLAINTEXT":
        return None
    ssl_context = _ssl_context(settings) if proto in ("SSL", "SASL_SSL") else None
    if proto.startswith("SASL_"):
        # ssl_context None makes the protocol SASL_PLAINTEXT, a context SASL_SSL.
        return faust.SASLCredentials(
            username=settings.sasl_username, password=settings.sasl_password,
            mechanism=settings.sasl_mechanism, ssl_context=ssl_context)
    return faust.SSLCredentials(ssl_context)


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"setting ssl_cafile (AION_SSL_CAFILE) = {settings.ssl_cafile!r} cannot be read as "
                            f"a PEM CA bundle: {exc}") from None
