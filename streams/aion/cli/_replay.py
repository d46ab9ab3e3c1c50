"""``aion replay FILE``: replay recorded histories against the current workflow code (a deploy
gate). ``aion replay check`` (histories from the events topic) registers on this group from
:mod:`aion.cli._kafka_native`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._app import cli
from ._errors import UsageError
from ._imports import import_user_modules


class _ReplayGroup(click.Group):
    """``aion replay FILE ...`` is short for ``aion replay file FILE ...``; subcommands such
    as ``aion replay check --from-topic`` are registered on this group by their modules."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["file", *args]
        return super().parse_args(ctx, args)


@cli.group("replay", cls=_ReplayGroup)
def replay() -> None:
    """Replay recorded histories against the current workflow code (a deploy gate)."""


@replay.command("file")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--workflows", "modules", multiple=True, required=True, help="Module(s) with the workflow code to check.")
@click.option("--json", "as_json", is_flag=True)
def replay_file(path: str, modules: tuple[str, ...], as_json: bool) -> None:
    """Replay the history in PATH (JSON as written by aion, or Avro records) and report the first divergence."""
    from ..engine.worker import discover
    from ..runtime import replay_history

    workflows, activities = discover(import_user_modules(modules, "workflow"))
    try:
        events = _load_history_file(path)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, not our format, a missing field
        raise UsageError(f"{path} is not an aion history ({type(exc).__name__}: {exc}); write one with "
                         "`aion workflow history ID --json > FILE`") from None
    result = replay_history(replay_registry(workflows, activities), events)
    report = {
        "workflow_id": result.workflow_id, "events": result.events, "runs": result.runs,
        "status": result.status, "ok": result.ok,
        "divergence": str(result.divergence) if result.divergence else None,
        "error": f"{type(result.error).__name__}: {result.error}" if result.error else None,
    }
    if as_json:
        click.echo(json.dumps(report))
    elif result.ok:
        click.echo(f"ok: {result.workflow_id} replayed {result.events} events in {result.runs} run(s) without divergence")
    if not result.ok:
        if not as_json:
            click.echo(f"aion: {report['divergence'] or report['error']}", err=True)
        sys.exit(1)


def replay_registry(workflows: list[Any], activities: list[Any]) -> Any:
    """The user's workflows plus the engine's own (``aion.Schedule``), as an engine worker has
    them: a system workflow's history replays with the engine's code, never as the user's."""
    from ..engine._schedules import ScheduleWorkflow
    from ..runtime import Registry

    return Registry(workflows=[*workflows, ScheduleWorkflow], activities=activities)


def _load_history_file(path: str) -> list[Any]:
    """Events from a JSON history file, or from a file of Avro-encoded events (one per line of a
    length-prefixed stream is not a format we write; JSON is the interchange format)."""
    from ..runtime._history_json import load_history

    return load_history(path)

