"""``aion schedule create|pause|resume|update|trigger|delete|list|describe``."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import click

from ._app import _args, _client_call, _emit, _print_table, cli

_OVERLAP = click.Choice(["SKIP", "BUFFER_ONE", "CANCEL_OTHER", "ALLOW_ALL"], case_sensitive=False)
_CATCH_UP = click.Choice(["ALL", "ONE", "SKIP"], case_sensitive=False)


@cli.group("schedule")
def schedule() -> None:
    """Start a workflow on a cron expression or an interval (schedules)."""


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items() if k != "raw"}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return value


@schedule.command("create")
@click.argument("schedule_id")
@click.argument("workflow_type")
@click.argument("args", nargs=-1)
@click.option("--cron", default=None, help="5-field cron expression (e.g. '*/5 * * * *'), read in --timezone.")
@click.option("--timezone", "tz", default="UTC", show_default=True,
              help="IANA time zone the cron expression is read in, e.g. Europe/Paris (daylight saving followed).")
@click.option("--interval", type=float, default=None, help="Seconds between fires (instead of --cron).")
@click.option("--offset", type=float, default=None, help="Seconds past each interval boundary (with --interval).")
@click.option("--task-queue", default="default", show_default=True)
@click.option("--overlap", type=_OVERLAP, default="SKIP", show_default=True,
              help="While the last start is still running: skip, buffer one, cancel it, or start anyway.")
@click.option("--catch-up", type=_CATCH_UP, default="ONE", show_default=True,
              help="Fire times missed while no engine ran: start all, only the latest, or none.")
@click.option("--catch-up-window", type=float, default=10.0, show_default=True,
              help="Seconds late a fire may be and still start with --catch-up SKIP.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.option("--note", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sched_create(ctx: click.Context, schedule_id: str, workflow_type: str, args: tuple[str, ...], cron: str | None,
                 tz: str, interval: float | None, offset: float | None, task_queue: str, overlap: str, catch_up: str,
                 catch_up_window: float, paused: bool, note: str, as_json: bool) -> None:
    """Create SCHEDULE_ID starting WORKFLOW_TYPE with JSON ARGS at each fire time."""
    async def fn(c: Any) -> Any:
        h = await c.create_schedule(schedule_id, workflow=workflow_type, args=_args(args), cron=cron, timezone=tz,
                                    interval=interval,
                                    offset=offset, task_queue=task_queue, overlap=overlap.upper(),
                                    catch_up=catch_up.upper(), catch_up_window=catch_up_window, paused=paused, note=note)
        return {"schedule_id": h.id, "workflow_id": h.workflow_id}

    _emit(_client_call(ctx, fn), as_json)


@schedule.command("pause")
@click.argument("schedule_id")
@click.option("--note", default="", help="Why (shown by describe and list).")
@click.pass_context
def sched_pause(ctx: click.Context, schedule_id: str, note: str) -> None:
    """Stop firing until resumed (missed fire times are skipped)."""
    _client_call(ctx, lambda c: c.get_schedule_handle(schedule_id).pause(note))
    click.echo("paused")


@schedule.command("resume")
@click.argument("schedule_id")
@click.option("--note", default="")
@click.pass_context
def sched_resume(ctx: click.Context, schedule_id: str, note: str) -> None:
    """Fire again from the next fire time."""
    _client_call(ctx, lambda c: c.get_schedule_handle(schedule_id).resume(note))
    click.echo("resumed")


@schedule.command("trigger")
@click.argument("schedule_id")
@click.pass_context
def sched_trigger(ctx: click.Context, schedule_id: str) -> None:
    """Start the workflow once now (overlap applies)."""
    _client_call(ctx, lambda c: c.get_schedule_handle(schedule_id).trigger())
    click.echo("triggered")


@schedule.command("update")
@click.argument("schedule_id")
@click.option("--cron", default=None)
@click.option("--timezone", "tz", default=None, help="IANA time zone for the cron expression.")
@click.option("--interval", type=float, default=None, help="Seconds.")
@click.option("--offset", type=float, default=None, help="Seconds.")
@click.option("--workflow", "workflow_type", default=None, help="Workflow type to start.")
@click.option("--args", "args_json", default=None, help="JSON list of arguments, e.g. '[1, \"x\"]'.")
@click.option("--task-queue", default=None)
@click.option("--overlap", type=_OVERLAP, default=None)
@click.option("--catch-up", type=_CATCH_UP, default=None)
@click.option("--catch-up-window", type=float, default=None, help="Seconds.")
@click.option("--note", default=None)
@click.pass_context
def sched_update(ctx: click.Context, schedule_id: str, cron: str | None, tz: str | None, interval: float | None,
                 offset: float | None,
                 workflow_type: str | None, args_json: str | None, task_queue: str | None, overlap: str | None,
                 catch_up: str | None, catch_up_window: float | None, note: str | None) -> None:
    """Change the schedule's spec, target or policies (only what is given)."""
    args = None
    if args_json is not None:
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"not JSON: {e}", param_hint="--args") from None
        if not isinstance(args, list):
            raise click.BadParameter("must be a JSON list", param_hint="--args")

    async def fn(c: Any) -> None:
        await c.get_schedule_handle(schedule_id).update(
            cron=cron, timezone=tz, interval=interval, offset=offset, workflow=workflow_type, args=args, task_queue=task_queue,
            overlap=overlap.upper() if overlap else None, catch_up=catch_up.upper() if catch_up else None,
            catch_up_window=catch_up_window, note=note)

    _client_call(ctx, fn)
    click.echo("updated")


@schedule.command("delete")
@click.argument("schedule_id")
@click.pass_context
def sched_delete(ctx: click.Context, schedule_id: str) -> None:
    """Delete the schedule (workflows it started keep running)."""
    _client_call(ctx, lambda c: c.get_schedule_handle(schedule_id).delete())
    click.echo("deleted")


@schedule.command("list")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted schedules.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sched_list(ctx: click.Context, include_deleted: bool, as_json: bool) -> None:
    """The deployment's schedules."""
    rows = _client_call(ctx, lambda c: c.list_schedules(include_deleted=include_deleted))
    out = [_jsonable(r) for r in rows]
    if as_json:
        click.echo(json.dumps(out))
    else:
        _print_table(out, ["id", "spec", "workflow_type", "overlap", "catch_up", "paused", "status", "note"])


@schedule.command("describe")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sched_describe(ctx: click.Context, schedule_id: str, as_json: bool) -> None:
    """Spec, state, next fire times and recent actions of a schedule."""
    d = _client_call(ctx, lambda c: c.get_schedule_handle(schedule_id).describe())
    _emit(_jsonable(d), as_json)
