"""``aion bench rolling``: a rolling restart of the engine workers under load, each worker
stopped with SIGTERM, waited for and started again on its own data folder, one at a time.

What it measures, per planned hand-over (a worker leaving, then the same worker joining
again): the longest start→result time of the workflows in flight during it — from the signal
(or the moment the group assigns the restarted worker its partitions: the ``generation_at_ms``
of its ``/readyz``) until every live worker
reports its partitions ready (``/readyz``) and the live workers own all partitions between
them, plus :data:`PROBE_S` — on the partitions that changed owners (the pause the affected
workflows see, as a user sees it: it includes a workflow's ordinary latency) and, beside it,
on the partitions that stayed (what the machine itself costs in the same seconds); and, read
from the events topic afterwards, the longest **wait of a start** waiting in the same window: from
its send until the engine stepped it (its ``WorkflowStarted``'s ``recorded_at_ms``), on the
partitions that moved and on those that stayed — the pause itself, without the workflow's own
run (its activity, its result's way back). Overall: nothing lost — every workflow started completed
once, and the events topic holds, for each, one gapless history with one start and one
completion (no duplicate result, no forked history).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from typing import Any

from ..common.settings import Settings
from ..testing.ports import free_ports
from ._deploy import Deployment, wait_ready
from ._engine_runs import EngineDriver, _connect, _live_open_loop, _sleep_progress
from ._load import LoadResult, Progress
from ._procs import Proc
from ._stats import latency_summary, median
from ..model import WorkflowStarted

#: Seconds after the group is ready again whose new workflows still count for the hand-over.
PROBE_S = 1.0


def _readyz(port: int) -> dict[str, Any] | None:
    """An engine's ``/readyz`` answer (its JSON, either status), or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:  # 503: not ready; the body says why
        try:
            return dict(json.loads(exc.read()))
        except Exception:
            return None
    except Exception:
        return None


def _group_ready(ports: list[int], partitions: int) -> dict[int, int] | None:
    """partition -> the metrics port of its engine, when every engine on ``ports`` is ready
    and they own every partition, each exactly once; else None."""
    owned: list[int] = []
    owner: dict[int, int] = {}
    for port in ports:
        h = _readyz(port)
        if h is None or not h.get("ready"):
            return None
        owned.extend(h.get("partitions") or [])
        owner.update({p: port for p in h.get("partitions") or []})
    return owner if sorted(owned) == list(range(partitions)) else None


def _generation_at(port: int) -> float | None:
    """When the engine on ``port`` was given its current assignment (``generation_at_ms`` of its
    ``/readyz``), as a ``time.monotonic()`` value; None when it does not say."""
    h = _readyz(port)
    at = h.get("generation_at_ms") if h else None
    return None if at is None else at / 1000 - (time.time() - time.monotonic())


#: The last complete ownership wait_group_ready saw (partition -> metrics port).
OWNERS: dict[int, int] = {}


async def wait_group_ready(ports: list[int], partitions: int, timeout: float,
                           procs: list[Proc] | None = None) -> float | None:
    """Seconds until :func:`_group_ready` (None: not within ``timeout``); the ownership it saw
    goes to :data:`OWNERS`. Raises when one of ``procs`` died meanwhile (with its log's tail)."""
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for p in procs or ():
            if not p.alive():
                raise RuntimeError(f"engine worker {p.pid} exited ({p.p.returncode if p.p else None}) during the "
                                   f"rolling restart:\n{p.tail()}")
        owner = await loop.run_in_executor(None, _group_ready, ports, partitions)
        if owner is not None:
            OWNERS.clear()
            OWNERS.update(owner)
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    return None


def _port(p: Proc) -> int:
    return int(p.env["AION_METRICS_PORT"])


def _handover_figures(live: LoadResult, kind: str, worker: int, t_event: float, t_ready: float | None,
                      deadline: float, moved: set[int], partitions: int) -> dict[str, Any]:
    """The workflows whose lifetime overlaps ``[t_event, t_ready + PROBE_S]``, split by where
    they live: on a partition that changed owners in the hand-over (``moved``) or on one that
    stayed (the machine's own noise in the same seconds): how long the longest of each took,
    start→result."""
    from ..codec import partition_for

    t_end = (t_ready if t_ready is not None else deadline) + PROBE_S
    lat: dict[bool, list[float]] = {True: [], False: []}
    for st, end, i in live.done:
        if st <= t_end and end >= t_event:
            lat[partition_for(f"roll-{i}", partitions) in moved].append(end - st)
    stuck = [st for st in live.pending.values() if st <= t_end]
    out: dict[str, Any] = {
        "kind": kind,
        "worker": worker,
        "ready_after_s": None if t_ready is None else round(t_ready - t_event, 2),
        "moved_partitions": len(moved),
        "workflows": len(lat[True]) + len(lat[False]) + len(stuck),
        "still_waiting": len(stuck),
    }
    for key, xs in (("moved", sorted(lat[True])), ("stayed", sorted(lat[False]))):
        out[f"{key}_longest_wait_s"] = round(xs[-1], 3) if xs and not stuck else None
        out[f"{key}_p50_wait_ms"] = round(1000 * (median(xs) or 0.0), 1)
    return out


