"""``aion``: topics, engine and activity workers, workflows, replay.

Output is a readable table by default and JSON with ``--json``; errors are one line on
stderr and an exit code that tells the cases apart (see :mod:`aion.cli._errors`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Coroutine

import click

from ..engine.settings import Settings
from ._broker import KAFKA_LOG, check_broker
from ._errors import EXIT_CODES_HELP, CliError, ExitCode, UsageError
from ._imports import import_user_modules


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


#: How long a worker (a service) waits for a broker that refuses connections before it gives up.
WORKER_BROKER_WAIT_ENV = "AION_WORKER_BROKER_WAIT"


def _broker_ready(ctx: click.Context, wait: float = 0.0) -> Settings:
    """The settings, once the cluster they name answers (else one line and exit code 6)."""
    root = ctx.find_root()
    s: Settings = root.obj["settings"]
    if not root.obj.get("broker_checked"):
        check_broker(s, root.obj.get("bootstrap_origin"), wait=wait)
        root.obj["broker_checked"] = True
    return s


def _worker_broker_wait() -> float:
    return float(os.environ.get(WORKER_BROKER_WAIT_ENV, "30"))


def _fail(message: str) -> None:
    click.echo(f"aion: {message}", err=True)
    sys.exit(1)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except Exception as exc:  # one clear line, the exit code of its kind
        ctx = click.get_current_context(silent=True)
        raise _cli_error(exc, ctx.find_root().obj.get("settings") if ctx and ctx.find_root().obj else None) from None


def _cli_error(exc: Exception, settings: Settings | None = None) -> CliError:
    """The one line and exit code an exception from the client stands for."""
    from confluent_kafka import KafkaError, KafkaException

    from ..client._errors import RPCTimeoutError
    from ..client._replies import TopicMissingError
    from ..exceptions import WorkflowFailureError, WorkflowNotFoundError

    if isinstance(exc, TopicMissingError) and settings is not None:
        return CliError(str(exc).split(":")[0].replace(" on the broker", "") + f" on {settings.bootstrap_servers}: "
                        f"create the topics of prefix "
                        f"{settings.topic_prefix!r} first (`aion topics create`), or give the prefix they were "
                        "made with (--prefix or AION_TOPIC_PREFIX)")

    if isinstance(exc, WorkflowFailureError):
        return CliError(str(exc), ExitCode.TIMED_OUT if exc.status == "TIMED_OUT" else ExitCode.WORKFLOW_FAILED)
    if isinstance(exc, WorkflowNotFoundError):
        return CliError(str(exc), ExitCode.NOT_FOUND)
    if isinstance(exc, RPCTimeoutError):
        return CliError(str(exc), ExitCode.TIMED_OUT)
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError) \
            and exc.args[0].code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
        return CliError(f"lost the Kafka broker: {exc.args[0].str()}", ExitCode.BROKER_UNREACHABLE)
    return CliError(f"{type(exc).__name__}: {exc}")


def _iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an ISO 8601 UTC time, e.g. 2026-12-03T12:38:46.768Z."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    from ..engine.worker import discover

    workflows, _ = discover(import_user_modules(modules, "workflow"))  # a typo fails here, before Kafka
    if not workflows:
        raise UsageError(f"no @workflow.defn class in {', '.join(modules)}: point --workflows at the modules "
                         "that define your workflows")
    s = _broker_ready(ctx, wait=_worker_broker_wait())
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
        raise UsageError(f"no @activity.defn function in {', '.join(modules)}: point --activities at the "
                         "modules that define your activities")
    s = _broker_ready(ctx, wait=_worker_broker_wait())

    from ..activity._definition import ActivityDefinition

    names = sorted(d.name for d in (ActivityDefinition.maybe_of(a) for a in activities) if d is not None)
    click.echo(f"activity worker: task queue {task_queue!r}, concurrency {concurrency}, "
               f"{len(names)} activities: {', '.join(names)} (Kafka {s.bootstrap_servers}, prefix {s.topic_prefix!r})")

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


def _args(values: tuple[str, ...], files: tuple[str, ...] = ()) -> list[Any]:
    """Arguments as JSON values, strictly: ``'"text"'``, ``42``, ``'{"id": "o-1"}'``; then one
    argument per ``--input-file``. A value that is not JSON is a usage error, never a string."""
    out = []
    for i, v in enumerate(values, 1):
        try:
            out.append(json.loads(v))
        except json.JSONDecodeError as exc:
            hint = (f" (a string is written as JSON: '{json.dumps(v)}')"
                    if v[:1] not in '{["' and not v[:1].isdigit() and v[:1] != "-" else "")
            raise UsageError(f"argument {i} is not JSON: {v!r}: {exc.msg} at column {exc.colno}{hint}; "
                             "arguments are JSON values, or pass --input-file FILE") from None
    for path in files:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as exc:
            raise UsageError(f"--input-file {path}: {exc.strerror or exc}") from None
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise UsageError(f"--input-file {path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return out


def _input_file_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--input-file", "input_files", multiple=True, type=click.Path(dir_okay=False),
                        help="A file holding one JSON argument (repeatable; after the positional ARGS).")(f)


_TIMEOUT_HELP = "Seconds to wait for the result before giving up (exit code 4); the workflow keeps running."


def _emit(value: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(value, default=str))
    elif isinstance(value, (dict, list)):
        click.echo(json.dumps(value, indent=2, default=str))
    else:
        click.echo(value)


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
    """Status, type, run id and history length of a workflow, and what it waits on: pending
    activities (attempt, last failure, next retry), pending timers, a held workflow task."""
    import dataclasses

    from ..client._history import describe
    from ._pending import pending_of

    events = _client_call(ctx, lambda c: c.get_workflow_handle(workflow_id).history())
    if not events:
        _not_found(ctx, workflow_id)
    fields = _with_iso_times(dataclasses.asdict(describe(workflow_id, events)))
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


def event_row(e: Any) -> dict[str, Any]:
    import dataclasses

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
        "recorded_at": _iso(e.recorded_at_ms),
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


_STATUSES = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW"]


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in _STATUSES:
        raise click.BadParameter(f"{value!r} is not a status; use one of {', '.join(_STATUSES)} (any case)",
                                 param_hint="--status")
    return value.upper()


@workflow.command("list")
@click.option("--type", "wf_type", default=None, help="Only this workflow type.")
@click.option("--status", default=None, callback=lambda ctx, param, v: _status(v),
              help=f"Only workflows in this status (any case): {', '.join(_STATUSES)}.")
@click.option("--attr", "attrs", multiple=True, help="Search attribute KEY=VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def wf_list(ctx: click.Context, wf_type: str | None, status: str | None, attrs: tuple[str, ...], as_json: bool) -> None:
    """List workflows from the visibility index (the engine's workflows table)."""
    import dataclasses

    bad = [a for a in attrs if "=" not in a]
    if bad:
        raise UsageError(f"--attr {bad[0]!r} is not KEY=VALUE")
    sa = dict(a.split("=", 1) for a in attrs)
    rows = _client_call(ctx, lambda c: c.list_workflows(type=wf_type, status=status, search_attributes=sa or None))
    out = [_with_iso_times(dataclasses.asdict(r)) for r in rows]
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        _print_table(out, ["workflow_id", "workflow_type", "status", "started_at", "closed_at", "history_length",
                           "search_attributes"])


# Command groups kept in their own modules register themselves on ``cli``.
from . import _bench, _dlq, _kafka_native, _schedule  # noqa: E402,F401


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
    sys.exit(rv if isinstance(rv, int) else 0)
