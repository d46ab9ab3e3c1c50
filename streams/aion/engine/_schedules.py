"""Schedules: a system workflow per schedule, on the engine's own durable timers.

A schedule ``<id>`` is the workflow ``schedule:<id>`` of type ``aion.Schedule``
(:class:`ScheduleWorkflow`, registered in every engine worker). It is ordinary workflow code:

- it sleeps with a durable timer until the next fire time of its spec — a 5-field cron
  expression (read in ``timezone``, an IANA zone, UTC by default; evaluated with ``croniter``,
  which follows daylight-saving changes) or a fixed interval (fire times
  ``offset + k * interval`` since the epoch) — so it keeps firing live, across restarts;
- each fire time ``t`` starts the target workflow with the deterministic id
  ``<id>-<t as ISO-8601 UTC>`` as a child with ``parent_close_policy=ABANDON`` (the start is
  recorded before it is sent, and its command id is deterministic: a duplicated fire or a
  re-delivery cannot start two);
- ``overlap`` decides what a fire does while an earlier start is still running: ``SKIP`` (do
  nothing), ``BUFFER_ONE`` (start once the running one ends; one is kept, later ones skipped),
  ``CANCEL_OTHER`` (cancel the running one, start when it has ended), ``ALLOW_ALL`` (start);
- ``catch_up`` decides what happens to fire times that passed while nothing ran the
  schedule (engine down): ``ALL`` (start each, in order; overlap applies), ``ONE`` (only the
  latest), ``SKIP`` (none; only fires at most ``catch_up_window_ms`` late start);
- signals ``pause(note)``, ``resume()``, ``update(changes)``, ``trigger()``, ``delete()``; query
  ``describe()``; its spec is mirrored in search attributes (``aion.schedule.*``) so that a
  listing needs no query;
- it continues as new when its history grows (at a moment when nothing it started is still
  running, carrying its state), so its history stays short.

Fire times passed while paused are skipped (resume starts from the next one). Updating the
spec (cron, time zone, interval) also restarts from the next fire time of the new spec.

Limits: a target still running when the schedule must continue as new anyway (after
``HARD_HISTORY_LIMIT`` events) is no longer tracked for overlap by the new run.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from .. import workflow
from ..common.schedule_spec import (
    CATCH_UP_POLICIES,
    OVERLAP_POLICIES,
    SCHEDULE_WORKFLOW_TYPE,
    ScheduleSpecError,
    fire_times,
    latest_fire,
    next_fire_ms,
    schedule_id_of,
    schedule_workflow_id,
    spec_text,
    target_workflow_id,
    validate_spec,
)
from ..exceptions import TimeoutError as _WorkflowTimeout

__all__ = [
    "SCHEDULE_WORKFLOW_TYPE",
    "OVERLAP_POLICIES",
    "CATCH_UP_POLICIES",
    "ScheduleSpecError",
    "ScheduleWorkflow",
    "schedule_workflow_id",
    "schedule_id_of",
    "validate_spec",
    "next_fire_ms",
    "fire_times",
    "target_workflow_id",
]

#: Fire times started per wake-up at most (catch_up=ALL after a long outage goes on at once).
MAX_STARTS_PER_WAKE = 100
#: Continue as new past this many events of the run when nothing started is running...
HISTORY_LIMIT = 1_000
#: ...and past this many regardless.
HARD_HISTORY_LIMIT = 10_000
#: The most recent actions ``describe()`` reports.
RECENT = 10

_UPDATABLE = ("cron", "timezone", "interval_ms", "offset_ms", "workflow_type", "args", "task_queue", "overlap",
              "catch_up", "catch_up_window_ms", "note")
#: Fields whose change moves the fire times (the schedule restarts from the next one).
_TIMING = ("cron", "timezone", "interval_ms", "offset_ms")


def _now_ms() -> int:
    return int(round(workflow.time() * 1000))


def _new_state(now: int) -> dict[str, Any]:
    return {"last_ms": now, "buffered": None, "pending": [], "recent": [], "started": 0, "skipped": 0,
            "created_ms": now, "runs": 1}


@workflow.defn(name=SCHEDULE_WORKFLOW_TYPE)
class ScheduleWorkflow:
    """One schedule (see the module docs). Input: the spec from :func:`validate_spec`."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}
        self.st: dict[str, Any] = {}
        self.running: dict[str, Any] = {}
        self.dirty = False
        self.deleted = False
        self.triggers: list[int] = []

    # ------------------------------------------------------------------ the loop
    @workflow.run
    async def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.spec = spec
        st = spec.pop("state", None)
        self.st = st if st is not None else _new_state(_now_ms())
        self._publish()
        # Starts carried over from the previous run (continue-as-new), in order.
        carried, self.st["pending"] = list(self.st.get("pending") or []), []
        for t in carried:
            await self._fire(t)
        while not self.deleted:
            now = _now_ms()
            if not self.spec["paused"]:
                for t in self._due(now):
                    await self._fire(t)
                    if self.deleted:
                        break
            while self.triggers and not self.deleted:
                await self._fire(self.triggers.pop(0), manual=True)
            if self.st["buffered"] is not None and not self.running and not self.deleted:
                t, self.st["buffered"] = self.st["buffered"], None
                await self._start(t)
            if self.deleted:
                break
            if self._should_continue_as_new():
                spec_out = dict(self.spec, state=self.st)
                if self.running and self.spec["overlap"] != "ALLOW_ALL":
                    self._action("untracked", None, ids=sorted(self.running))
                self.st["runs"] += 1
                workflow.continue_as_new(spec_out)
            nxt = None if self.spec["paused"] else next_fire_ms(self.spec, self.st["last_ms"])
            self.dirty = False
            now = _now_ms()
            if nxt is not None and nxt <= now:
                continue  # more to catch up
            try:
                await workflow.wait_condition(lambda: self.dirty,
                                              timeout=None if nxt is None else timedelta(milliseconds=nxt - now))
            except _WorkflowTimeout:
                pass
        return {"id": self.spec["id"], "deleted": True, "started": self.st["started"], "skipped": self.st["skipped"]}

    def _due(self, now: int) -> list[int]:
        """Fire times to act on now, per catch_up; moves ``last_ms`` past all that passed."""
        spec, st = self.spec, self.st
        last = st["last_ms"]
        policy = spec["catch_up"]
        if policy == "ALL":
            due = fire_times(spec, last, now, MAX_STARTS_PER_WAKE)
            if due:
                st["last_ms"] = due[-1]
            return due
        latest = latest_fire(spec, last, now)
        if latest is None:
            return []
        missed = len(fire_times(spec, last, latest, MAX_STARTS_PER_WAKE)) - 1
        st["last_ms"] = latest
        if policy == "SKIP" and now - latest > spec["catch_up_window_ms"]:
            missed += 1
            latest = None
        if missed > 0:
            st["skipped"] += missed
            self._action("missed", None, count=missed)
        return [] if latest is None else [latest]

    # ------------------------------------------------------------------ firing
    async def _fire(self, t: int, manual: bool = False) -> None:
        overlap = self.spec["overlap"]
        if self.running and overlap != "ALLOW_ALL":
            if overlap == "SKIP":
                self.st["skipped"] += 1
                self._action("skipped", t, reason="overlap")
                return
            if overlap == "BUFFER_ONE":
                if self.st["buffered"] is None:
                    self.st["buffered"] = t
                    self._action("buffered", t)
                else:
                    self.st["skipped"] += 1
                    self._action("skipped", t, reason="buffer full")
                return
            # CANCEL_OTHER: cancel what runs, start once it has ended.
            for h in list(self.running.values()):
                h.cancel()
            self._action("cancelling", t, ids=sorted(self.running))
            await workflow.wait_condition(lambda: not self.running or self.deleted)
            if self.deleted:
                return
        await self._start(t, manual)

    async def _start(self, t: int, manual: bool = False) -> None:
        wid = target_workflow_id(self.spec["id"], t)
        if manual:
            wid += "-manual"
        h = await workflow.start_child_workflow(
            self.spec["workflow_type"], *self.spec["args"], id=wid, task_queue=self.spec["task_queue"],
            parent_close_policy=workflow.ParentClosePolicy.ABANDON)
        self.running[wid] = h
        h.add_done_callback(functools.partial(self._ended, wid))
        self.st["started"] += 1
        self._action("started", t, workflow_id=wid)

    def _ended(self, wid: str, fut: Any) -> None:
        self.running.pop(wid, None)
        if fut.cancelled():
            outcome = "CANCELLED"
        elif fut.exception() is not None:
            outcome = str(getattr(fut.exception(), "status", "FAILED"))
        else:
            outcome = "COMPLETED"
        for a in self.st["recent"]:
            if a.get("workflow_id") == wid:
                a["outcome"] = outcome
        self.dirty = True

    def _action(self, kind: str, t: int | None, **kw: Any) -> None:
        a = {"action": kind, "at_ms": _now_ms(), **kw}
        if t is not None:
            a["fire_ms"] = t
        self.st["recent"] = (self.st["recent"] + [a])[-RECENT:]

    def _should_continue_as_new(self) -> bool:
        n = workflow.info().run_history_length
        if n >= HARD_HISTORY_LIMIT:
            return True
        if n < HISTORY_LIMIT:
            return False
        return not self.running or self.spec["overlap"] == "ALLOW_ALL"

    def _publish(self) -> None:
        s = self.spec
        workflow.upsert_search_attributes({
            "aion.schedule.id": s["id"],
            "aion.schedule.spec": spec_text(s),
            "aion.schedule.workflow": s["workflow_type"],
            "aion.schedule.overlap": s["overlap"],
            "aion.schedule.catch_up": s["catch_up"],
            "aion.schedule.paused": "true" if s["paused"] else "false",
            "aion.schedule.note": s.get("note", ""),
        })

    # ------------------------------------------------------------------ signals and query
    @workflow.signal
    def pause(self, note: str = "") -> None:
        if not self.spec["paused"] or note:
            self.spec["paused"] = True
            self.spec["note"] = note or self.spec.get("note", "")
            self._action("paused", None)
            self._publish()
        self.dirty = True

    @workflow.signal
    def resume(self, note: str = "") -> None:
        if self.spec["paused"]:
            self.spec["paused"] = False
            self.spec["note"] = note
            # Fire times passed while paused are skipped: the next one counts from now.
            self.st["last_ms"] = max(self.st["last_ms"], _now_ms())
            self._action("resumed", None)
            self._publish()
        self.dirty = True

    @workflow.signal
    def update(self, changes: dict[str, Any]) -> None:
        unknown = sorted(set(changes) - set(_UPDATABLE))
        candidate = dict(self.spec)
        candidate.update({k: v for k, v in changes.items() if k in _UPDATABLE})
        if "cron" in changes and changes["cron"] is not None:
            candidate["interval_ms"] = None
        if "interval_ms" in changes and changes["interval_ms"] is not None:
            candidate["cron"] = None
        try:
            if unknown:
                raise ScheduleSpecError(f"unknown fields {unknown}")
            new = validate_spec(candidate)
        except ScheduleSpecError as e:  # the client validates first; never fail the schedule
            self._action("update_rejected", None, reason=str(e))
            self.dirty = True
            return
        timing = any(new.get(k) != self.spec.get(k) for k in _TIMING)
        new["paused"] = self.spec["paused"]
        self.spec = new
        if timing:
            self.st["last_ms"] = max(self.st["last_ms"], _now_ms())
        self._action("updated", None, fields=sorted(k for k in changes if k in _UPDATABLE))
        self._publish()
        self.dirty = True

    @workflow.signal
    def trigger(self) -> None:
        self.triggers.append(_now_ms())
        self.dirty = True

    @workflow.signal
    def delete(self) -> None:
        self.deleted = True
        self.dirty = True

    @workflow.query
    def describe(self) -> dict[str, Any]:
        s, st = self.spec, self.st
        upcoming: list[int] = []
        if not s.get("paused") and not self.deleted and s:
            t = st["last_ms"]
            for _ in range(5):
                t = next_fire_ms(s, t)
                upcoming.append(t)
        return {
            "id": s.get("id"),
            "cron": s.get("cron"),
            "timezone": s.get("timezone") or "UTC",
            "interval_ms": s.get("interval_ms"),
            "offset_ms": s.get("offset_ms"),
            "workflow_type": s.get("workflow_type"),
            "args": s.get("args"),
            "task_queue": s.get("task_queue"),
            "overlap": s.get("overlap"),
            "catch_up": s.get("catch_up"),
            "catch_up_window_ms": s.get("catch_up_window_ms"),
            "paused": s.get("paused"),
            "note": s.get("note"),
            "deleted": self.deleted,
            "running": sorted(self.running),
            "buffered_fire_ms": st.get("buffered"),
            "last_fire_ms": st.get("last_ms"),
            "next_fires_ms": upcoming,
            "started": st.get("started", 0),
            "skipped": st.get("skipped", 0),
            "recent": list(st.get("recent", [])),
            "created_ms": st.get("created_ms"),
            "runs": st.get("runs", 1),
        }

