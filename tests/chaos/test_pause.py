"""Single writer (ARCHITECTURE.md, guarantee 4): an engine worker that stalls past its session
timeout and wakes up writes nothing more for the partitions it lost.

What runs (real processes, real broker, 6 partitions): two engine workers and one activity
worker (``chaos_workflows``); a steady load of ``AION_PAUSE_RATE`` (default 15) starts per
second for ``AION_PAUSE_LOAD_S`` (default 26) seconds, half ``ActivityFlow`` (one activity,
then a 200 ms timer) and half ``NapFlow`` (a 1.5 s timer inside a cancelled timeout). Six
seconds into the load a burst of ``AION_PAUSE_BURST`` (default 30) more starts, and a moment
later one engine worker (its whole process group) gets SIGSTOP — with work in flight — and, after
``AION_PAUSE_SECONDS`` (default: the session timeout + 7 s, so 13 s as deployed), SIGCONT: the
group coordinator gave its partitions to the other worker in the meantime, and when it wakes up
it still holds in-flight commands, a timer wheel and a producer.

Then every started workflow must close (bounded wait), and the events topic, read from offset
0 with ``read_committed``, must pass the strict checker: no ``(workflow_id, seq)`` re-written
with any field different (``recorded_at_ms`` included: a zombie re-writes the same events at
another time), every history gapless, every workflow closed as expected, no lost timer.

Measured on the engine before transactional fencing (issue "Single writer", 40 starts/s, 14 s
pause): 5 of 586 workflows never closed (history ending at ``TimerStarted``: the timer row
was lost) and one workflow's seq 1 and 2 were written twice, 6.6 s apart, by the two engines.

Reproduce: ``python -m pytest -q tests/chaos/test_pause.py -s`` (``AION_PAUSE_SEED`` replays
the choice of engine and the workflow mix).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aion.client import Client
from aion.codec import partition_for
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames, ensure_topics
from aion.exceptions import WorkflowAlreadyStartedError
from aion.model import TimerStarted
from aion.testing import EventLog, Expectation, check_event_log, read_event_log

from chaos_cluster import ChaosCluster, Proc
from chaos_follow import EventFollower, probe_ids

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(420)]

PARTITIONS = 6
RATE = float(os.environ.get("AION_PAUSE_RATE", "15"))
LOAD_S = float(os.environ.get("AION_PAUSE_LOAD_S", "26"))
PAUSE_AT_S = 6.0  # into the load
#: Started at once right before the SIGSTOP, so that the worker stalls with work in flight.
BURST = int(os.environ.get("AION_PAUSE_BURST", "30"))
DRAIN_S = 90.0  # after the load: every workflow must close by then ...
STALL_S = 25.0  # ... and the wait ends early when none closed for this long
#: A timer not fired this long after its due time is lost (the checker's rule).
LOST_TIMER_GRACE_MS = 20_000


@dataclass
class Pause:
    name: str
    pid: int
    at_s: float  # seconds into the load
    wall_ms: int  # wall clock of the SIGSTOP
    stalled_s: float = 0.0
    resumed_wall_ms: int = 0
    alive_after: str = ""

    def __str__(self) -> str:
        return (f"SIGSTOP {self.name} (pid {self.pid}) {self.at_s:.1f}s into the load "
                f"({time.strftime('%H:%M:%S', time.localtime(self.wall_ms / 1000))}), SIGCONT after "
                f"{self.stalled_s:.1f}s; afterwards it {self.alive_after or '?'}")


@dataclass
class Run:
    seed: int
    started: int = 0
    start_retries: int = 0
    pauses: list[Pause] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        line = f"[pause {time.strftime('%H:%M:%S')}] {msg}"
        self.notes.append(line)
        print(line, flush=True)


async def _start(client: Client, wid: str, wtype: str, args: list[Any], run: Run) -> None:
    """Start one workflow; retries reuse the request id (idempotent)."""
    for attempt in range(30):
        try:
            await client.start_workflow(wtype, *args, id=wid, request_id=f"pause-{wid}",
                                        id_reuse_policy="REJECT_DUPLICATE")
            break
        except WorkflowAlreadyStartedError:
            if attempt == 0:
                raise
            break  # an earlier attempt went through
        except Exception:  # an RPC timeout while the partition changes hands
            run.start_retries += 1
            await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"could not start {wid} in 30 attempts")
    run.started += 1


def _workload(rng: random.Random, n: int, name: str = "") -> list[tuple[str, str, list[Any], Expectation]]:
    out = []
    for i in range(n):
        if rng.random() < 0.5:
            wid = f"{name}act-{i}"
            out.append((wid, "ActivityFlow", [wid, 0], Expectation("COMPLETED", f"done:{wid}", runs=1)))
        else:
            out.append((f"{name}nap-{i}", "NapFlow", [1500], Expectation("COMPLETED", "rested", runs=1)))
    return out


def _takeover(follower: EventFollower, wids: list[str], t_from: float, t_to: float) -> set[int]:
    """Partitions that recorded a new event between the monotonic times ``t_from`` and ``t_to``."""
    out: set[int] = set()
    for wid in wids:
        t = follower.track(wid)
        if t is not None and any(t_from <= at < t_to for _, at in t.arrivals):
            out.add(partition_for(wid, PARTITIONS))
    return out


def _rewrites(log: EventLog) -> list[tuple[str, int, list[tuple[int, int, int]]]]:
    """``(workflow_id, seq, [(partition, offset, recorded_at_ms), ...])`` of every key written
    more than once with different bytes."""
    seen: dict[tuple[str, int], list[Any]] = {}
    for r in log.records:
        if r.event is not None:
            seen.setdefault((r.event.workflow_id, r.event.seq), []).append(r)
    out = []
    for (wid, seq), rs in seen.items():
        if len(rs) > 1 and len({r.value for r in rs}) > 1:
            out.append((wid, seq, [(r.partition, r.offset, r.event.recorded_at_ms) for r in rs]))
    return sorted(out)


def _when(ms: int, pauses: list[Pause]) -> str:
    """``ms`` (wall clock) relative to the pauses."""
    for p in pauses:
        if p.wall_ms <= ms < (p.resumed_wall_ms or 1 << 62):
            return f"while {p.name} was stalled (+{(ms - p.wall_ms) / 1000:.1f}s)"
        if p.resumed_wall_ms and ms >= p.resumed_wall_ms and ms - p.resumed_wall_ms < 30_000:
            return f"{(ms - p.resumed_wall_ms) / 1000:.1f}s after {p.name}'s SIGCONT"
    return "before the pause" if pauses and ms < pauses[0].wall_ms else "later"


def _print_findings(run: Run, report: Any, log: EventLog, expected: dict[str, Expectation],
                    not_closed: list[str], wall_s: float) -> None:
    histories = log.histories()
    lines = ["", "================ pause run ================",
             f"seed {run.seed}; wall time {wall_s:.0f}s; load {RATE:g}/s for {LOAD_S:g}s; "
             f"{run.started} workflows started ({run.start_retries} start retries)"]
    lines += [f"pause: {p}" for p in run.pauses]
    lines += [f"checker: {line}" for line in report.summary().splitlines()]
    if log.undecided:
        lines.append(f"open transactions at the read (partition: (last stable offset, high watermark)): "
                     f"{log.undecided}")
    rewrites = _rewrites(log)
    lines.append(f"seqs written more than once with different records: {len(rewrites)}")
    for wid, seq, copies in rewrites[:10]:
        lines.append(f"  {wid!r} seq {seq}: " + "; ".join(
            f"{p}@{o} stamped {_when(ms, run.pauses)}" for p, o, ms in copies)
            + f" ({(copies[-1][2] - copies[0][2]) / 1000:+.1f}s apart)")
    ends: Counter[str] = Counter()
    for wid in not_closed:
        evs = histories.get(wid)
        ends[type(evs[-1].body).__name__ if evs else "no history"] += 1
    lines.append(f"workflows not closed: {len(not_closed)} of {len(expected)}"
                 + (f", by last event: {dict(ends)}" if ends else ""))
    for wid in not_closed[:10]:
        evs = histories.get(wid) or []
        last = evs[-1] if evs else None
        what = "no history"
        if last is not None:
            what = f"last seq {last.seq} {type(last.body).__name__}"
            if isinstance(last.body, TimerStarted):
                what += f" (due {(log.read_at_ms or 0) / 1000 - last.body.fire_at_ms / 1000:.1f}s before the check)"
        lines.append(f"  {wid} (partition {partition_for(wid, PARTITIONS)}): {what}")
    shown: Counter[str] = Counter()
    for v in report.violations:  # the first few of each invariant
        shown[v.invariant] += 1
        if shown[v.invariant] <= 4:
            lines.append(f"violation: {v}")
    lines.append("===========================================")
    print("\n".join(lines), flush=True)


async def test_a_stalled_engine_writes_nothing_after_it_wakes_up(kafka_bootstrap: str, topic_prefix: str,
                                                                  tmp_path: Path) -> None:
    seed = int(os.environ.get("AION_PAUSE_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    run = Run(seed)
    t_begin = time.monotonic()
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=PARTITIONS,
                        data_dir=tmp_path)
    ensure_topics(settings)
    cluster = ChaosCluster(settings, tmp_path)
    session_timeout = Settings.from_env(cluster.env).session_timeout
    pause_s = float(os.environ.get("AION_PAUSE_SECONDS") or session_timeout + 7)
    assert pause_s > session_timeout + 2, f"a {pause_s}s pause does not outlast the {session_timeout}s session timeout"
    work = _workload(rng, int(RATE * LOAD_S))
    burst = _workload(rng, BURST, "burst-")
    expected = {wid: exp for wid, _, _, exp in work + burst}
    run.say(f"seed {seed}; prefix {topic_prefix}; {len(work)} workflows at {RATE:g}/s and a burst of {len(burst)}; "
            f"session timeout {session_timeout:g}s; one engine stalls {pause_s:g}s, {PAUSE_AT_S:g}s into the load")
    follower = EventFollower(settings.confluent_config(), TopicNames(topic_prefix).events, PARTITIONS).start()
    client: Client | None = None
    victim: Proc | None = None
    try:
        cluster.engine()
        cluster.engine()
        cluster.activities()
        client = await Client.connect(settings.bootstrap_servers, topic_prefix=topic_prefix, settings=settings,
                                      rpc_timeout=20.0)
        warm = probe_ids(PARTITIONS, "warmup")
        await asyncio.gather(*(_start(client, w, "ActivityFlow", [w, 0], run) for w in warm))
        for w in warm:
            expected[w] = Expectation("COMPLETED", f"done:{w}", runs=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not set(warm) <= follower.closed():
            await asyncio.sleep(0.1)
        assert set(warm) <= follower.closed(), f"the engine workers did not come up within 120s\n{cluster.logs()}"
        # Both workers must own partitions before one stalls (the second one may still be joining).
        await asyncio.sleep(3)
        run.say(f"2 engine workers and 1 activity worker up after {time.monotonic() - t_begin:.1f}s")

        # ------------------------------------------------------------ the load, and the stall in it
        tasks: list[asyncio.Task[None]] = []
        t_load = time.monotonic()
        pause: Pause | None = None
        for i, (wid, wtype, args, _) in enumerate(work):
            due = t_load + i / RATE
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(_start(client, wid, wtype, args, run)))
            into = time.monotonic() - t_load
            if pause is None and into >= PAUSE_AT_S:
                tasks += [asyncio.create_task(_start(client, w, t, a, run)) for w, t, a, _ in burst]
                await asyncio.sleep(rng.uniform(0.1, 0.4))  # the burst is being processed
                into = time.monotonic() - t_load
                victim = rng.choice(cluster.alive("engine"))
                t_stop = victim.pause()
                pause = Pause(victim.name, victim.pid, into, int(time.time() * 1000))
                run.pauses.append(pause)
                run.say(f"SIGSTOP {victim.name} (pid {victim.pid}) {into:.1f}s into the load")
            elif pause is not None and victim is not None and victim.paused_at is not None \
                    and time.monotonic() - t_stop >= pause_s:
                await _resume(victim, pause, follower, expected, t_stop, session_timeout, run)
        if victim is not None and victim.paused_at is not None:  # a short load: resume after it
            await asyncio.sleep(max(0.0, pause_s - (time.monotonic() - t_stop)))
            await _resume(victim, pause, follower, expected, t_stop, session_timeout, run)  # type: ignore[arg-type]
        await asyncio.gather(*tasks)
        t_load_end = time.monotonic()
        run.say(f"load done: {run.started} started in {t_load_end - t_load:.1f}s ({run.start_retries} retries)")

        # ------------------------------------------------------------ every workflow closes (bounded)
        deadline = t_load_end + DRAIN_S
        last_closed, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = len(set(expected) & follower.closed())
            if n == len(expected):
                break
            if n != last_closed:
                last_closed, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                break
            await asyncio.sleep(0.25)
        not_closed = sorted(set(expected) - follower.closed())
        run.say(f"{len(expected) - len(not_closed)} of {len(expected)} workflows closed "
                f"{time.monotonic() - t_load_end:.1f}s after the load"
                + (f"; {len(not_closed)} did not (waited until none closed for {STALL_S:g}s or "
                   f"{DRAIN_S:g}s after the load)" if not_closed else ""))
        if pause is not None and victim is not None:
            pause.alive_after = "was still running" if victim.alive() else f"had exited ({victim.p.returncode})"  # type: ignore[union-attr]
    finally:
        if client is not None:
            await client.close()
        follower.stop()
        cluster.stop()

    # ---------------------------------------------------------------- the events topic, strictly
    log = read_event_log(settings)
    report = check_event_log(log, expected=expected, only_expected=True, require_closed=True,
                             strict_recorded_at=True, lost_timer_grace_ms=LOST_TIMER_GRACE_MS)
    _print_findings(run, report, log, expected, not_closed, time.monotonic() - t_begin)
    if not report.ok:
        print(cluster.logs(15), flush=True)
    assert run.pauses, "no engine was paused"
    assert not log.undecided, f"transactions still open when the log was read: {log.undecided}"
    report.raise_for_violations()
    assert not not_closed, f"{len(not_closed)} workflows never closed, e.g. {not_closed[:5]}"


async def _resume(victim: Proc, pause: Pause, follower: EventFollower, expected: dict[str, Expectation],
                  t_stop: float, session_timeout: float, run: Run) -> None:
    pause.stalled_s = victim.resume()
    pause.resumed_wall_ms = int(time.time() * 1000)
    # The other worker took over during the stall: which partitions recorded events once the
    # session had surely expired (a stall that changed no owner would prove nothing).
    moved = _takeover(follower, list(expected), t_stop + session_timeout + 1, time.monotonic())
    run.say(f"SIGCONT {victim.name} (pid {victim.pid}) after {pause.stalled_s:.1f}s; partitions that recorded "
            f"events during the stall's last {pause.stalled_s - session_timeout - 1:.0f}s: {sorted(moved)}")
