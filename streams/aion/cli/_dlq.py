"""``aion dlq list|replay``: look at dead-lettered commands, and re-submit them after a fix.

The engine dead-letters a command it cannot decode or process to ``<prefix>.dlq`` with the
original key and bytes, and headers naming the reason (``aion.reason``) and where it came
from (``aion.source.topic``, ``aion.source.partition``, ``aion.source.offset``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import click
from confluent_kafka import Consumer, Producer, TopicPartition

from ..common.settings import Settings
from ..common.topics import TopicNames
from ._app import _fail, _print_table, _settings, cli


@dataclass
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("aion.reason", "")

    def row(self) -> dict[str, object]:
        return {
            "dlq": f"{self.partition}@{self.offset}",
            "time": datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "key": self.key.decode(errors="replace") if self.key else None,
            "source": f"{self.headers.get('aion.source.topic', '?')}[{self.headers.get('aion.source.partition', '?')}]"
                      f"@{self.headers.get('aion.source.offset', '?')}",
            "reason": self.reason,
        }


def read_dead_letters(settings: Settings, timeout: float = 10.0) -> list[DeadLetter]:
    """Every record on the dead-letter topic, oldest first per partition."""
    topic = TopicNames(settings.topic_prefix).dlq
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.dlq-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise click.ClickException(f"dead-letter topic {topic!r} does not exist; run `aion topics create`")
        ends = {}
        for p in tmd.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[DeadLetter] = []
        done: set[int] = set()
        while len(done) < len(ends):
            msg = consumer.poll(timeout)
            if msg is None:
                break
            if msg.error():
                if msg.error().code() == -191:  # partition EOF
                    done.add(msg.partition())
                    continue
                raise click.ClickException(f"reading {topic}: {msg.error()}")
            headers = {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
            out.append(DeadLetter(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value(), headers))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        consumer.close()


@cli.group()
def dlq() -> None:
    """Dead-lettered commands: list them, re-submit them."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, as_json: bool) -> None:
    """Show every dead-lettered command with its reason and source."""
    letters = read_dead_letters(_settings(ctx))
    rows = [d.row() for d in letters]
    if as_json:
        click.echo(json.dumps(rows))
    else:
        _print_table(rows, ["dlq", "time", "key", "source", "reason"])


@dlq.command("replay")
@click.argument("positions", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Re-submit every dead letter.")
@click.pass_context
def dlq_replay(ctx: click.Context, positions: tuple[str, ...], replay_all: bool) -> None:
    """Re-submit dead letters (POSITIONS like 0@12, as `aion dlq list` shows) to the commands topic."""
    s = _settings(ctx)
    if not positions and not replay_all:
        _fail("name dead letters as PARTITION@OFFSET (see `aion dlq list`) or pass --all")
    wanted = set(positions)
    letters = [d for d in read_dead_letters(s) if replay_all or f"{d.partition}@{d.offset}" in wanted]
    missing = wanted - {f"{d.partition}@{d.offset}" for d in letters}
    if missing:
        _fail(f"no dead letter at {', '.join(sorted(missing))}; `aion dlq list` shows what is there")
    producer = Producer({**s.confluent_config(), "partitioner": "murmur2_random", "acks": "all"})
    commands = TopicNames(s.topic_prefix).commands
    for d in letters:
        headers = [("aion.replayed.from", f"{d.partition}@{d.offset}".encode())]
        producer.produce(commands, key=d.key, value=d.value, headers=headers)
    left = producer.flush(30)
    if left:
        _fail(f"{left} re-submitted commands were not acknowledged by the broker")
    click.echo(f"re-submitted {len(letters)} dead letter(s) to {commands}")
