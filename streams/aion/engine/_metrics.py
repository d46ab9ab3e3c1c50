"""The engine worker's Prometheus metrics and health (``--metrics-port``, ``AION_METRICS_PORT``).

Everything the engine *did* is counted in one place, :meth:`EngineMetrics.committed`, from a
partition's transaction once it has committed (``Engine._commit``): the events it recorded,
the activity tasks it dispatched, the dead letters it wrote. An aborted transaction counts
nothing, and a batch handled again one command at a time after an abort counts once.

The engine's hooks are a few lines (``Engine.__init__``, ``_commit``, ``_process``,
``_execution``, ``_step``): with no port configured the engine holds :data:`OFF`, whose hooks
do nothing. Label values are bounded (``workflow_type``, ``activity_type``, ``task_queue``,
``status``, ``partition``; never a workflow id) by :class:`~aion.ops.LabelGuard`.

Gauges (partitions owned, resident workflows, pending timers, command lag) are read at scrape
time on the engine's event loop (:func:`~aion.ops.on_loop`), never from the HTTP thread.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from faust.sensors import Sensor
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from ..model import (
    STATUS_OF_CLOSE, ActivityCancelled, ActivityCompleted, ActivityFailed, ActivityScheduled, ActivityTimedOut,
    ChildWorkflowStarted, FireTimer, SignalReceived, TimerFired, WorkflowReopened, WorkflowStarted,
)
from ..ops import FAST_S, LONG_S, QUEUE_S, SIZES, Health, Instruments, LabelGuard, counter, gauge, on_loop
from ..ops._labels import never_raises
from ..runtime import effects as fx
from ._faust import db_for
from ._progress import read_position
from ._schedules import SCHEDULE_WORKFLOW_TYPE

if TYPE_CHECKING:
    from ._engine import Engine, _Work

log = logging.getLogger("aion.engine.metrics")

CLOSE_STATUS = STATUS_OF_CLOSE  # the run-closing event -> the run's status (model)
ACTIVITY_STATUS: dict[type, str] = {
    ActivityCompleted: "COMPLETED", ActivityFailed: "FAILED", ActivityTimedOut: "TIMED_OUT",
    ActivityCancelled: "CANCELLED",
}
#: Activities remembered between their ActivityScheduled and their outcome (for the labels of
#: the outcome); an outcome whose schedule is not remembered finds it in the workflow's history.
_REMEMBERED_ACTIVITIES = 50_000
#: Entries of the history an outcome's lookup walks back at most.
_MAX_WALK = 20_000
_UNKNOWN = "unknown"


class _Off:
    """The engine's metrics when no port is configured: every hook does nothing."""

    enabled = False
    hits = 0
    misses = 0

    def committed(self, work: Any, seconds: float) -> None:
        pass

    def batch(self, n: int) -> None:
        pass

    def step(self, ex: Any, seconds: float) -> None:
        pass


#: The hooks' target when metrics are off.
OFF = _Off()


def engine_metrics(engine: "Engine") -> "EngineMetrics | _Off":
    """The metrics of ``engine``: :class:`EngineMetrics` when its settings name a metrics port
    (the process serves them: ``worker.run_worker``), else :data:`OFF`."""
    return EngineMetrics(engine) if engine.settings.metrics_port else OFF


