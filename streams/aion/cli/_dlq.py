"""``aion dlq list|replay``: look at dead-lettered commands, and re-submit them after a fix.

The reading and the re-submitting live in :mod:`aion.client._dlq` (the web console uses them
too); this module is their command line.
"""

from __future__ import annotations

import json

import click

from ..client._dlq import DeadLetter, read_dead_letters, replay_dead_letters
from ..client._errors import DeliveryError, TopicMissingError
from ..common.settings import Settings
from ..common.topics import TopicNames
from ._app import _fail, _print_table, _settings, cli

__all__ = ["DeadLetter", "read_dead_letters"]


def _letters(s: Settings) -> list[DeadLetter]:
    try:
        return read_dead_letters(s)
    except (TopicMissingError, DeliveryError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def dlq() -> None:
    """Dead-lettered commands: list them, re-submit them."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, as_json: bool) -> None:
    """Show every dead-lettered command with its reason and source."""
    rows = [d.row() for d in _letters(_settings(ctx))]
    for r in rows:
        r.pop("replayed_from", None)  # the table and --json as before
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
    letters = [d for d in _letters(s) if replay_all or d.position in wanted]
    missing = wanted - {d.position for d in letters}
    if missing:
        _fail(f"no dead letter at {', '.join(sorted(missing))}; `aion dlq list` shows what is there")
    try:
        n = replay_dead_letters(s, letters)
    except DeliveryError as exc:
        _fail(str(exc))
        return
    click.echo(f"re-submitted {n} dead letter(s) to {TopicNames(s.topic_prefix).commands}")
