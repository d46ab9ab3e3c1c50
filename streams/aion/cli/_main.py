"""``aion``: topics, engine and activity workers, workflows, replay.

Output is a readable table by default and JSON with ``--json``; errors are one line on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any, Callable, Coroutine

import click

from ..engine.settings import Settings
from ._broker import KAFKA_LOG, check_broker
from ._errors import EXIT_CODES_HELP
from ._imports import import_user_modules


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _broker_ready(ctx: click.Context) -> Settings:
    """The settings, once the cluster they name answers (else one line and exit code 6)."""
    root = ctx.find_root()
    s: Settings = root.obj["settings"]
    if not root.obj.get("broker_checked"):
        check_broker(s, root.obj.get("bootstrap_origin"))
        root.obj["broker_checked"] = True
    return s


def _fail(message: str) -> None:
    click.echo(f"aion: {message}", err=True)
    sys.exit(1)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        sys.exit(130)
    except click.exceptions.Exit:
        raise
    except SystemExit:
        raise
    except Exception as exc:  # one clear line, non-zero exit
        _fail(f"{type(exc).__name__}: {exc}")


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (dict, list)):
        s = json.dumps(v, default=str)
    else:
        s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(package_name="aion-streams", prog_name="aion", message="%(prog)s (aion-streams) %(version)s")
@click.option("--bootstrap", "bootstrap", envvar="AION_BOOTSTRAP_SERVERS", default=None,
              help="Kafka bootstrap servers (AION_BOOTSTRAP_SERVERS; else 127.0.0.1:$KAFKA_LOCAL_PORT when that is "
                   "set, as for docker/kafka-local; else 127.0.0.1:9092).")
@click.option("--prefix", "prefix", envvar="AION_TOPIC_PREFIX", default=None, help="Topic prefix (AION_TOPIC_PREFIX, default 'aion').")
@click.option("--partitions", type=int, envvar="AION_PARTITIONS", default=None, help="Partitions of new topics (AION_PARTITIONS, default 12).")
@click.option("--data-dir", envvar="AION_DATA_DIR", default=None, help="RocksDB folder of an engine worker (AION_DATA_DIR).")
@click.option("-v", "--verbose", is_flag=True, help="Log librdkafka's own lines (aion.kafka) and debug output to stderr.")
@click.pass_context
def cli(ctx: click.Context, bootstrap: str | None, prefix: str | None, partitions: int | None, data_dir: str | None,
        verbose: bool) -> None:
    """Aion Streams: durable workflows on Kafka."""
    _configure_logging(verbose)
    overrides: dict[str, Any] = {}
    origin = None
    if bootstrap:
        overrides["bootstrap_servers"] = bootstrap
        source = ctx.get_parameter_source("bootstrap")
        origin = "AION_BOOTSTRAP_SERVERS" if source == click.core.ParameterSource.ENVIRONMENT else "--bootstrap"
    elif os.environ.get("KAFKA_LOCAL_PORT", "").strip():
        # The local launcher moved to another port: follow it rather than whatever runs on 9092.
        overrides["bootstrap_servers"] = f"127.0.0.1:{os.environ['KAFKA_LOCAL_PORT'].strip()}"
        origin = "KAFKA_LOCAL_PORT"
    if prefix:
        overrides["topic_prefix"] = prefix
    if partitions:
        overrides["partitions"] = partitions
    if data_dir:
        overrides["data_dir"] = data_dir
    ctx.ensure_object(dict)
    ctx.obj["settings"] = Settings.from_env(**overrides)
    ctx.obj["bootstrap_origin"] = origin


def _configure_logging(verbose: bool) -> None:
    """librdkafka's lines go to the ``aion.kafka`` logger; a CLI shows them only with -v (its
    errors say in one line what went wrong)."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        KAFKA_LOG.propagate = True
    else:
        KAFKA_LOG.addHandler(logging.NullHandler())
        KAFKA_LOG.propagate = False


# ---------------------------------------------------------------- topics


@cli.group()
def topics() -> None:
    """Create and check the topics."""


@topics.command("create")
@click.option("--task-queue", "queues", multiple=True, default=["default"], show_default=True)
@click.pass_context
def topics_create(ctx: click.Context, queues: tuple[str, ...]) -> None:
    """Create the topics (idempotent) and validate them."""
    from ..engine.topics import TopicConfigError, ensure_topics, validate_topics

    s = _broker_ready(ctx)
    try:
        created = ensure_topics(s, task_queues=queues)
        validate_topics(s)
    except TopicConfigError as exc:
        _fail(str(exc))
    click.echo(f"topics ready (prefix {s.topic_prefix!r}, {s.partitions} partitions)" + (f"; created {', '.join(created)}" if created else ""))


