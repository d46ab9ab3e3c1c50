"""The ``aion`` command group and what its command modules share: the settings from the global
options, the broker check, running a coroutine with one-line errors, tables and JSON output,
the client call, JSON arguments, an event's table row.

Every command module (``_main``, ``_replay``, ``_schedule``, ``_dlq``, ``_bench``,
``_kafka_native``) imports from here and registers its commands on :data:`cli`; this module
imports none of them, so the CLI has no import circle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Coroutine

import click

from ..common.settings import Settings
from ._broker import KAFKA_LOG, check_broker
from ._errors import EXIT_CODES_HELP, CliError, ExitCode, UsageError


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _broker_ready(ctx: click.Context, wait: float = 0.0) -> Settings:
    """The settings, once the cluster they name answers (else one line and exit code 6)."""
    root = ctx.find_root()
    s: Settings = root.obj["settings"]
    if not root.obj.get("broker_checked"):
        check_broker(s, root.obj.get("bootstrap_origin"), wait=wait)
        root.obj["broker_checked"] = True
    return s


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

    from ..client._errors import RPCTimeoutError, TopicMissingError
    from ..common.access import BROKER_LOST_CODES, KafkaAccessError
    from ..exceptions import WorkflowFailureError, WorkflowNotFoundError, WorkflowUpdateFailedError

    if isinstance(exc, TopicMissingError) and settings is not None:
        return CliError(str(exc).split(":")[0].replace(" on the broker", "") + f" on {settings.bootstrap_servers}: "
                        f"create the topics of prefix "
                        f"{settings.topic_prefix!r} first (`aion topics create`), or give the prefix they were "
                        "made with (--prefix or AION_TOPIC_PREFIX)")

    if isinstance(exc, KafkaAccessError):  # a refused login, TLS handshake or ACL
        return CliError(str(exc), ExitCode.ACCESS_DENIED)
    if isinstance(exc, WorkflowFailureError):
        return CliError(str(exc), ExitCode.TIMED_OUT if exc.status == "TIMED_OUT" else ExitCode.WORKFLOW_FAILED)
    if isinstance(exc, WorkflowUpdateFailedError):  # rejected, or its handler raised: no result
        cause = exc.cause
        return CliError(str(exc) + (f" (cause: {type(cause).__name__}: {cause})" if cause is not None and
                                    str(cause) not in str(exc) else ""), ExitCode.WORKFLOW_FAILED)
    if isinstance(exc, WorkflowNotFoundError):
        return CliError(str(exc), ExitCode.NOT_FOUND)
    if isinstance(exc, RPCTimeoutError):
        return CliError(str(exc), ExitCode.TIMED_OUT)
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError) \
            and exc.args[0].code() in BROKER_LOST_CODES:
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


def _client_call(ctx: click.Context, fn: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    from ..client import Client

    from ..ops._tracing import configure, flush

    s = _broker_ready(ctx)
    traced = configure(s.tracing, "aion-cli")  # AION_TRACING: the command's StartWorkflow/Signal/Query spans

    async def main() -> Any:
        client = await Client.connect(s.bootstrap_servers, topic_prefix=s.topic_prefix, settings=s)
        try:
            return await fn(client)
        finally:
            await client.close()

    try:
        return _run(main())
    finally:
        if traced:
            flush()


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


def _emit(value: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(value, default=str))
    elif isinstance(value, (dict, list)):
        click.echo(json.dumps(value, indent=2, default=str))
    else:
        click.echo(value)


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

