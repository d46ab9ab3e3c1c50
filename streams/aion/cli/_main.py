"""``aion``: topics, engine and activity workers, workflows; ``main``, the console script.

Output is a readable table by default and JSON with ``--json``; errors are one line on
stderr and an exit code that tells the cases apart (see :mod:`aion.cli._errors`).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any, Callable

import click

# The command groups kept in their own modules register themselves on ``cli`` when imported.
from . import _bench, _console, _deploy, _dlq, _kafka_native, _replay, _schedule, _status  # noqa: F401
from ._app import (
    _args,
    _broker_ready,
    _cell,
    _client_call,
    _emit,
    _fail,
    _iso,
    _print_table,
    _run,
    _settings,
    cli,
    event_row,
)
from ..common.access import KafkaAccessError
from ._errors import CliError, ExitCode, UsageError
from ._imports import import_user_modules


#: How long a worker (a service) waits for a broker that refuses connections before it gives up.
WORKER_BROKER_WAIT_ENV = "AION_WORKER_BROKER_WAIT"


def _worker_broker_wait() -> float:
    return float(os.environ.get(WORKER_BROKER_WAIT_ENV, "30"))


# ---------------------------------------------------------------- topics


@cli.group()
def topics() -> None:
    """Create and check the topics."""


@topics.command("create")
@click.option("--task-queue", "queues", multiple=True, default=["default"], show_default=True)
@click.pass_context
def topics_create(ctx: click.Context, queues: tuple[str, ...]) -> None:
    """Create the topics (idempotent) and validate them."""
    from ..common.access import KafkaAccessError
    from ..common.topics import TopicConfigError, ensure_topics, validate_topics
    from ._errors import AccessDenied

    s = _broker_ready(ctx)
    try:
        created = ensure_topics(s, task_queues=queues)
        validate_topics(s)
    except KafkaAccessError as exc:
        raise AccessDenied(str(exc)) from None
    except TopicConfigError as exc:
        _fail(str(exc))
    click.echo(f"topics ready (prefix {s.topic_prefix!r}, {s.partitions} partitions)" + (f"; created {', '.join(created)}" if created else ""))


# ---------------------------------------------------------------- workers


def _metrics_port_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--metrics-port", type=click.IntRange(0, 65535), default=None,
        help="Serve Prometheus metrics (/metrics) and health (/healthz, /readyz) on this HTTP port "
             "(AION_METRICS_PORT; address AION_METRICS_HOST, default 0.0.0.0); 0: none (the default).")(f)


def _serve_worker_metrics(s: Any, w: Any) -> None:
    """The activity worker's metrics (and the process's) on its port; a taken port exits."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    from ..ops import serve

    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=w.metrics.registry)
    server = serve(w.metrics.registry, w.metrics.health, host=s.metrics_host, port=s.metrics_port,
                   what="activity worker")
    click.echo(f"activity worker: metrics at {server.url}/metrics, health at {server.url}/healthz", err=True)


@cli.command("worker")
@click.option("--workflows", "modules", multiple=True,
              help="Module(s) whose @workflow.defn classes this worker runs (runs recorded without a build); "
                   "without it, only the builds deployed with `aion deploy`.")
@click.option("--cache-size", type=int, default=None, help="Resident workflow instances per worker (AION_CACHE_SIZE).")
@click.option("--loglevel", default="info", show_default=True)
@_metrics_port_option
@click.pass_context
def worker_cmd(ctx: click.Context, modules: tuple[str, ...], cache_size: int | None, loglevel: str,
               metrics_port: int | None) -> None:
    """Run an engine worker (a Faust app) for the given workflow modules."""
    from ..engine.worker import run_worker

    from ..engine.worker import discover

    workflows, _ = discover(import_user_modules(modules, "workflow"))  # a typo fails here, before Kafka
    if modules and not workflows:
        raise UsageError(f"no @workflow.defn class in {', '.join(modules)}: point --workflows at the modules "
                         "that define your workflows")
    s = _broker_ready(ctx, wait=_worker_broker_wait())
    if cache_size:
        s = s.replace(cache_size=cache_size)
    if metrics_port is not None:
        s = s.replace(metrics_port=metrics_port)
    if s.metrics_port:
        click.echo(f"engine worker: metrics on {s.metrics_host}:{s.metrics_port} (/metrics, /healthz, /readyz)", err=True)
    run_worker(s, list(modules), loglevel=loglevel)


def _worker_logging(loglevel: str) -> None:
    """An activity worker's log on stderr, as the engine worker's: its own lines at ``loglevel``,
    the libraries' from WARNING (unless debug), a repeated error said a few times a minute."""
    import logging

    from ..ops._logs import limit_repeats, quiet_libraries

    level = logging.getLevelName(loglevel.upper())
    if not isinstance(level, int):
        raise UsageError(f"--loglevel {loglevel!r}: use debug, info, warning or error")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries(level, root)
    limit_repeats(root)