# ---------------------------------------------------------------- workers


@cli.command("worker")
@click.option("--workflows", "modules", multiple=True, required=True, help="Module(s) whose @workflow.defn classes this worker runs.")
@click.option("--cache-size", type=int, default=None, help="Resident workflow instances per worker (AION_CACHE_SIZE).")
@click.option("--loglevel", default="info", show_default=True)
@click.pass_context
def worker_cmd(ctx: click.Context, modules: tuple[str, ...], cache_size: int | None, loglevel: str) -> None:
    """Run an engine worker (a Faust app) for the given workflow modules."""
    from ..engine.worker import run_worker

    import_user_modules(modules, "workflow")  # a typo fails here, before Kafka is touched
    s = _broker_ready(ctx)
    if cache_size:
        s = s.replace(cache_size=cache_size)
    run_worker(s, list(modules), loglevel=loglevel)


@cli.command("activity-worker")
@click.option("--activities", "modules", multiple=True, required=True, help="Module(s) whose @activity.defn functions this worker runs.")
@click.option("--task-queue", default="default", show_default=True)
@click.option("--concurrency", type=int, default=100, show_default=True)
@click.pass_context
def activity_worker_cmd(ctx: click.Context, modules: tuple[str, ...], task_queue: str, concurrency: int) -> None:
    """Run an activity worker on one task queue."""
    from ..engine.worker import discover
    from ..worker import ActivityWorker

    _, activities = discover(import_user_modules(modules, "activity"))
    if not activities:
        _fail(f"no @activity.defn function found in {list(modules)!r}")
    s = _broker_ready(ctx)

    async def main() -> None:
        w = ActivityWorker(s, activities=activities, task_queue=task_queue, concurrency=concurrency)
        await w.run(handle_signals=True)

    _run(main())


# ---------------------------------------------------------------- workflows


@cli.group()
def workflow() -> None:
    """Start, signal, query, cancel and inspect workflows."""


def _client_call(ctx: click.Context, fn: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    from ..client import Client

    s = _broker_ready(ctx)

    async def main() -> Any:
        client = await Client.connect(s.bootstrap_servers, topic_prefix=s.topic_prefix, settings=s)
        try:
            return await fn(client)
        finally:
            await client.close()

    return _run(main())


def _args(values: tuple[str, ...]) -> list[Any]:
    out = []
    for v in values:
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError:
            out.append(v)
    return out


def _emit(value: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(value, default=str))
    elif isinstance(value, (dict, list)):
        click.echo(json.dumps(value, indent=2, default=str))
    else:
        click.echo(value)


@workflow.command("start")
@click.argument("workflow_type")
@click.argument("args", nargs=-1)
@click.option("--id", "workflow_id", required=True)
@click.option("--task-queue", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_start(ctx: click.Context, workflow_type: str, args: tuple[str, ...], workflow_id: str, task_queue: str, as_json: bool) -> None:
    """Start WORKFLOW_TYPE with JSON ARGS."""
    async def fn(c: Any) -> Any:
        h = await c.start_workflow(workflow_type, *_args(args), id=workflow_id, task_queue=task_queue)
        return {"workflow_id": h.id, "run_id": getattr(h, "run_id", None)}

    _emit(_client_call(ctx, fn), as_json)


@workflow.command("execute")
@click.argument("workflow_type")
@click.argument("args", nargs=-1)
@click.option("--id", "workflow_id", required=True)
@click.option("--task-queue", default="default", show_default=True)
@click.option("--timeout", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_execute(ctx: click.Context, workflow_type: str, args: tuple[str, ...], workflow_id: str, task_queue: str, timeout: float | None, as_json: bool) -> None:
    """Start WORKFLOW_TYPE and wait for its result."""
    async def fn(c: Any) -> Any:
        h = await c.start_workflow(workflow_type, *_args(args), id=workflow_id, task_queue=task_queue)
        return await h.result(timeout=timeout)

    _emit(_client_call(ctx, fn), as_json)


@workflow.command("result")
@click.argument("workflow_id")
@click.option("--timeout", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_result(ctx: click.Context, workflow_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a workflow's result."""
    _emit(_client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).result(timeout=timeout)), as_json)


@workflow.command("signal")
@click.argument("workflow_id")
@click.argument("signal")
@click.argument("args", nargs=-1)
@click.pass_context
def wf_signal(ctx: click.Context, workflow_id: str, signal: str, args: tuple[str, ...]) -> None:
    """Send SIGNAL with JSON ARGS to a workflow."""
    _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).signal(signal, *_args(args)))
    click.echo("signalled")


@workflow.command("query")
@click.argument("workflow_id")
@click.argument("query")
@click.argument("args", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_query(ctx: click.Context, workflow_id: str, query: str, args: tuple[str, ...], as_json: bool) -> None:
    """Ask a running workflow's QUERY handler."""
    _emit(_client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).query(query, *_args(args))), as_json)