def _start_waits(live: LoadResult, started_ms: dict[str, int], wall_ms: float, t_event: float, t_end: float,
                 moved: set[int], partitions: int) -> dict[str, float | None]:
    """How long the starts waiting at some time in ``[t_event, t_end]`` (monotonic: sent before
    its end, stepped after its start) waited before the engine stepped them (their
    ``WorkflowStarted.recorded_at_ms`` from the log, minus the time the load sent them), the
    longest on the partitions that moved and on those that stayed. A start is a workflow's first
    command: while its partition changes owners it waits for the new owner, and its wait holds
    none of the workflow's own run (the activity, the result's way back). A start sent before
    the window and still waiting in it counts: it waited for the hand-over too."""
    from ..codec import partition_for

    waits: dict[bool, list[float]] = {True: [], False: []}
    for st, _end, i in live.done:
        wid = f"roll-{i}"
        at = started_ms.get(wid)
        if at is None or st > t_end or at < wall_ms + 1000 * t_event:
            continue
        waits[partition_for(wid, partitions) in moved].append((at - (wall_ms + 1000 * st)) / 1000)
    return {f"{key}_start_wait_s": round(max(waits[flag]), 3) if waits[flag] else None
            for key, flag in (("moved", True), ("stayed", False))}


def check_histories(settings: Settings, prefix: str) -> dict[str, Any]:
    """Read the events topic (committed records) and check every workflow whose id starts with
    ``prefix``: seqs 1..n without a gap, one ``WorkflowStarted`` and one ``WorkflowCompleted``.
    Also returns when each workflow's start was stepped (``started_ms``: its ``WorkflowStarted``'s
    ``recorded_at_ms``), for the starts' waits in the hand-overs (:func:`_start_waits`)."""
    from ..codec import Codec
    from ..engine._changelog import scan_events

    codec = Codec(registry_url=settings.schema_registry_url)
    seqs: dict[str, dict[int, str]] = {}
    started_ms: dict[str, int] = {}
    for _p, _o, _k, value in scan_events(settings, timeout_s=60):
        if value is None:
            continue
        ev = codec.decode_event(value)
        if not ev.workflow_id.startswith(prefix):
            continue
        if isinstance(ev.body, WorkflowStarted):
            started_ms[ev.workflow_id] = ev.recorded_at_ms
        # The same (workflow, seq) written again (a re-run after a crash) replaces: one meaning.
        seqs.setdefault(ev.workflow_id, {})[ev.seq] = type(ev.body).__name__
    bad: list[str] = []
    for wid, by_seq in seqs.items():
        kinds = Counter(by_seq.values())
        if sorted(by_seq) != list(range(1, len(by_seq) + 1)):
            bad.append(f"{wid}: seqs {sorted(by_seq)} have a gap")
        elif kinds["WorkflowStarted"] != 1 or kinds["WorkflowCompleted"] != 1:
            bad.append(f"{wid}: {kinds['WorkflowStarted']} starts, {kinds['WorkflowCompleted']} completions")
    return {"workflows": len(seqs), "violations": len(bad), "examples": bad[:5], "ids": set(seqs),
            "started_ms": started_ms}


