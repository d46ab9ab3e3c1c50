"""The activity worker's Prometheus metrics and health (``aion activity-worker --metrics-port``).

Every :class:`~aion.worker.ActivityWorker` keeps its numbers in its own registry
(``worker.metrics.registry``; never prometheus-client's global one): the CLI serves it with
:func:`aion.ops.serve`, and a program that embeds workers can serve each one's, or several
from one :class:`~prometheus_client.CollectorRegistry` of its own.

- ``aion_activity_schedule_to_start_seconds``: the attempt's dispatch by the engine
  (``ActivityTask.scheduled_at_ms``, the engine's clock) to its start here;
- ``aion_activity_execution_seconds``: the attempt's run here, by outcome;
- ``aion_activity_attempts_total``: attempts ended here, by outcome (``completed``, ``failed``,
  ``cancelled``, ``timed_out`` locally, ``abandoned`` on a revoke or a stop);
- gauges at scrape time: attempts in flight, tasks waiting for a slot, slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from prometheus_client import CollectorRegistry

from ..model import ActivityTask, now_ms
from ..ops import LONG_S, QUEUE_S, Health, Instruments, LabelGuard, counter, gauge, on_loop
from ..ops._labels import never_raises

if TYPE_CHECKING:
    from ._worker import ActivityWorker


class WorkerMetrics(Instruments):
    """Counters, histograms and gauges of one activity worker (updated on its event loop)."""

    def __init__(self, worker: "ActivityWorker", registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        self.worker = worker
        self.registry = registry if registry is not None else CollectorRegistry()
        self._act = LabelGuard("activity_type")
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}
        labels = ("activity_type", "task_queue")
        self.s2s = self.histogram("aion_activity_schedule_to_start_seconds",
                                  "Activity attempt dispatched by the engine to started on a worker.", labels, QUEUE_S)
        self.exec_s = self.histogram("aion_activity_execution_seconds", "Activity attempt run time on the worker, "
                                     "by outcome.", (*labels, "outcome"), LONG_S)
        self.attempts = self.counter("aion_activity_attempts", "Activity attempts ended on this worker, by outcome "
                                     "(completed, failed, cancelled, timed_out, abandoned).", (*labels, "outcome"))
        self.registry.register(self)

    def _key(self, task: ActivityTask) -> tuple[str, str]:
        k = (task.activity_type, task.task_queue)
        key = self._keys.get(k)
        if key is None:
            # one worker serves one task queue: the queue is its own, only the type needs bounding
            key = self._keys[k] = (self._act(task.activity_type), self.worker.task_queue)
        return key

    @never_raises
    def started(self, task: ActivityTask) -> None:
        self.s2s.observe(self._key(task), max(0, now_ms() - task.scheduled_at_ms) / 1000)

    @never_raises
    def finished(self, task: ActivityTask, outcome: str, seconds: float) -> None:
        key = (*self._key(task), outcome or "unknown")
        self.attempts.inc(key)
        self.exec_s.observe(key, seconds)

    # ------------------------------------------------------------------ scrape time (HTTP thread)

    def _state(self) -> dict[str, Any]:
        w = self.worker
        return {"in_flight": w.in_flight, "backlog": len(w._backlog), "stats": dict(w.stats),
                "stopping": w._stopping is not None and w._stopping.is_set(), "ready": w._ready.is_set()}

    def extra(self) -> Iterable[Any]:
        w = self.worker
        q = ((w.task_queue,),)
        yield gauge("aion_activity_slots", "Attempts this worker runs at once at most (--concurrency).",
                    [(q[0], w.concurrency)], ("task_queue",))
        try:
            st = on_loop(w._loop, self._state, 2.0)
        except Exception:
            return
        yield gauge("aion_activities_in_flight", "Activity attempts running (or reporting) on this worker.",
                    [(q[0], st["in_flight"])], ("task_queue",))
        yield gauge("aion_activity_backlog", "Tasks received and waiting for a free slot.",
                    [(q[0], st["backlog"])], ("task_queue",))
        stats = st["stats"]
        yield counter("aion_activity_heartbeats", "Heartbeats sent to the engine.",
                      [(q[0], stats.get("heartbeats", 0))], ("task_queue",))
        yield counter("aion_activity_duplicate_deliveries", "Task records delivered again while their attempt "
                      "was still here (not run twice).", [(q[0], stats.get("duplicates", 0))], ("task_queue",))
        yield counter("aion_activity_pauses", "Times the worker paused its partitions (backlog full).",
                      [(q[0], stats.get("pauses", 0))], ("task_queue",))

    def health(self) -> Health:
        w = self.worker
        info: dict[str, Any] = {"role": "activity-worker", "task_queue": w.task_queue, "group": w.group_id,
                                "identity": w.identity}
        if not w._running or w._loop is None:
            return Health(False, False, dict(info, status="starting"))
        st = on_loop(w._loop, self._state, 2.0)
        ready = st["ready"] and not st["stopping"]
        return Health(True, ready, dict(info, status="ok" if ready else ("stopping" if st["stopping"] else "starting"),
                                        in_flight=st["in_flight"], backlog=st["backlog"]))


__all__ = ["WorkerMetrics"]