@workflow.command("cancel")
@click.argument("workflow_id")
@click.option("--reason", default="")
@click.pass_context
def wf_cancel(ctx: click.Context, workflow_id: str, reason: str) -> None:
    """Request cancellation of a workflow."""
    _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).cancel(reason))
    click.echo("cancel requested")


@workflow.command("terminate")
@click.argument("workflow_id")
@click.option("--reason", default="")
@click.pass_context
def wf_terminate(ctx: click.Context, workflow_id: str, reason: str) -> None:
    """Terminate a workflow at once (no compensation)."""
    _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).terminate(reason))
    click.echo("terminated")


@workflow.command("describe")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_describe(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Status, type, run id and history length of a workflow."""
    d = _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).describe())
    _emit(d if isinstance(d, dict) else getattr(d, "__dict__", d), as_json)


@workflow.command("history")
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_history(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """A workflow's events, in order."""
    events = _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).history())
    rows = [event_row(e) for e in events]
    if as_json:
        click.echo(json.dumps(rows, default=str))
    else:
        _print_table(rows, ["seq", "type", "run_id", "recorded_at", "details"])


def event_row(e: Any) -> dict[str, Any]:
    import dataclasses
    from datetime import datetime, timezone

    body = {k: v for k, v in dataclasses.asdict(e.body).items() if v not in (None, [], {}, "")}
    for k, v in list(body.items()):
        if isinstance(v, dict) and "data" in v and isinstance(v["data"], bytes):
            body[k] = v["data"].decode(errors="replace")
        elif isinstance(v, list):
            body[k] = [x["data"].decode(errors="replace") if isinstance(x, dict) and isinstance(x.get("data"), bytes) else x for x in v]
    return {
        "seq": e.seq,
        "type": e.type,
        "run_id": e.run_id[:8],
        "recorded_at": datetime.fromtimestamp(e.recorded_at_ms / 1000, timezone.utc).strftime("%H:%M:%S.%f")[:-3],
        "details": body,
    }


@cli.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo's topics and its folder of worker logs and tables.")
@click.pass_context
def demo_cmd(ctx: click.Context, keep: bool) -> None:
    """Run the order saga through Kafka with fresh workers, and print results and histories."""
    from ._demo import run_demo

    run_demo(_broker_ready(ctx), keep=keep)


# ---------------------------------------------------------------- replay


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
    from ..runtime import Registry, replay_history

    workflows, _ = discover(import_user_modules(modules, "workflow"))
    result = replay_history(Registry(workflows=workflows), _load_history_file(path))
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


def _load_history_file(path: str) -> list[Any]:
    """Events from a JSON history file, or from a file of Avro-encoded events (one per line of a
    length-prefixed stream is not a format we write; JSON is the interchange format)."""
    from ..runtime._history_json import load_history

    return load_history(path)


@workflow.command("list")
@click.option("--type", "wf_type", default=None, help="Only this workflow type.")
@click.option("--status", default=None, help="RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT.")
@click.option("--attr", "attrs", multiple=True, help="Search attribute KEY=VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_list(ctx: click.Context, wf_type: str | None, status: str | None, attrs: tuple[str, ...], as_json: bool) -> None:
    """List workflows from the visibility index (the engine's workflows table)."""
    import dataclasses

    sa = dict(a.split("=", 1) for a in attrs)
    rows = _client_call(ctx, lambda c: c.list_workflows(type=wf_type, status=status, search_attributes=sa or None))
    out = [dataclasses.asdict(r) for r in rows]
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        _print_table(out, ["workflow_id", "workflow_type", "status", "history_length", "search_attributes"])


# Command groups kept in their own modules register themselves on ``cli``.
from . import _bench, _dlq, _kafka_native, _schedule  # noqa: E402,F401


def main() -> None:
    cli(obj={})
