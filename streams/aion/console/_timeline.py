"""A workflow's history drawn two ways: the spans of its activities, timers and children on one
time axis (a Gantt row each), and the events one per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import (
    ActivityCancelled, ActivityCompleted, ActivityFailed, ActivityScheduled, ActivityTimedOut,
    ChildWorkflowCompleted, ChildWorkflowStarted, Event, TimerCancelled, TimerFired, TimerStarted,
)
from ._format import event_details
from ._html import esc, table, url, when

_CHILD_ENDS = ("ChildWorkflowCompleted", "ChildWorkflowFailed", "ChildWorkflowCancelled",
               "ChildWorkflowTimedOut", "ChildWorkflowTerminated")


@dataclass
class Span:
    """One activity, timer or child on the time axis: ``state`` done, fail or wait (open)."""

    kind: str
    label: str
    start_ms: int
    end_ms: int | None = None
    state: str = "wait"
    link: str | None = None


def spans_of(events: list[Event]) -> list[Span]:
    """The spans of the latest run's activities, timers and children, in the order they began."""
    if not events:
        return []
    run = events[-1].run_id
    out: dict[tuple[str, str], Span] = {}
    for e in events:
        if e.run_id != run:
            continue
        b, t = e.body, e.recorded_at_ms
        if isinstance(b, ActivityScheduled):
            out[("a", b.activity_id)] = Span("activity", f"{b.activity_type} #{b.activity_id}", t)
        elif isinstance(b, ActivityCompleted) and ("a", b.activity_id) in out:
            out[("a", b.activity_id)].end_ms, out[("a", b.activity_id)].state = t, "done"
        elif isinstance(b, (ActivityFailed, ActivityTimedOut)) and not b.will_retry and ("a", b.activity_id) in out:
            out[("a", b.activity_id)].end_ms, out[("a", b.activity_id)].state = t, "fail"
        elif isinstance(b, ActivityCancelled) and ("a", b.activity_id) in out:
            out[("a", b.activity_id)].end_ms, out[("a", b.activity_id)].state = t, "fail"
        elif isinstance(b, TimerStarted):
            out[("t", b.timer_id)] = Span("timer", f"{b.name or 'timer'} {b.duration_ms / 1000:g}s", t)
        elif isinstance(b, (TimerFired, TimerCancelled)) and ("t", b.timer_id) in out:
            out[("t", b.timer_id)].end_ms = t
            out[("t", b.timer_id)].state = "done" if isinstance(b, TimerFired) else "fail"
        elif isinstance(b, ChildWorkflowStarted):
            out[("c", b.child_workflow_id)] = Span("child", f"{b.workflow_type} {b.child_workflow_id}", t,
                                                   link=url("/workflow", id=b.child_workflow_id))
        elif type(b).__name__ in _CHILD_ENDS and ("c", getattr(b, "child_workflow_id", "")) in out:
            s = out[("c", getattr(b, "child_workflow_id"))]
            s.end_ms, s.state = t, "done" if isinstance(b, ChildWorkflowCompleted) else "fail"
    return list(out.values())


def _ms(n: int) -> str:
    return f"{n} ms" if n < 10_000 else f"{n / 1000:.1f} s"


def gantt(events: list[Event], spans: list[Span]) -> str:
    """The spans on one axis from the run's first event to its last (or now, while open)."""
    if not spans:
        return '<p class="muted">no activities, timers or children in the latest run</p>'
    run = events[-1].run_id
    t0 = next(e.recorded_at_ms for e in events if e.run_id == run)
    t1 = max([events[-1].recorded_at_ms, *(s.end_ms or s.start_ms for s in spans)])
    width = max(1, t1 - t0)
    rows = []
    for s in spans:
        end = s.end_ms if s.end_ms is not None else t1
        left, w = 100 * (s.start_ms - t0) / width, max(0.5, 100 * (end - s.start_ms) / width)
        label = f'<a href="{esc(s.link)}">{esc(s.label)}</a>' if s.link else esc(s.label)
        took = _ms(end - s.start_ms) + ("" if s.end_ms is not None else " (open)")
        bar = (f'<div class="tl" title="{esc(took)}"><span class="{s.state}" '
               f'style="left:{left:.2f}%;width:{min(w, 100 - left):.2f}%"></span></div>')
        rows.append([esc(s.kind), label, bar, esc(took)])
    return table(["kind", "what", f"0 → {_ms(width)}", "took"], rows, attrs=' class="gantt"')


def event_rows(converter: Any, events: list[Event]) -> str:
    """The history, one event per row (seq, time, offset from the first event, run, type, details)."""
    if not events:
        return ""
    t0 = events[0].recorded_at_ms
    rows = []
    for e in events:
        family = next((f for f in ("Workflow", "Activity", "Timer", "Signal", "Child") if e.type.startswith(f)), "")
        rows.append([f'<span class="num">{e.seq}</span>', when(e.recorded_at_ms),
                     f'<span class="nw">+{_ms(e.recorded_at_ms - t0)}</span>', f'<span class="mono">{esc(e.run_id[:8])}</span>',
                     f'<b class="ev-{family}">{esc(e.type)}</b>',
                     f'<span class="mono">{esc(event_details(converter, e))}</span>'])
    return table(["seq", "recorded", "", "run", "event", "details"], rows, attrs=' id="history"')
