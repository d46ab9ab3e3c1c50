"""``aion bench [SCENARIO]...``: throughput, latency, timers, rebuild, recovery, pause and the Kafka floor.

Every run starts the workers it needs on fresh topics, shows a live progress line, prints a
table (medians of ``--runs`` runs, with their min–max) and, with ``--json``, writes every
figure plus the machine facts to a file.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from typing import Any

import click

from ._app import _fail, _settings, cli


class _LiveLine:
    """One status line on stderr, rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def __call__(self, elapsed: float, text: str) -> None:
        line = f"[{elapsed:6.1f}s] {text}"
        if self.tty:
            pad = max(0, self._width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            sys.stderr.flush()
            self._width = len(line)
        elif time.monotonic() - self._last >= 5.0:
            self._last = time.monotonic()
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()


def _rates(value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give start rates per second separated by commas, e.g. 50,200")
    if not rates or any(r <= 0 for r in rates):
        raise click.BadParameter(f"{value!r}: every rate must be a positive number")
    return rates


@cli.command("bench")
@click.argument("scenarios", nargs=-1)
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (also: aion --bootstrap ... bench).")
@click.option("--partitions", type=int, default=None, help="Partitions of the benchmark's topics (default: the settings', 12).")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds measured per phase (after the warm-up).")
@click.option("--warmup", type=float, default=None, help="Seconds of load before measuring (default: duration/6, 1–5 s).")
@click.option("--runs", type=int, default=3, show_default=True, help="Repetitions; figures are medians with their min–max.")
@click.option("--concurrency", type=int, default=200, show_default=True, help="Workflows in flight (throughput).")
@click.option("--rates", default="50,200", show_default=True, help="Fixed start rates per second (latency).")
@click.option("--engines", type=int, default=1, show_default=True, help="Engine workers (throughput, latency).")
@click.option("--activity-workers", type=int, default=1, show_default=True)
@click.option("--kills", type=int, default=3, show_default=True, help="kill -9 rounds (recovery), SIGSTOP rounds (pause).")
@click.option("--pause", "pause_s", type=float, default=14.0, show_default=True,
              help="Seconds an engine worker is stopped with SIGSTOP before SIGCONT (pause).")
@click.option("--recovery-rate", type=float, default=50.0, show_default=True,
              help="Starts per second during recovery, pause and rolling.")
@click.option("--rolling-engines", type=int, default=4, show_default=True,
              help="Engine workers restarted one by one (rolling; over --partitions, default 24 there).")
@click.option("--standby", "standby_replicas", type=int, default=1, show_default=True,
              help="Standby replicas of the engine tables (rolling).")
@click.option("--rebuild-events", type=int, default=1_000_000, show_default=True, help="Events to rebuild (rebuild).")
@click.option("--timer-count", type=int, default=10_000, show_default=True,
              help="Timers falling due over --duration seconds (timers).")
@click.option("--timer-load-rate", type=float, default=100.0, show_default=True,
              help="One-activity workflows started per second while the timers fall due (timers; 0: none).")
@click.option("--no-wheel", is_flag=True, help="Skip the timer wheel's in-process 1,000,000-timer part (timers).")
@click.option("--no-floor", is_flag=True, help="Skip the Kafka floor runs beside throughput and latency.")
@click.option("--floor", "floor_kind", type=click.Choice(["bare", "txn"]), default="bare", show_default=True,
              help="The floor's pattern: bare producers and consumers, or the engine's transactions (one per "
                   "partition and batch) with its changelog records.")
@click.option("--keep-topics", is_flag=True, help="Keep each run's topics and logs (for inspection).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every figure and the machine facts to this file ('-' for stdout).")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown.")
@click.pass_context
def bench_cmd(ctx: click.Context, scenarios: tuple[str, ...], bootstrap: str | None, partitions: int | None, duration: float, warmup: float | None, runs: int,
              concurrency: int, rates: str, engines: int, activity_workers: int, kills: int, recovery_rate: float,
              rolling_engines: int, standby_replicas: int, pause_s: float,
              rebuild_events: int, timer_count: int, timer_load_rate: float, no_wheel: bool, no_floor: bool, floor_kind: str, keep_topics: bool, json_path: str | None, markdown: bool) -> None:
    """Benchmark the engine against the Kafka floor on this broker.

    SCENARIOS: throughput, latency, timers, rebuild, recovery, pause, rolling, floor, or all
    (default); and scale (not in all: about half an hour): one history, a list's first page and
    a count among --rebuild-events workflows or events (1,000,000), and a continue-as-new cache
    miss (aion.bench.scale).
    """
    from ..bench import SCENARIOS, BenchOptions
    from ..bench._runner import render_facts, render_goals, render_table, run_bench_async
    from ._app import _run

    names = list(scenarios) or ["all"]
    if "scale" in names:
        from ..bench.scale import run as run_scale

        if names != ["scale"]:
            _fail("scale runs on its own: aion bench scale")
        bootstrap_servers = bootstrap or _settings(ctx).bootstrap_servers
        sys.exit(1 if run_scale(rebuild_events, max(runs, 5), bootstrap_servers) else 0)
    for n in names:
        if n != "all" and n not in SCENARIOS:
            _fail(f"unknown scenario {n!r}; choose from {', '.join(SCENARIOS)} or all")
    if duration <= 0 or runs < 1 or concurrency < 1 or engines < 1 or activity_workers < 1 or kills < 1:
        _fail("--duration, --runs, --concurrency, --engines, --activity-workers and --kills must be positive")
    if rolling_engines < 2 or standby_replicas < 0:
        _fail("--rolling-engines must be 2 or more (the others take over) and --standby 0 or more")
    if timer_count < 1 or timer_load_rate < 0:
        _fail("--timer-count must be positive and --timer-load-rate 0 or more")
    options = BenchOptions(
        duration=duration, warmup=warmup, runs=runs, concurrency=concurrency, rates=_rates(rates),
        engines=engines, activity_workers=activity_workers, kills=kills, recovery_rate=recovery_rate, pause_s=pause_s,
        rolling_engines=rolling_engines, rolling_partitions=partitions, standby_replicas=standby_replicas,
        rebuild_events=rebuild_events, timer_count=timer_count, timer_load_rate=timer_load_rate,
        timer_wheel=not no_wheel, floor=not no_floor, floor_kind=floor_kind, keep_topics=keep_topics,
    )
    settings = _settings(ctx)
    if bootstrap:
        settings = settings.replace(bootstrap_servers=bootstrap)
    if partitions:
        settings = settings.replace(partitions=partitions)
    live = _LiveLine()
    try:
        result: dict[str, Any] = _run(run_bench_async(settings, names, options, live))
    finally:
        live.done()
    argv = [shlex.quote(a) for a in sys.argv[1:]]
    result["command"] = "aion " + ("" if "bench" in argv else "bench ") + " ".join(argv)
    click.echo(render_facts(result))
    click.echo(render_table(result, markdown=markdown))
    if summary := render_goals(result):  # the issue "Performance"'s goals this run measured
        click.echo(summary)
    if json_path:
        text = json.dumps(result, indent=2, default=str)
        if json_path == "-":
            click.echo(text)
        else:
            with open(json_path, "w") as f:
                f.write(text + "\n")
            click.echo(f"figures written to {json_path}")


def bench_main() -> None:
    """``python -m aion.bench ...``: the same as ``aion bench ...``."""
    from ..common.settings import Settings

    bench_cmd.main(sys.argv[1:], prog_name="python -m aion.bench", obj={"settings": Settings.from_env()})