@cli.command("activity-worker")
@click.option("--activities", "modules", multiple=True, required=True, help="Module(s) whose @activity.defn functions this worker runs.")
@click.option("--task-queue", default="default", show_default=True)
@click.option("--concurrency", type=int, default=100, show_default=True)
@click.option("--loglevel", default="info", show_default=True,
              help="info: the start line, assignments, failed and retried attempts; debug adds the libraries' lines.")
@_metrics_port_option
@click.pass_context
def activity_worker_cmd(ctx: click.Context, modules: tuple[str, ...], task_queue: str, concurrency: int,
                        loglevel: str, metrics_port: int | None) -> None:
    """Run an activity worker on one task queue."""
    from ..engine.worker import discover
    from ..worker import ActivityWorker

    _, activities = discover(import_user_modules(modules, "activity"))
    if not activities:
        raise UsageError(f"no @activity.defn function in {', '.join(modules)}: point --activities at the "
                         "modules that define your activities")
    s = _broker_ready(ctx, wait=_worker_broker_wait())

    from ..activity._definition import ActivityDefinition

    names = sorted(d.name for d in (ActivityDefinition.maybe_of(a) for a in activities) if d is not None)
    click.echo(f"activity worker: task queue {task_queue!r}, concurrency {concurrency}, "
               f"{len(names)} activities: {', '.join(names)} (Kafka {s.bootstrap_servers}, prefix {s.topic_prefix!r})")

    if metrics_port is not None:
        s = s.replace(metrics_port=metrics_port)
    _worker_logging(loglevel)
    from ..ops._tracing import configure

    configure(s.tracing, "aion-activity-worker")  # AION_TRACING: RunActivity spans

    async def main() -> None:
        w = ActivityWorker(s, activities=activities, task_queue=task_queue, concurrency=concurrency)
        if s.metrics_port:
            _serve_worker_metrics(s, w)
        await w.run(handle_signals=True)

    _run(main())


# ---------------------------------------------------------------- workflows


@cli.group()
def workflow() -> None:
    """Start, signal, query, cancel and inspect workflows."""


def _input_file_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--input-file", "input_files", multiple=True, type=click.Path(dir_okay=False),
                        help="A file holding one JSON argument (repeatable; after the positional ARGS).")(f)


_TIMEOUT_HELP = "Seconds to wait for the result before giving up (exit code 4); the workflow keeps running."


_ID_HELP = "Workflow id (default: WORKFLOW_TYPE-<random uuid>)."


def _workflow_id(workflow_type: str, given: str | None) -> str:
    return given or f"{workflow_type}-{uuid.uuid4()}"


@workflow.command("start")
@click.argument("workflow_type")
@click.argument("args", nargs=-1)
@click.option("--id", "workflow_id", default=None, help=_ID_HELP)
@_input_file_option
@click.option("--task-queue", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_start(ctx: click.Context, workflow_type: str, args: tuple[str, ...], workflow_id: str | None,
             input_files: tuple[str, ...], task_queue: str, as_json: bool) -> None:
    """Start WORKFLOW_TYPE with JSON ARGS (e.g. '{"id": "o-1"}' or '"text"')."""
    values = _args(args, input_files)
    wid = _workflow_id(workflow_type, workflow_id)

    async def fn(c: Any) -> Any:
        h = await c.start_workflow(workflow_type, *values, id=wid, task_queue=task_queue)
        return {"workflow_id": h.id, "run_id": getattr(h, "run_id", None)}

    started = _client_call(ctx, fn)
    if as_json:
        _emit(started, True)
    else:
        _print_fields(started)


async def _wait_result(handle: Any, timeout: float | None) -> Any:
    from ..client._errors import WorkflowResultTimeoutError

    try:
        return await handle.result(timeout=timeout)
    except WorkflowResultTimeoutError:
        raise CliError(f"workflow {handle.id!r} did not close within {timeout:g} s (--timeout); it may still be "
                       f"running: `aion workflow describe {handle.id}` shows its state", ExitCode.TIMED_OUT) from None


@workflow.command("execute")
@click.argument("workflow_type")
@click.argument("args", nargs=-1)
@click.option("--id", "workflow_id", default=None, help=_ID_HELP)
@_input_file_option
@click.option("--task-queue", default="default", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_execute(ctx: click.Context, workflow_type: str, args: tuple[str, ...], workflow_id: str | None,
               input_files: tuple[str, ...], task_queue: str, timeout: float | None, as_json: bool) -> None:
    """Start WORKFLOW_TYPE with JSON ARGS and wait for its result."""
    values = _args(args, input_files)
    wid = _workflow_id(workflow_type, workflow_id)

    async def fn(c: Any) -> Any:
        h = await c.start_workflow(workflow_type, *values, id=wid, task_queue=task_queue)
        if workflow_id is None and not as_json:  # the generated id, to find the workflow again
            click.echo(f"workflow id: {wid}", err=True)
        return await _wait_result(h, timeout)

    _emit(_client_call(ctx, fn), as_json)


@workflow.command("result")
@click.argument("workflow_id")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_result(ctx: click.Context, workflow_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a workflow's result."""
    _emit(_client_call(ctx, lambda c: _wait_result(c.get_workflow_handle(workflow_id), timeout)), as_json)


@workflow.command("signal")
@click.argument("workflow_id")
@click.argument("signal")
@click.argument("args", nargs=-1)
@_input_file_option
@click.pass_context
def wf_signal(ctx: click.Context, workflow_id: str, signal: str, args: tuple[str, ...], input_files: tuple[str, ...]) -> None:
    """Send SIGNAL with JSON ARGS to a workflow."""
    values = _args(args, input_files)
    _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).signal(signal, *values))
    click.echo("signalled")


@workflow.command("query")
@click.argument("workflow_id")
@click.argument("query")
@click.argument("args", nargs=-1)
@_input_file_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_query(ctx: click.Context, workflow_id: str, query: str, args: tuple[str, ...], input_files: tuple[str, ...],
             as_json: bool) -> None:
    """Ask a running workflow's QUERY handler (JSON ARGS)."""
    values = _args(args, input_files)
    _emit(_client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).query(query, *values)), as_json)