async def rolling(base: Settings, *, rate: float, engines: int = 4, partitions: int = 24, standby: int = 1,
                  activity_workers: int = 1, settle: float = 10.0, deadline: float = 120.0,
                  progress: Progress | None = None, keep: bool = False) -> dict[str, Any]:
    """Steady open-loop load (``rate`` one-activity workflows/s) on ``engines`` engine workers
    over ``partitions`` partitions with ``standby`` standby replicas; then each worker in turn:
    SIGTERM, wait for it to exit and for the others to own every partition, start it again on
    its data folder, wait until the group is ready with it; ``settle`` seconds between steps."""
    base = replace(base, partitions=partitions)
    results: list[dict[str, Any]] = []
    exits: list[dict[str, Any]] = []
    with Deployment(base, "roll", keep=keep) as deploy:
        s = deploy.settings
        env = {"AION_STANDBY_REPLICAS": str(standby), "AION_METRICS_HOST": "127.0.0.1",
               "AION_METRICS_PORT": str(free_ports(engines + activity_workers + 1) - 1)}
        workers = [deploy.procs.engine(env) for _ in range(engines)]
        for _ in range(activity_workers):
            deploy.procs.activities()
        ports = [_port(w) for w in workers]
        client = await _connect(s)
        tag = "roll"
        try:
            driver = EngineDriver(client, tag)
            await wait_ready(driver.run_one, deploy, timeout=240.0)
            if await wait_group_ready(ports, partitions, 240.0, workers) is None:
                raise RuntimeError(f"the {engines} engine workers never owned all {partitions} partitions:\n"
                                   f"{deploy.logs()}")
            stop = asyncio.Event()
            live = LoadResult()
            load_task = asyncio.create_task(_live_open_loop(driver, rate, live, stop))
            await _sleep_progress(settle, progress, f"{engines} engine workers settling under load")
            loop = asyncio.get_running_loop()
            windows: list[tuple[str, int, float, float | None, set[int]]] = []
            before = dict(OWNERS)
            for i, w in enumerate(workers):
                if progress is not None:
                    progress(0.0, f"worker {i + 1}/{engines}: SIGTERM")
                t_term = time.monotonic()
                await loop.run_in_executor(None, w.stop, 60.0)
                exits.append({"worker": i + 1, "exit_s": round(time.monotonic() - t_term, 2),
                              "returncode": w.p.returncode if w.p is not None else None})
                others = [p for j, p in enumerate(ports) if j != i]
                took = await wait_group_ready(others, partitions, deadline, [p for p in workers if p is not w])
                moved = {p for p in range(partitions) if OWNERS.get(p) != before.get(p)}
                windows.append(("stop", i + 1, t_term, None if took is None else time.monotonic(), moved))
                before = dict(OWNERS)
                await _sleep_progress(settle / 2, progress, f"worker {i + 1}/{engines}: stopped, others own all")
                if progress is not None:
                    progress(0.0, f"worker {i + 1}/{engines}: starting again")
                t_start = time.monotonic()
                w.start()  # the same arguments, environment and data folder
                took = await wait_group_ready(ports, partitions, deadline, workers)
                moved = {p for p in range(partitions) if OWNERS.get(p) != before.get(p)}
                # The hand-over starts when the group assigns the new worker its partitions (the
                # generation, when the moved partitions stop), not when its process starts
                # (seconds of imports before it joins) nor when a poll of its /readyz first saw
                # it assigned (1.4 s late in one run, 6.8 s early in another: an assignment
                # superseded). Its process start only if it does not say.
                t_ready = None if took is None else time.monotonic()
                t_gen = await loop.run_in_executor(None, _generation_at, ports[i])
                windows.append(("join", i + 1, t_start if t_gen is None else t_gen, t_ready, moved))
                before = dict(OWNERS)
                await _sleep_progress(settle, progress, f"worker {i + 1}/{engines}: back; group settling")
            stop.set()
            await load_task
            give_up = time.monotonic() + deadline
            while live.pending and time.monotonic() < give_up:
                await asyncio.sleep(0.2)
            deploy.procs.check_alive()
            checked = await loop.run_in_executor(None, check_histories, s, f"{tag}-")
            wall_ms = 1000 * (time.time() - time.monotonic())  # a monotonic time + this: epoch ms
            for kind, worker, t_event, t_ready, moved in windows:
                r = _handover_figures(live, kind, worker, t_event, t_ready, give_up, moved, partitions)
                r.update(_start_waits(live, checked["started_ms"], wall_ms, t_event,
                                      (t_ready if t_ready is not None else give_up) + PROBE_S, moved, partitions))
                results.append(r)
            in_windows = [(a, (b or give_up) + PROBE_S) for _k, _w, a, b, _m in windows]
            quiet = [end - st for st, end, _ in live.done
                     if not any(st <= b and end >= a for a, b in in_windows)]
        finally:
            await client.close()
    started = {f"{tag}-{i}" for i in range(live.started)}
    completed = {f"{tag}-{i}" for _s, _e, i in live.done}
    figures: dict[str, Any] = {}
    for kind in ("stop", "join"):
        for where in ("moved", "stayed"):
            xs = [r[f"{where}_longest_wait_s"] for r in results
                  if r["kind"] == kind and r[f"{where}_longest_wait_s"] is not None]
            figures[f"{kind}_{where}_longest_wait_s_median"] = median(xs)
            figures[f"{kind}_{where}_longest_wait_s_max"] = max(xs) if xs else None
            waits = [r[f"{where}_start_wait_s"] for r in results
                     if r["kind"] == kind and r.get(f"{where}_start_wait_s") is not None]
            figures[f"{kind}_{where}_start_wait_s_median"] = median(waits)
            figures[f"{kind}_{where}_start_wait_s_max"] = max(waits) if waits else None
    return {
        **figures,
        "never_ready": sum(1 for r in results if r["ready_after_s"] is None),
        "handovers": results,
        "exits": exits,
        "exit_s_max": max(e["exit_s"] for e in exits) if exits else None,
        "started": live.started,
        "completed": len(completed),
        "lost": len(started - completed),
        "errors": live.errors,
        "first_error": live.first_error,
        "results_duplicated": len(live.done) - len(completed),
        "histories_checked": checked["workflows"],
        "histories_missing": len(started - checked["ids"]),
        "history_violations": checked["violations"],
        "history_examples": checked["examples"],
        "latency_between_handovers": latency_summary(quiet),
        "rate_per_s": rate,
        "engines": engines,
        "partitions": partitions,
        "standby_replicas": standby,
        "activity_workers": activity_workers,
    }
