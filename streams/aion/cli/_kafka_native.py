"""``aion rebuild``, ``aion replay check``, ``aion events tail``: the events topic as the system of record.

- ``aion rebuild`` rebuilds a stopped engine worker's RocksDB tables from the events topic;
- ``aion replay check --from-topic`` replays every recorded history against the current
  workflow code (a deploy gate: non-zero exit on any divergence);
- ``aion events tail`` follows decoded workflow events, optionally in a consumer group.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ._app import _fail, _settings, cli, event_row
from ..exceptions import AionError
from ._errors import CliError, ExitCode, UsageError
from ._replay import replay, replay_registry


# ---------------------------------------------------------------- rebuild


class _Bar:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, width: int = 28) -> None:
        self.width = width
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if p.phase == "read" and now - self._last < (0.1 if self.tty else 2.0) and p.partitions_done < p.partitions:
            return
        self._last = now
        frac = min(1.0, p.events / p.total_events) if p.total_events else 1.0
        filled = int(frac * self.width)
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:3.0f}%  "
                f"{p.events:,}/{p.total_events:,} events  {p.events_per_s:,.0f} events/s  "
                f"partitions {p.partitions_done}/{p.partitions}"
                + ("  deriving workflows and timers" if p.phase == "derive" else ""))
        if self.tty:
            click.echo("\r" + line + "\033[K", err=True, nl=False)
        else:
            click.echo(line, err=True)
        self._drawn = True

    def close(self) -> None:
        if self._drawn and self.tty:
            click.echo("", err=True)


@cli.command("rebuild")
@click.option("--data-dir", default=None, help="The engine worker's data folder (AION_DATA_DIR; overrides the global option).")
@click.option("--partition", "partitions", type=int, multiple=True, help="Rebuild only these partitions (repeatable; default: all).")
@click.option("--no-swap", is_flag=True, help="Build and compare digests only; leave the current tables in place.")
@click.option("--discard-old", is_flag=True, help="Delete the replaced tables instead of keeping them in replaced-<time>/.")
@click.option("--fail-on-mismatch", is_flag=True, help="Exit with status 3 when a rebuilt table differs from the one it replaces.")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes deriving partitions in parallel (default: one per CPU from 200,000 events on; 1: none).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def rebuild_cmd(ctx: click.Context, data_dir: str | None, partitions: tuple[int, ...], no_swap: bool,
                discard_old: bool, fail_on_mismatch: bool, processes: int | None, as_json: bool) -> None:
    """Rebuild a stopped engine worker's RocksDB tables from the events topic.

    Reads the events topic from offset 0 into fresh table folders (history, workflows, timers),
    compares digests with the current tables, sets Faust's persisted offsets, then swaps the
    fresh folders in. The worker must be stopped; consumer group offsets and changelog topics
    are not changed.
    """
    from ..engine._rebuild import DataDirInUseError, RebuildError, rebuild_tables

    s = _settings(ctx)
    if data_dir:
        s = s.replace(data_dir=data_dir)
    bar = _Bar()
    try:
        report = rebuild_tables(s, partitions=partitions or None, progress=bar, swap=not no_swap,
                                keep_backup=not discard_old, processes=processes)
    except DataDirInUseError as exc:
        bar.close()
        _fail(f"refusing to rebuild: {exc}")
        return
    except RebuildError as exc:
        bar.close()
        _fail(str(exc))
        return
    bar.close()
    if as_json:
        click.echo(json.dumps({
            "data_dir": str(report.data_dir), "table_dir": str(report.table_dir),
            "partitions": report.partitions, "events": report.events, "workflows": report.workflows,
            "timers": report.timers, "read_s": round(report.read_s, 3), "total_s": round(report.total_s, 3),
            "events_per_s": round(report.events_per_s), "swapped": report.swapped,
            "backup_dir": str(report.backup_dir) if report.backup_dir else None,
            "offsets": report.offsets, "matches": report.matches,
            "digests": [{"table": d.table, "old": d.old, "new": d.new, "old_rows": d.old_rows,
                         "new_rows": d.new_rows, "only_old": d.only_old, "only_new": d.only_new,
                         "different": d.different, "matches": d.matches} for d in report.digests],
        }))
    else:
        click.echo(f"read {report.events:,} events of {len(report.partitions)} partition(s) in {report.read_s:.2f}s "
                   f"({report.events_per_s:,.0f} events/s); derived {report.workflows:,} workflow rows and "
                   f"{report.timers:,} timer rows; {report.total_s:.2f}s in all")
        for d in report.digests:
            verdict = "match" if d.matches else (
                f"DIFFER ({d.only_old} row(s) only in the old table, {d.only_new} only in the rebuilt one, "
                f"{d.different} changed)")
            click.echo(f"  {d.table:<10} old {d.old[:16]} ({d.old_rows} rows)  new {d.new[:16]} "
                       f"({d.new_rows} rows)  {verdict}")
        click.echo("digests " + ("match: the tables were already what the events topic says" if report.matches
                                 else "differ: the rebuilt tables follow the events topic"))
        if report.swapped:
            click.echo(f"swapped into {report.table_dir}"
                       + (f"; the replaced tables are in {report.backup_dir} (delete it when satisfied)"
                          if report.backup_dir else ""))
        else:
            click.echo("--no-swap: the current tables were left in place")
    if fail_on_mismatch and not report.matches:
        sys.exit(3)


# ---------------------------------------------------------------- replay check


# ``aion replay`` is declared in _replay (``aion replay FILE``); ``check`` registers on it.
@replay.command("check")
@click.option("--from-topic", is_flag=True, help="Read every history from the events topic.")
@click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A JSON history file instead (repeatable).")
@click.option("--workflow", "workflow_id", default=None, help="Only this workflow id.")
@click.option("--workflows", "modules", multiple=True, help="Module(s) with the @workflow.defn classes to check.")
@click.option("--build-id", default=None,
              help="Check a deployed build instead (from the deployments topic): the gate before routing to it.")
@click.option("--package", "package_path", default=None, type=click.Path(exists=True),
              help="Check a module file or package directory as `aion deploy create` would deploy it.")
@click.option("--running-only", is_flag=True, help="Check only workflows whose latest run is still open.")
@click.option("--strict", is_flag=True, help="Also compare recorded values (activity inputs, timer times).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per checked workflow, then a summary.")
@click.pass_context
def replay_check(ctx: click.Context, from_topic: bool, files: tuple[str, ...], workflow_id: str | None,
                 modules: tuple[str, ...], build_id: str | None, package_path: str | None, running_only: bool,
                 strict: bool, as_json: bool) -> None:
    """Replay histories against the code in --workflows (or a --build-id / --package) and
    report divergences.

    Exits 1 when any checked workflow diverges or fails to replay: run it before deploying
    changed workflow code, or before routing a type to a new build (with --build-id or
    --package only the histories of the build's workflow types are checked).
    """
    from ..client._history import describe as describe_history
    from ..engine.worker import discover
    from ..runtime import replay_history
    from ._imports import import_user_modules

    if from_topic == bool(files):
        raise UsageError("give either --from-topic or --file PATH")
    s = _settings(ctx)
    if sum(map(bool, (modules, build_id, package_path))) != 1:
        raise UsageError("give the code to check: --workflows MODULE, --build-id ID or --package PATH (one of them)")
    only_types: set[str] | None = None
    if modules:
        workflows, activities = discover(import_user_modules(modules, "workflow"))
        if not workflows:
            raise UsageError(f"no @workflow.defn class in {', '.join(modules)}: point --workflows at the modules "
                             "that define your workflows")
        registry = replay_registry(workflows, activities)
    else:
        registry = _build_registry(s, build_id, package_path)
        only_types = set(registry.workflows)

    def histories() -> Any:
        if from_topic:
            from ..engine._rebuild import RebuildError, read_histories

            try:
                yield from read_histories(s, workflow_id=workflow_id)
            except RebuildError as exc:
                _fail(str(exc))
        else:
            from ..runtime._history_json import load_history

            for f in files:
                events = load_history(f)
                if events and (workflow_id is None or events[0].workflow_id == workflow_id):
                    yield events[0].workflow_id, events

    checked = diverged = failed = skipped = events_n = 0
    for wid, events in histories():
        if only_types is not None and not any(
                e.type == "WorkflowStarted" and e.body.workflow_type in only_types for e in events):
            continue  # not a history of the build's types
        # Open or closed is what the history says (a replay that stops early knows no better).
        if running_only and describe_history(wid, events).status != "RUNNING":
            skipped += 1
            continue
        result = replay_history(registry, events, strict=strict)
        checked += 1
        events_n += len(events)
        if result.divergence is not None:
            diverged += 1
        elif result.error is not None:
            failed += 1
        if as_json:
            click.echo(json.dumps({
                "workflow_id": wid, "events": result.events, "runs": result.runs, "status": result.status,
                "ok": result.ok,
                "divergence": None if result.divergence is None else {
                    "seq": getattr(result.divergence, "seq", None), "message": str(result.divergence)},
                "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}",
            }))
        elif not result.ok:
            click.echo(str(result))
    summary = (f"checked {checked} workflow(s), {events_n} events: {diverged} diverged, {failed} failed to replay"
               + (f"; {skipped} closed workflow(s) skipped" if skipped else ""))
    if as_json:
        click.echo(json.dumps({"summary": summary, "checked": checked, "diverged": diverged, "failed": failed,
                               "skipped": skipped}))
    else:
        click.echo(summary)
    if workflow_id is not None and checked == 0 and skipped == 0:
        raise CliError(f"no history of workflow {workflow_id!r} found", ExitCode.NOT_FOUND)
    if diverged or failed:
        sys.exit(1)


def _build_registry(s: Any, build_id: str | None, package_path: str | None) -> Any:
    """The Registry of a deployed build (read from the deployments topic) or of a local package,
    loaded as an engine worker loads it."""
    from ..deploy import PackageError, build_package, load_package_path
    from ..engine._deployments import read_deployments

    try:
        if package_path is not None:
            pkg = build_package(package_path)
            return load_package_path(f"check-{pkg.default_build_id}", pkg.root, [], pkg.data)
        assert build_id is not None
        table = read_deployments(s)
        rec = table.builds.get(build_id)
        if rec is None:
            raise CliError(f"no build {build_id!r} is deployed (deployed: {', '.join(sorted(table.builds)) or 'none'}); "
                           "see aion deploy list", ExitCode.NOT_FOUND)
        return load_package_path(build_id, rec.root, rec.modules, rec.package)
    except CliError:
        raise
    except PackageError as exc:
        raise UsageError(str(exc)) from None
    except AionError as exc:  # BuildLoadError: it does not import
        _fail(str(exc))
        raise


# ---------------------------------------------------------------- events tail


@cli.group("events")
def events() -> None:
    """Follow the events topic."""


@events.command("tail")
@click.option("--workflow", "workflow_id", default=None, help="Only this workflow's events.")
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable), e.g. WorkflowCompleted.")
@click.option("--from-beginning", is_flag=True, help="Start at the first retained event when there is no committed offset.")
@click.option("--group", default=None, help="Consumer group: resume from its committed offsets and commit what was printed.")
@click.option("--tombstones", is_flag=True, help="Also print retention tombstones.")
@click.option("--max", "max_events", type=int, default=None, help="Stop after this many events.")
@click.option("--idle-timeout", type=float, default=None, help="Stop after this many seconds without events (counted once partitions are assigned).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.pass_context
def events_tail(ctx: click.Context, workflow_id: str | None, types: tuple[str, ...], from_beginning: bool,
                group: str | None, tombstones: bool, max_events: int | None, idle_timeout: float | None,
                as_json: bool) -> None:
    """Print workflow events as they are recorded (until Ctrl-C, --max or --idle-timeout)."""
    from ..client._events import EventConsumer

    s = _settings(ctx)
    try:
        consumer = EventConsumer(group, settings=s, workflow_id=workflow_id, event_types=types or None,
                                 from_beginning=from_beginning, include_tombstones=tombstones)
    except ValueError as exc:
        _fail(str(exc))
        return
    printed = 0
    last = time.monotonic()
    try:
        while max_events is None or printed < max_events:
            consumer.commit()
            # Never fetch more than may be printed: what is fetched is committed.
            batch = consumer.poll(0.5, max_records=500 if max_events is None else max_events - printed)
            if not batch:
                if not consumer.assignment():
                    last = time.monotonic()  # still joining the group: not idle yet
                elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                    break
                continue
            last = time.monotonic()
            for rec in batch:
                _print_record(rec, as_json)
                printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _print_record(rec: Any, as_json: bool) -> None:
    if rec.event is None:
        row: dict[str, Any] = {"workflow_id": rec.workflow_id, "seq": rec.seq, "type": None, "tombstone": True}
    else:
        row = event_row(rec.event)
        row = {"workflow_id": rec.workflow_id, **row, "run_id": rec.event.run_id}
    row["partition"], row["offset"] = rec.partition, rec.offset
    if as_json:
        click.echo(json.dumps(row, default=str))
    elif rec.event is None:
        click.echo(f"{rec.partition}@{rec.offset}  {rec.workflow_id}  #{rec.seq}  (tombstone: retired)")
    else:
        details = json.dumps(row["details"], default=str)
        if len(details) > 160:
            details = details[:157] + "..."
        click.echo(f"{rec.partition}@{rec.offset}  {row['recorded_at']}  {rec.workflow_id}  #{rec.seq}  "
                   f"{row['type']}  {details}")