@workflow.command("update")
@click.argument("workflow_id")
@click.argument("update")
@click.argument("args", nargs=-1)
@_input_file_option
@click.option("--update-id", default=None,
              help="Update id (default: a new uuid). The same id again runs nothing and prints the recorded outcome.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to wait for the handler (exit code 4); the update goes on.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_update(ctx: click.Context, workflow_id: str, update: str, args: tuple[str, ...], input_files: tuple[str, ...],
              update_id: str | None, timeout: float | None, as_json: bool) -> None:
    """Run a running workflow's UPDATE handler with JSON ARGS and print what it returns
    (exit code 3 when its validator rejects it or the handler raises)."""
    values = _args(args, input_files)
    _emit(_client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).execute_update(
        update, *values, id=update_id, rpc_timeout=timeout)), as_json)


def _run_action(name: str, doc: str, done: str) -> None:
    """``aion workflow NAME ID [--reason ...]``: the handle's ``NAME(reason)``, then ``done``."""

    @workflow.command(name, help=doc)
    @click.argument("workflow_id")
    @click.option("--reason", default="")
    @click.pass_context
    def action(ctx: click.Context, workflow_id: str, reason: str) -> None:
        _client_call(ctx, lambda c: getattr(c.get_workflow_handle(workflow_id), name)(reason))
        click.echo(done)


for _name, _doc, _done in (
    ("cancel", "Request cancellation of a workflow.", "cancel requested"),
    ("terminate", "Terminate a workflow at once (no compensation).", "terminated"),
    ("pause", "Pause a running workflow: its activity attempts and child starts wait for `resume`.", "paused"),
    ("resume", "Resume a paused workflow (what it held is dispatched), or retry the task of one held "
               "after a task failure.", "resumed"),
    ("reopen", "Reopen a FAILED or CANCELLED workflow: the same run goes on from before what closed it.",
     "reopened"),
):
    _run_action(_name, _doc, _done)