class EngineMetrics(Instruments):
    """Counters, histograms and gauges of one engine worker, in its own registry."""

    enabled = True

    def __init__(self, engine: "Engine", registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.registry = registry if registry is not None else CollectorRegistry()
        self.hits = 0  # resident workflow found (Engine._execution)
        self.misses = 0  # rebuilt from its history
        self._wf = LabelGuard("workflow_type")
        self._act = LabelGuard("activity_type")
        self._tq = LabelGuard("task_queue")
        #: partition -> its intake position after the last committed transaction
        self.positions: dict[int, int] = {}
        #: (workflow id, run id, activity id) -> (activity_type, task_queue), until the outcome
        self._activities: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()
        self._step_keys: dict[Any, tuple[str]] = {}
        self.loop: Any = None
        self.joined = False  # a rebalance has completed (the worker is in its group)
        self._rebalance_started: float | None = None

        c, h = self.counter, self.histogram
        wt, at = ("workflow_type",), ("activity_type", "task_queue")
        self.started = c("aion_workflows_started", "Workflow runs started (WorkflowStarted recorded), including "
                         "new runs of continue-as-new and children.", wt)
        self.completed = c("aion_workflows_completed", "Workflow runs closed, by status (COMPLETED, FAILED, "
                           "CANCELLED, TERMINATED, TIMED_OUT, CONTINUED_AS_NEW).", ("workflow_type", "status"))
        self.dispatched = c("aion_activities_dispatched", "Activity attempts dispatched to a task queue (each "
                            "retry counts).", at)
        self.act_completed = c("aion_activities_completed", "Activity attempt outcomes recorded, by status "
                               "(COMPLETED, FAILED, TIMED_OUT, CANCELLED; a failed attempt that is retried counts "
                               "as FAILED).", ("activity_type", "task_queue", "status"))
        self.reopened = c("aion_workflows_reopened", "Failed or cancelled runs reopened (WorkflowReopened "
                          "recorded).", wt)
        self.signals = c("aion_signals_delivered", "Signals recorded (SignalReceived) by workflow type.", wt)
        self.schedules = c("aion_schedules_fired", "Workflows started by schedules, by the started type.", wt)
        self.timers = c("aion_timers_fired", "Durable timers of workflow code fired (TimerFired recorded).", wt)
        self.dead_letters = c("aion_dead_letters", "Command records written to the dead-letter topic.")
        self.events = c("aion_events_recorded", "History events committed.")
        self.step_s = h("aion_workflow_step_seconds", "Time the engine took to run one command through its "
                        "workflow (the workflow task), by workflow type.", wt, FAST_S)
        self.e2e_s = h("aion_workflow_end_to_end_seconds", "Workflow run start to close (recorded times).",
                       ("workflow_type", "status"), LONG_S)
        self.fire_lag_s = h("aion_timer_fire_lag_seconds", "TimerFired recorded time minus the timer's fire time.",
                            wt, QUEUE_S)
        self.batch_size = h("aion_batch_size", "Commands per batch (group commit) of a partition.", (), SIZES)
        self.append_s = h("aion_append_seconds", "One partition's transaction: its records produced and "
                          "committed, then applied to the local tables.", (), FAST_S)
        self.catch_up_s = h("aion_catch_up_seconds", "Rebalance start to the worker's tables caught up and its "
                            "partitions being read again (fence-in, changelog catch-up, recovery).", (), LONG_S)

        self.registry.register(self)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            try:
                collector(registry=self.registry)
            except Exception:  # not on every platform
                pass
        engine.app.sensors.add(_RebalanceSensor(self))

    # ------------------------------------------------------------------ hooks (event loop)

    @never_raises
    def batch(self, n: int) -> None:
        self.batch_size.observe((), n)

    @never_raises
    def step(self, ex: Any, seconds: float) -> None:
        wtype = ex.workflow_type
        key = self._step_keys.get(wtype)
        if key is None:
            key = self._step_keys[wtype] = (self._wf(wtype or _UNKNOWN),)
        self.step_s.observe(key, seconds)

    @never_raises
    def committed(self, work: "_Work", seconds: float) -> None:
        """A partition's transaction committed: count what it holds."""
        self.append_s.observe((), seconds)
        if work.next is not None:
            self.positions[work.partition] = work.next
        if work.events:
            self.events.inc((), len(work.events))
            self._events(work)
        for eff in work.effects:
            if type(eff) is fx.DispatchActivity:
                t = eff.task
                self.dispatched.inc((self._act(t.activity_type), self._tq(t.task_queue)))
        dlq = self.engine.names.dlq
        n = 0
        for rec in reversed(work.records):  # dead letters are the transaction's last records
            if rec[0] != dlq:
                break
            n += 1
        if n:
            self.dead_letters.inc((), n)

    def _events(self, work: "_Work") -> None:
        touched = work.touched
        for ev in work.events:
            b = ev.body
            t = type(b)
            if t is WorkflowStarted:
                self.started.inc((self._wf(b.workflow_type),))
            elif t is ActivityScheduled:
                acts = self._activities
                acts[(ev.workflow_id, ev.run_id, b.activity_id)] = (b.activity_type, b.task_queue)
                if len(acts) > _REMEMBERED_ACTIVITIES:
                    acts.popitem(last=False)
            elif t in ACTIVITY_STATUS:
                atype, queue = self._activity(touched.get(ev.workflow_id), ev, b)
                self.act_completed.inc((self._act(atype), self._tq(queue), ACTIVITY_STATUS[t]))
            elif t in CLOSE_STATUS:
                status = CLOSE_STATUS[t]
                start = _run_start(touched.get(ev.workflow_id), ev.run_id)
                if start is None:
                    ex = touched.get(ev.workflow_id)
                    self.completed.inc((self._wf(getattr(ex, "workflow_type", None) or _UNKNOWN), status))
                    continue
                key = (self._wf(start.body.workflow_type), status)
                self.completed.inc(key)
                self.e2e_s.observe(key, max(0, ev.recorded_at_ms - start.recorded_at_ms) / 1000)
            elif t is SignalReceived:
                self.signals.inc((self._wf(_type_of(touched.get(ev.workflow_id))),))
            elif t is WorkflowReopened:
                self.reopened.inc((self._wf(_type_of(touched.get(ev.workflow_id))),))
            elif t is TimerFired:
                key = (self._wf(_type_of(touched.get(ev.workflow_id))),)
                self.timers.inc(key)
                cmd = work.commands.get(ev.command_id or "")
                if cmd is not None and type(cmd.body) is FireTimer:
                    self.fire_lag_s.observe(key, max(0, ev.recorded_at_ms - cmd.body.fire_at_ms) / 1000)
            elif t is ChildWorkflowStarted:
                if _type_of(touched.get(ev.workflow_id)) == SCHEDULE_WORKFLOW_TYPE:
                    self.schedules.inc((self._wf(b.workflow_type),))

    def _activity(self, ex: Any, ev: Any, b: Any) -> tuple[str, str]:
        """(activity_type, task_queue) of the activity an outcome event is about."""
        key = (ev.workflow_id, ev.run_id, b.activity_id)
        done = not getattr(b, "will_retry", False)
        found = self._activities.pop(key, None) if done else self._activities.get(key)
        if found is not None:
            return found
        history = getattr(ex, "history", None) or ()
        for i in range(len(history) - 1, max(-1, len(history) - 1 - _MAX_WALK), -1):
            e = history[i]
            s = e.body
            if type(s) is ActivityScheduled and s.activity_id == b.activity_id and e.run_id == ev.run_id:
                return s.activity_type, s.task_queue
        return _UNKNOWN, _UNKNOWN

    # ------------------------------------------------------------------ rebalances (Faust sensor)

    @never_raises
    def rebalance_started(self) -> None:
        self._rebalance_started = time.monotonic()

    @never_raises
    def rebalance_ended(self) -> None:
        import asyncio

        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        self.joined = True
        if self._rebalance_started is not None:
            self.catch_up_s.observe((), time.monotonic() - self._rebalance_started)
            self._rebalance_started = None

    # ------------------------------------------------------------------ scrape time (HTTP thread)

    def _state(self) -> dict[str, Any]:
        """The engine's state, read on its event loop (see :meth:`extra` and :meth:`health`)."""
        e = self.engine
        owned = e.owned()
        assigned = e._assigned_partitions()
        marks = e.reader.high_watermarks(owned)
        parts: dict[int, dict[str, Any]] = {}
        for p in sorted(owned):
            pos = self.positions.get(p)
            if pos is None:  # nothing committed here since the assignment: the stored position
                try:
                    pos = read_position(db_for(e.progress, p))
                except Exception:
                    pos = None
            hw = marks.get(p)
            parts[p] = {"resident": e._cache.count(p), "timers": e.wheel.pending(p),
                        "lag": max(0, hw - pos) if hw is not None and pos is not None else None}
        return {"owned": sorted(owned), "assigned": sorted(assigned), "parts": parts,
                "rebalancing": bool(getattr(e.app, "rebalancing", False)), "stats": dict(e.stats),
                "wheel": {k: v for k, v in e.wheel.stats.items() if k in ("fired", "dropped_terminal")}}

    def extra(self) -> Iterable[Any]:
        yield counter("aion_workflow_cache_hits", "Commands whose workflow was resident in memory.",
                      [((), self.hits)])
        yield counter("aion_workflow_cache_misses", "Commands whose workflow was rebuilt from its history.",
                      [((), self.misses)])
        stats = getattr(self.engine, "stats", {})
        yield counter("aion_workflow_cache_miss_events", "Events the cache misses read and replayed (a miss "
                      "reads a continue-as-new chain's current run, not its earlier runs).",
                      [((), stats.get("loaded_events", 0))])
        try:
            st = on_loop(self.loop, self._state, 2.0)
        except Exception as exc:  # not started yet, or the loop is blocked: no gauges this time
            log.debug("metrics: engine state unavailable: %s", exc)
            return
        yield from _gauges(st)

    def health(self) -> Health:
        if not self.joined:
            return Health(False, False, {"role": "engine", "status": "starting", "group": self.engine.app.conf.id})
        st = on_loop(self.loop, self._state, 2.0)
        ready = not st["rebalancing"] and set(st["assigned"]) <= set(st["owned"])
        return Health(True, ready, {
            "role": "engine", "status": "ok" if ready else "catching up", "group": self.engine.app.conf.id,
            "partitions": st["owned"], "assigned": st["assigned"], "rebalancing": st["rebalancing"],
            # The group generation of the assignment and when it came (a hand-over's start, as the
            # rolling benchmark times it).
            "generation": self.engine._fenced_gen, "generation_at_ms": self.engine.generation_at_ms})


def _gauges(st: dict[str, Any]) -> Iterator[Any]:
    parts = st["parts"]
    yield gauge("aion_partitions_owned", "Commands partitions this worker owns and reads now.", [((), len(st["owned"]))])
    yield gauge("aion_partitions_assigned", "Commands partitions the group assigned to this worker (owned once "
                "fenced in and caught up).", [((), len(st["assigned"]))])
    yield gauge("aion_workflows_resident", "Workflows resident in memory (the cache), per partition.",
                [((str(p),), v["resident"]) for p, v in parts.items()], ("partition",))
    yield gauge("aion_timers_pending", "Timers armed in memory (due within the wheel's window), per partition.",
                [((str(p),), v["timers"]) for p, v in parts.items()], ("partition",))
    yield gauge("aion_command_lag", "Command records of a partition not yet committed by this worker "
                "(high watermark minus intake position; transaction markers count too).",
                [((str(p),), v["lag"]) for p, v in parts.items() if v["lag"] is not None], ("partition",))
    stats = st["stats"]
    for name, doc in (("batches", "Batches handled."), ("commands", "Command records handled."),
                      ("aborted", "Transactions aborted (their commands handled again one by one)."),
                      ("fenced", "Partitions lost to another worker's producer (fenced)."),
                      ("forwarded", "Commands forwarded to the partition that owns their workflow."),
                      ("invalid", "Commands refused at intake (invalid)."),
                      ("warm_up_records", "Changelog records read into the local table copies before the "
                       "worker joined its group (a restarted worker's downtime: _store.warm_up)."),):
        yield counter(f"aion_engine_{name}", doc, [((), stats.get(name, 0))])
    from ._faust import OPENED_FROM_DISK

    before = stats.get("databases_opened_before_joining", 0)
    yield counter("aion_engine_table_databases_opened", "Table databases (RocksDB) opened from disk: before the "
                  "worker joined its group, or later, at an assignment, while its partitions waited (more than 0 "
                  "when the open files limit let the warm-up open only some: raise ulimit -n).",
                  [(("before_joining",), before), (("at_assignment",), max(0, OPENED_FROM_DISK[0] - before))], ("when",))
    w = st["wheel"]
    yield counter("aion_timer_fires_sent", "Due timers the timer wheel fired (taken by a batch, or sent as FireTimer).", [((), w.get("fired", 0))])
    yield counter("aion_timer_fires_dropped", "Due timers dropped because their timer or run had closed.",
                  [((), w.get("dropped_terminal", 0))])


def _type_of(ex: Any) -> str:
    return getattr(ex, "workflow_type", None) or _UNKNOWN


def _run_start(ex: Any, run_id: str) -> Any:
    """The WorkflowStarted event of run ``run_id`` in ``ex``'s history (walked from the end)."""
    history = getattr(ex, "history", None) or ()
    for i in range(len(history) - 1, max(-1, len(history) - 1 - _MAX_WALK), -1):
        e = history[i]
        if type(e.body) is WorkflowStarted and e.run_id == run_id:
            return e
    return None


class _RebalanceSensor(Sensor):
    """Faust's rebalance lifecycle: start, and end once recovery is complete."""

    def __init__(self, metrics: EngineMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    def on_rebalance_start(self, app: Any) -> dict:
        self._metrics.rebalance_started()
        return {}

    def on_rebalance_end(self, app: Any, state: dict) -> None:
        self._metrics.rebalance_ended()


__all__ = ["EngineMetrics", "OFF", "engine_metrics"]
