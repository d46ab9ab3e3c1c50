"""Runs the scenarios, repeats them, merges the runs (median + spread), adds the floor ratios,
and renders the table."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Callable

from ..common.settings import Settings
from ._facts import machine_facts
from ._stats import combine_runs, ratio

#: Scenario names in the order ``all`` runs them.
SCENARIOS = ("throughput", "latency", "timers", "rebuild", "recovery", "pause", "rolling", "floor")

Progress = Callable[[float, str], None]

#: Timer figures shown in the table (the JSON has everything the timer scenario returns).
TIMER_FIGURES = ("timers", "spread_s", "fired", "fire_lag_p50_ms", "fire_lag_p99_ms", "fire_lag_max_ms",
                 "fire_send_p50_ms", "fire_send_p99_ms", "fire_deliver_p50_ms", "fire_deliver_p99_ms",
                 "load_starts_per_s", "load_achieved_per_s", "load_p50_ms", "load_p99_ms",
                 "pending_timers", "pending_1m_rss_added_mb", "pending_1m_arm_per_s", "pending_1m_burst_fire_s")


@dataclasses.dataclass
class BenchOptions:
    """What to run and how hard. ``duration`` is seconds of measurement per phase (after
    ``warmup``); ``runs`` repetitions are merged into medians with their spread."""

    duration: float = 60.0
    warmup: float | None = None
    runs: int = 3
    concurrency: int = 200
    rates: tuple[float, ...] = (50.0, 200.0)
    engines: int = 1
    activity_workers: int = 1
    kills: int = 3
    recovery_rate: float = 50.0
    recovery_settle: float = 15.0
    recovery_deadline: float = 180.0
    pause_s: float = 14.0
    #: Rolling restart: engine workers, partitions (None: 24) and standby replicas.
    rolling_engines: int = 4
    rolling_partitions: int | None = None
    standby_replicas: int = 1
    #: Timer scenario sizes (None: the timer scenario's own defaults).
    timer_count: int | None = None
    timer_pending: int | None = None
    #: One-activity workflows started per second while the timers fall due (0: none).
    timer_load_rate: float = 100.0
    #: Run the timer wheel's in-process scenario (1,000,000 pending) too.
    timer_wheel: bool = True
    rebuild_events: int = 1_000_000
    floor: bool = True
    #: The floor's pattern: "bare" (no transactions, no changelogs) or "txn" (the engine's
    #: transactions and changelog records: ``_floor.run_engine_txn``).
    floor_kind: str = "bare"
    keep_topics: bool = False

    def warmup_s(self) -> float:
        return self.warmup if self.warmup is not None else min(5.0, max(1.0, self.duration / 6))


def _phase_progress(progress: Progress | None, label: str) -> Progress | None:
    if progress is None:
        return None
    return lambda elapsed, text: progress(elapsed, f"{label} {text}")


async def _run_one(name: str, settings: Settings, o: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from . import _engine_runs as er
    from . import _floor_runs as fr

    keep = o.keep_topics
    w = o.warmup_s()
    if name == "throughput":
        return await er.throughput(settings, duration=o.duration, warmup=w, concurrency=o.concurrency,
                                   engines=o.engines, activity_workers=o.activity_workers,
                                   progress=progress, keep=keep)
    if name == "latency":
        return await er.latency(settings, duration=o.duration, warmup=w, rates=list(o.rates), engines=o.engines,
                                activity_workers=o.activity_workers, progress=progress, keep=keep)
    if name == "floor_throughput":
        return await fr.floor_throughput(settings, duration=o.duration, warmup=w, concurrency=o.concurrency,
                                         progress=progress, keep=keep, txn=o.floor_kind == "txn")
    if name == "floor_latency":
        return await fr.floor_latency(settings, duration=o.duration, warmup=w, rates=list(o.rates),
                                      progress=progress, keep=keep, txn=o.floor_kind == "txn")
    if name == "recovery":
        return await er.recovery(settings, duration=o.duration, kills=o.kills, rate=o.recovery_rate,
                                 activity_workers=o.activity_workers, progress=progress, keep=keep,
                                 settle=o.recovery_settle, deadline=o.recovery_deadline)
    if name == "pause":
        return await er.recovery(settings, duration=o.duration, kills=o.kills, rate=o.recovery_rate,
                                 activity_workers=o.activity_workers, progress=progress, keep=keep,
                                 settle=o.recovery_settle, deadline=o.recovery_deadline, pause_s=o.pause_s)
    if name == "rolling":
        from ._rolling import rolling

        return await rolling(settings, rate=o.recovery_rate, engines=o.rolling_engines,
                             partitions=o.rolling_partitions or 24, standby=o.standby_replicas,
                             activity_workers=o.activity_workers, progress=progress, keep=keep,
                             settle=o.recovery_settle * 2 / 3, deadline=o.recovery_deadline)
    if name == "rebuild":
        from ._rebuild_run import rebuild

        return await rebuild(settings, events=o.rebuild_events, progress=progress, keep=keep)
    if name == "timers":
        try:
            from . import _timers
        except ImportError:
            return {"available": False, "note": "not available (aion.bench._timers is not installed)"}
        import inspect

        params = inspect.signature(_timers.run).parameters
        kwargs: dict[str, Any] = {}
        if o.timer_count is not None and "n" in params:
            kwargs["n"] = o.timer_count
        if o.timer_pending is not None and "pending" in params:
            kwargs["pending"] = o.timer_pending
        if "keep" in params:
            kwargs["keep"] = keep
        if "load_rate" in params:
            kwargs["load_rate"] = o.timer_load_rate
        if "in_process" in params:
            kwargs["in_process"] = o.timer_wheel
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, lambda: _timers.run(settings, o.duration, **kwargs))
        return dict(out, available=True)
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)} or all")


async def _repeat(name: str, settings: Settings, o: BenchOptions, progress: Progress | None,
                  runs: int | None = None) -> dict[str, Any]:
    n = runs if runs is not None else o.runs
    results = []
    for r in range(n):
        results.append(await _run_one(name, settings, o, _phase_progress(progress, f"{name} [{r + 1}/{n}]")))
    return combine_runs(results)


def _plan(scenarios: list[str], o: BenchOptions) -> list[str]:
    names: list[str] = []
    for s in scenarios:
        if s == "all":
            names.extend(x for x in SCENARIOS if x not in names)
        elif s not in SCENARIOS:
            raise ValueError(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)} or all")
        elif s not in names:
            names.append(s)
    return names


async def run_bench_async(settings: Settings, scenarios: list[str], o: BenchOptions,
                          progress: Progress | None = None) -> dict[str, Any]:
    names = _plan(scenarios, o)
    started = time.time()
    out: dict[str, Any] = {
        "machine": machine_facts(settings),
        "options": {**dataclasses.asdict(o), "warmup": o.warmup_s()},
        "scenarios": {},
    }
    sc = out["scenarios"]
    want_floor = o.floor or "floor" in names
    for name in names:
        if name == "floor":
            floor: dict[str, Any] = {}
            if "throughput" in sc and "floor" in sc["throughput"]:
                floor["throughput"] = sc["throughput"]["floor"]
            else:
                floor["throughput"] = await _repeat("floor_throughput", settings, o, progress)
            if "latency" in sc and "floor" in sc["latency"]:
                floor["latency"] = sc["latency"]["floor"]
            else:
                floor["latency"] = await _repeat("floor_latency", settings, o, progress)
            sc["floor"] = floor
            continue
        if name in ("timers",):
            # The lag through Kafka is repeated --runs times; the wheel's in-process scenario
            # (1,000,000 pending timers, no broker) runs once, with the first.
            runs = [await _run_one(name, settings, o, _phase_progress(progress, f"timers [1/{o.runs}]"))]
            rest = dataclasses.replace(o, timer_wheel=False)
            for r in range(1, o.runs):
                runs.append(await _run_one(name, settings, rest,
                                           _phase_progress(progress, f"timers [{r + 1}/{o.runs}]")))
            sc[name] = combine_runs(runs)
            continue
        if name in ("throughput", "latency") and want_floor:
            # Interleave engine and floor runs so that both see the same machine state.
            eng, flo = [], []
            for r in range(o.runs):
                eng.append(await _run_one(name, settings, o, _phase_progress(progress, f"{name} [{r + 1}/{o.runs}]")))
                flo.append(await _run_one(f"floor_{name}", settings, o,
                                          _phase_progress(progress, f"floor {name} [{r + 1}/{o.runs}]")))
            res = combine_runs(eng)
            res["floor"] = combine_runs(flo)
            res["ratio_to_floor"] = _ratios(name, res, res["floor"])
            sc[name] = res
            continue
        sc[name] = await _repeat(name, settings, o, progress)
    out["elapsed_s"] = round(time.time() - started, 1)
    out["goals"] = goals(out)
    return out


def _ratios(name: str, eng: dict[str, Any], flo: dict[str, Any]) -> dict[str, Any]:
    """Engine figure / floor figure (throughput: the engine's share of the floor's rate;
    latency: how many times the floor's latency the engine takes)."""
    if name == "throughput":
        return {
            "workflows_per_s": ratio(eng.get("workflows_per_s"), flo.get("workflows_per_s")),
            "events_per_s": ratio(eng.get("events_per_s"), flo.get("events_per_s")),
            "engine_cpu_cores": ratio((eng.get("cpu") or {}).get("engine", {}).get("cpu_cores"),
                                      (flo.get("cpu") or {}).get("engine", {}).get("cpu_cores")),
        }
    out: dict[str, Any] = {}
    for rate, summary in (eng.get("rates") or {}).items():
        f = (flo.get("rates") or {}).get(rate) or {}
        out[rate] = {k: ratio(summary.get(k), f.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
    return out


def run_bench(settings: Settings, scenarios: list[str], options: BenchOptions | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Run ``scenarios`` (names from :data:`SCENARIOS`, or ``all``) against the broker of
    ``settings``; every run gets fresh topics (``bench-<tag>-<random>``) deleted afterwards."""
    return asyncio.run(run_bench_async(settings, scenarios, options or BenchOptions(), progress))


# ------------------------------------------------------------------ table


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if float(v).is_integer() and abs(v) >= 10:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def _fmt(v: Any, spread: Any = None, unit: str = "") -> str:
    if v is None:
        return "-"
    s = _num(v)
    if isinstance(spread, list) and len(spread) == 2 and spread[0] != spread[1]:
        s += f" ({_num(spread[0])}–{_num(spread[1])})"
    return s + unit


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(scenario, figure, engine, floor, engine/floor) rows; engine figures are medians with
    (min–max) of the runs."""
    rows: list[tuple[str, str, str, str, str]] = []
    sc = result.get("scenarios", {})

    def add(scn: str, fig: str, d: dict[str, Any], path: tuple[str, ...], floor: dict[str, Any] | None = None,
            rat: Any = None, unit: str = "") -> None:
        v = _get(d, *path)
        sp = _get(d.get("spread", {}), *path) if isinstance(d, dict) else None
        fv = _get(floor, *path) if floor else None
        fsp = _get(floor.get("spread", {}), *path) if floor else None
        rows.append((scn, fig, _fmt(v, sp, unit), _fmt(fv, fsp, unit) if floor else "", "" if rat is None else f"{rat:g}"))

    if "throughput" in sc:
        t = sc["throughput"]
        f = t.get("floor")
        r = t.get("ratio_to_floor", {})
        add("throughput", "workflows/s", t, ("workflows_per_s",), f, r.get("workflows_per_s"))
        add("throughput", "events/s", t, ("events_per_s",), f, r.get("events_per_s"))
        for p in ("p50_ms", "p99_ms"):
            add("throughput", f"latency {p[:3]} under load", t, ("latency", p), f,
                ratio(_get(t, "latency", p), _get(f, "latency", p)), " ms")
        add("throughput", "engine CPU (cores)", t, ("cpu", "engine", "cpu_cores"), f, r.get("engine_cpu_cores"))
        add("throughput", "engine RSS", t, ("cpu", "engine", "rss_mb"), f, None, " MB")
        add("throughput", "activity worker CPU (cores)", t, ("cpu", "activity_worker", "cpu_cores"), f)
        add("throughput", "broker CPU (cores)", t, ("cpu", "broker", "cpu_cores"), f)
        add("throughput", "load generator CPU (cores)", t, ("cpu", "load_generator", "cpu_cores"), f)
    if "latency" in sc:
        t = sc["latency"]
        f = t.get("floor")
        for rate in (t.get("rates") or {}):
            rr = _get(t, "ratio_to_floor", rate) or {}
            for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
                add("latency", f"{rate} start→result {p[:-3]}", t, ("rates", rate, p), f, rr.get(p), " ms")
    if "timers" in sc:
        t = sc["timers"]
        if not t.get("available"):
            rows.append(("timers", "-", "not available", "", ""))
        else:
            shown = [k for k in TIMER_FIGURES if k in t] or [
                k for k, v in t.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "runs"]
            for k in shown:
                add("timers", k, t, (k,))
    if "rebuild" in sc:
        t = sc["rebuild"]
        add("rebuild", "events rebuilt", t, ("events",))
        rows.append(("rebuild", "events/s", _fmt(t.get("events_per_s"), _get(t, "spread", "events_per_s")),
                     _fmt(t.get("floor_read_events_per_s")),
                     f"{ratio(t.get('events_per_s'), t.get('floor_read_events_per_s'), 3)}"))
        add("rebuild", "method", t, ("method",))
    if "recovery" in sc:
        t = sc["recovery"]
        add("recovery", "seconds until in-flight progress (median)", t, ("recovery_s_median",), None, None, " s")
        add("recovery", "seconds until in-flight progress (max)", t, ("recovery_s_max",), None, None, " s")
        if t.get("never_recovered"):
            rows.append(("recovery", f"kills not recovered within {t.get('deadline_s'):g} s",
                         f"{t['never_recovered']} of {len(t.get('kills') or [])}", "", ""))
    if "pause" in sc:
        t = sc["pause"]
        add("pause", "seconds until a stalled worker's partitions progress (median)", t, ("recovery_s_median",),
            None, None, " s")
        add("pause", "seconds until a stalled worker's partitions progress (max)", t, ("recovery_s_max",),
            None, None, " s")
        if t.get("never_recovered"):
            rows.append(("pause", f"pauses not recovered within {t.get('deadline_s'):g} s",
                         f"{t['never_recovered']} of {len(t.get('kills') or [])}", "", ""))
    if "rolling" in sc:
        t = sc["rolling"]
        what = (f"{t.get('engines')} engines, {t.get('partitions')} partitions, {t.get('standby_replicas')} standby, "
                f"{_num(t.get('rate_per_s'))} starts/s")
        rows.append(("rolling", "setup", what, "", ""))
        for kind, label in (("stop", "a worker leaves (SIGTERM)"), ("join", "a worker joins again")):
            for where, whose in (("moved", "on the partitions that moved"), ("stayed", "on the others")):
                add("rolling", f"{label}: longest start→result {whose}, median", t,
                    (f"{kind}_{where}_longest_wait_s_median",), None, None, " s")
                add("rolling", "the same, max", t, (f"{kind}_{where}_longest_wait_s_max",), None, None, " s")
            for where, whose in (("moved", "on the partitions that moved"), ("stayed", "on the others")):
                add("rolling", f"{label}: longest wait of a start {whose}, median", t,
                    (f"{kind}_{where}_start_wait_s_median",), None, None, " s")
                add("rolling", "the same, max", t, (f"{kind}_{where}_start_wait_s_max",), None, None, " s")
        add("rolling", "SIGTERM to exit, max", t, ("exit_s_max",), None, None, " s")
        for p in ("p50_ms", "p99_ms", "max_ms"):
            add("rolling", f"start→result between hand-overs {p[:-3]}", t, ("latency_between_handovers", p),
                None, None, " ms")
        add("rolling", "workflows started", t, ("started",))
        add("rolling", "completed", t, ("completed",))
        for k in ("lost", "errors", "results_duplicated", "histories_missing", "history_violations", "never_ready"):
            add("rolling", k.replace("_", " "), t, (k,))
    if "floor" in sc and "throughput" not in sc and "latency" not in sc:
        f = sc["floor"]
        add("floor", "round trips/s", f.get("throughput", {}), ("workflows_per_s",))
        for rate in _get(f, "latency", "rates") or {}:
            for p in ("p50_ms", "p99_ms"):
                add("floor", f"{rate} {p[:-3]}", f.get("latency", {}), ("rates", rate, p), None, None, " ms")
    return rows


#: The goals of the issue "Performance" that a run of ``aion bench`` can measure: (figure,
#: where it is in the result, the bound, whether the figure must stay at or under the bound).
#: Memory per resident workflow and a cache miss's replay cost per event are measured without a
#: broker (``python -m aion.bench.resident``, ``python -m aion.bench.chain``).
GOALS: tuple[tuple[str, tuple[str, ...], float, bool], ...] = (
    ("throughput, share of the floor's", ("throughput", "ratio_to_floor", "workflows_per_s"), 0.33, False),
    ("200/s start→result p50, × the floor's", ("latency", "ratio_to_floor", "200/s", "p50_ms"), 2.0, True),
    ("200/s start→result p99, × the floor's", ("latency", "ratio_to_floor", "200/s", "p99_ms"), 3.0, True),
    ("50/s start→result p50, ms", ("latency", "rates", "50/s", "p50_ms"), 10.0, True),
    ("timer lag p99 from the log, ms", ("timers", "fire_lag_p99_ms"), 50.0, True),
)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of :data:`GOALS` this run measured: its figure (the median of the runs, with
    their min–max where there are several), the bound and whether it is met. The timers goal
    is stated for 10,000 timers due over 10 s beside 100 starts/s; ``conditions`` says what the
    run used."""
    sc = result.get("scenarios", {})
    o = result.get("options", {})
    out: list[dict[str, Any]] = []
    for figure, path, bound, at_most in GOALS:
        value = _get(sc, *path)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        row: dict[str, Any] = {"goal": figure, "value": value, "bound": bound, "at_most": at_most,
                               "met": value <= bound if at_most else value >= bound}
        if path[1] == "ratio_to_floor":  # of the medians: no spread
            row["floor"] = o.get("floor_kind", "bare")
        else:
            spread = _get(sc, path[0], "spread", *path[1:])
            if isinstance(spread, list) and len(spread) == 2 and spread[0] != spread[1]:
                row["spread"] = spread
        if path[0] == "timers":
            row["conditions"] = (f"{o.get('timer_count'):,} timers over {o.get('duration'):g} s, "
                                 f"{o.get('timer_load_rate'):g} starts/s")
        out.append(row)
    return out


def render_goals(result: dict[str, Any]) -> str:
    """The goals of the run (:func:`goals`), one line each; empty when it measured none."""
    def num(v: float) -> str:
        return f"{v:g}" if abs(v) < 10 else _num(v)

    lines = []
    for g in result.get("goals") or goals(result):
        cmp = "≤" if g["at_most"] else "≥"
        spread = f" ({num(g['spread'][0])}–{num(g['spread'][1])})" if g.get("spread") else ""
        how = (f", against the {g['floor']} floor" if g.get("floor") else
               f", as run: {g['conditions']}" if g.get("conditions") else "")
        lines.append(f"goal: {g['goal']} {cmp} {num(g['bound'])}: {num(g['value'])}{spread}{how} — "
                     f"{'met' if g['met'] else 'not met'}")
    return "\n".join(lines)


def render_table(result: dict[str, Any], markdown: bool = False) -> str:
    rows = table_rows(result)
    txn = (result.get("options") or {}).get("floor_kind") == "txn"
    head = ("scenario", "figure", "aion (median, min–max)", "kafka floor (txn)" if txn else "kafka floor", "aion/floor")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.upper().ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def render_facts(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    o = result.get("options", {})
    return (f"machine: {m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_mb')} MB, {m.get('os')}; "
            f"python {m.get('python')}, faust {m.get('faust')}, aiokafka {m.get('aiokafka')}, "
            f"confluent-kafka {m.get('confluent_kafka')} (librdkafka {m.get('librdkafka')}); "
            f"kafka broker {m.get('kafka_broker') or 'unknown'} at {m.get('bootstrap')} "
            f"({'same machine' if m.get('broker_on_this_machine') else 'remote'}); "
            f"{m.get('partitions')} partitions, {o.get('engines')} engine worker(s), "
            f"{o.get('activity_workers')} activity worker(s); {o.get('runs')} run(s) of {o.get('duration')}s each")