@workflow.command("describe")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_describe(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Status, type, run id and history length of a workflow, and what it waits on: pending
    activities (attempt, last failure, next retry), pending timers, a held workflow task."""
    import dataclasses

    from ..client._history import describe
    from ..client._pending import pending_of

    events = _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).history())
    if not events:
        _not_found(ctx, workflow_id)
    from ..converter import DataConverter

    fields = _with_iso_times(dataclasses.asdict(describe(workflow_id, events, converter=DataConverter())))
    fields.pop("typed_search_attributes", None)  # the same values as search_attributes, as objects
    pending = pending_of(events, _iso) if fields["status"] == "RUNNING" else \
        {"pending_activities": [], "pending_timers": [], "workflow_task": None}
    if as_json:
        _emit({**fields, **pending}, True)
        return
    _print_fields({k: v for k, v in fields.items() if not k.endswith("_ms")})
    task = pending["workflow_task"]
    if task:
        click.echo(f"\nworkflow task HELD after attempt {task['attempt']}: {task['error']}"
                   + (f" (next try {task['next_try']})" if task["next_try"] else "")
                   + "; fix the workflow code and restart the engine workers")
    if pending["pending_activities"]:
        click.echo("\npending activities:")
        _print_table(pending["pending_activities"],
                     ["activity_id", "activity_type", "state", "attempt", "last_failure", "next_retry"])
    if pending["pending_timers"]:
        click.echo("\npending timers:")
        _print_table(pending["pending_timers"], ["timer_id", "name", "fire_at"])


def _not_found(ctx: click.Context, workflow_id: str) -> None:
    s = _settings(ctx)
    raise CliError(f"no workflow {workflow_id!r} under topic prefix {s.topic_prefix!r}: it has no history on "
                   f"{s.topic_prefix}.events (never started there, or its history was retired)", ExitCode.NOT_FOUND)


def _with_iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """``*_ms`` epoch fields get an ISO twin without the suffix (``start_time_ms`` -> ``start_time``)."""
    out = {}
    for k, v in row.items():
        out[k] = v
        if k.endswith("_ms") and (v is None or isinstance(v, int)) and ("time" in k or k.endswith("_at_ms")):
            out[k[:-3]] = _iso(v)
    return out


def _print_fields(fields: dict[str, Any]) -> None:
    """A record as a two-column table: FIELD  VALUE."""
    width = max((len(k) for k in fields), default=0)
    for k, v in fields.items():
        click.echo(f"{k.ljust(width)}  {_cell(v)}")


@workflow.command("history")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_history(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """A workflow's events, in order (--json: the history file `aion replay FILE` reads)."""
    events = _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).history())
    if not events:
        _not_found(ctx, workflow_id)
    if as_json:  # the interchange format `aion replay FILE` reads
        from ..runtime._history_json import events_to_json

        click.echo(events_to_json(events, workflow_id=workflow_id))
        return
    _print_table([event_row(e) for e in events], ["seq", "type", "run_id", "recorded_at", "details"])


@cli.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo's topics and its folder of worker logs and tables.")
@click.pass_context
def demo_cmd(ctx: click.Context, keep: bool) -> None:
    """Run the order saga through Kafka with fresh workers, and print results and histories."""
    from ._demo import run_demo

    run_demo(_broker_ready(ctx), keep=keep)


_STATUSES = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW"]


def _status_option(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in _STATUSES:
        raise click.BadParameter(f"{value!r} is not a status; use one of {', '.join(_STATUSES)} (any case)",
                                 param_hint="--status")
    return value.upper()


@workflow.command("list")
@click.option("--query", "-q", default=None,
              help="A list filter, as Temporal's: \"WorkflowType = 'Order' AND ExecutionStatus = 'Running' AND "
                   "StartTime > '2026-12-01T00:00:00Z'\" (=, !=, <, >, AND, OR, IN, STARTS_WITH, BETWEEN).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rows (the oldest first).")
@click.option("--type", "wf_type", default=None, help="Only this workflow type.")
@click.option("--status", default=None, callback=lambda ctx, param, v: _status_option(v),
              help=f"Only workflows in this status (any case): {', '.join(_STATUSES)}.")
@click.option("--attr", "attrs", multiple=True, help="Search attribute KEY=VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_list(ctx: click.Context, query: str | None, limit: int | None, wf_type: str | None, status: str | None,
            attrs: tuple[str, ...], as_json: bool) -> None:
    """List workflows from the visibility index (the engine's workflows table)."""
    import dataclasses

    bad = [a for a in attrs if "=" not in a]
    if bad:
        raise UsageError(f"--attr {bad[0]!r} is not KEY=VALUE")
    sa = dict(a.split("=", 1) for a in attrs)
    rows = _client_call(ctx, lambda c: c.list_workflows(query, type=wf_type, status=status, search_attributes=sa or None,
                                                        limit=limit))
    out = [_with_iso_times(dataclasses.asdict(r)) for r in rows]
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        _print_table(out, ["workflow_id", "workflow_type", "status", "started_at", "closed_at", "history_length",
                           "search_attributes"])


@workflow.command("count")
@click.option("--query", "-q", default=None, help="A list filter (see `aion workflow list --help`).")
@click.pass_context
def wf_count(ctx: click.Context, query: str | None) -> None:
    """How many workflows match the list filter (all of them without one)."""
    click.echo(_client_call(ctx, lambda c: c.count_workflows(query)))


def main() -> None:
    """The console script: every error is one line ``aion: ...`` and its exit code."""
    try:
        rv = cli.main(obj={}, prog_name="aion", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aion: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"aion: {exc.format_message()}{where}", err=True)
        sys.exit(int(ExitCode.USAGE))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KafkaAccessError as exc:  # a refused login, TLS handshake or ACL, wherever it surfaced
        click.echo(f"aion: {exc}", err=True)
        sys.exit(int(ExitCode.ACCESS_DENIED))
    sys.exit(rv if isinstance(rv, int) else 0)
