"""One workflow's page: its state, input and result or failure, what it waits on, parent and
children, its history (timeline, table, JSON download in the format ``aion replay`` reads), and
the forms of the operator's actions (handled in :mod:`aion.console._workflow_actions`)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..client._history import WorkflowDescription, describe
from ..client._pending import pending_of
from ..model import (
    ChildWorkflowStarted, Event, SignalReceived, WorkflowCompleted, WorkflowContinuedAsNew, WorkflowFailed,
    WorkflowStarted, WorkflowTerminated, WorkflowTimedOut,
)
from ..runtime._history_json import events_to_json
from ._app import Console, Handlers, PageError, console_of, is_fragment
from ._format import failure_text, iso, json_response, payload_value, pretty
from ._html import badge, esc, kv, live_toggle, page, table, url, when
from ._timeline import event_rows, gantt, spans_of

REFRESH_MS = 2000
#: The operator's actions on a run, each the handle method of the same name: (name, label, style).
ACTIONS = (("cancel", "Cancel", "quiet"), ("terminate", "Terminate", "danger"), ("pause", "Pause", "quiet"),
           ("resume", "Resume", "quiet"), ("reopen", "Reopen", "quiet"))


def workflow_id(request: web.Request, source: Any = None) -> str:
    wid = (source if source is not None else request.query).get("id", "")
    if not isinstance(wid, str) or not wid.strip():
        raise PageError("no workflow id given (…/workflow?id=WORKFLOW_ID)")
    return wid


async def load(console: Console, wid: str) -> tuple[list[Event], WorkflowDescription]:
    """The workflow's history (every run) and its description; a 404 for an unknown id."""
    events = await console.client.get_workflow_handle(wid).history()
    if not events:
        s = console.settings
        raise PageError(f"no workflow {wid!r} under topic prefix {s.topic_prefix!r}: it has no history on "
                        f"{s.topic_prefix}.events (never started there, or its history was retired)", 404)
    return events, describe(wid, events)


def _latest_run(events: list[Event]) -> list[Event]:
    run = events[-1].run_id
    return [e for e in events if e.run_id == run]


def _outcome(console: Console, events: list[Event], d: WorkflowDescription) -> str:
    """Input, and the result or failure of the latest run."""
    conv = console.client.converter
    run = _latest_run(events)
    started = next((e.body for e in run if isinstance(e.body, WorkflowStarted)), None)
    args = [payload_value(conv, p) for p in started.input] if started is not None else []
    out = f'<div class="card"><h2>Input</h2><pre id="input">{esc(pretty(args))}</pre></div>'
    closing = run[-1].body if d.status != "RUNNING" else None
    if isinstance(closing, WorkflowCompleted):
        res = f'<h2>Result</h2><pre id="result">{esc(pretty(payload_value(conv, closing.result)))}</pre>'
    elif isinstance(closing, WorkflowFailed):
        res = f'<h2>Failure</h2><pre id="failure">{esc(failure_text(closing.failure))}</pre>'
    elif isinstance(closing, WorkflowTerminated):
        res = f'<h2>Terminated</h2><pre id="failure">{esc(closing.reason or "(no reason given)")}</pre>'
    elif isinstance(closing, WorkflowTimedOut):
        res = f'<h2>Timed out</h2><pre id="failure">{esc(closing.timeout_type)} timeout</pre>'
    elif isinstance(closing, WorkflowContinuedAsNew):
        res = f'<h2>Continued as new</h2><p>as run <span class="mono">{esc(closing.new_run_id)}</span></p>'
    elif closing is not None:
        res = f"<h2>{esc(d.status.title())}</h2>"
    else:
        res = '<h2>Result</h2><p class="muted" id="result">running: no result yet</p>'
    return out + f'<div class="card">{res}</div>'


def _summary(events: list[Event], d: WorkflowDescription) -> str:
    children = [(e.body.child_workflow_id, e.body.workflow_type) for e in events
                if isinstance(e.body, ChildWorkflowStarted)]
    parent = (f'<a href="{esc(url("/workflow", id=d.parent_workflow_id))}">{esc(d.parent_workflow_id)}</a>'
              if d.parent_workflow_id else '<span class="muted">none</span>')
    kids = ", ".join(f'<a href="{esc(url("/workflow", id=c))}">{esc(c)}</a> ({esc(t)})' for c, t in children)
    status = badge(d.status) + (" " + badge("PAUSED") if d.paused else "") + (
        ' <span class="badge">cancel requested</span>' if d.cancel_requested and d.status == "RUNNING" else "")
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(d.search_attributes.items()))
    pairs = [("status", f'<span id="status">{status}</span>'), ("type", esc(d.workflow_type)),
             ("run id", f'<span class="mono">{esc(d.run_id)}</span>'), ("task queue", esc(d.task_queue)),
             ("started", when(d.start_time_ms)), ("closed", when(d.close_time_ms)),
             ("events", f"{d.history_length} ({d.runs} run{'s' if d.runs != 1 else ''})"),
             ("parent", parent), ("children", kids or '<span class="muted">none</span>'),
             ("search attributes", esc(attrs) or '<span class="muted">none</span>')]
    if d.reopens:
        pairs.append(("reopened", f"{d.reopens} time(s)"))
    return f'<div class="card"><h2>Summary</h2>{kv(pairs)}</div>'


def _pending(events: list[Event], d: WorkflowDescription) -> str:
    if d.status != "RUNNING":
        return ""
    p = pending_of(events, iso)
    acts = table(["activity", "type", "state", "attempt", "last failure", "next retry"],
                 ([esc(a["activity_id"]), esc(a["activity_type"]), esc(a["state"]), esc(a["attempt"]),
                   esc(a["last_failure"]), esc(a["next_retry"])] for a in p["pending_activities"]),
                 empty="no pending activity", attrs=' id="pending-activities"')
    timers = table(["timer", "name", "fires at"],
                   ([esc(t["timer_id"]), esc(t["name"]), esc(t["fire_at"])] for t in p["pending_timers"]),
                   empty="no pending timer", attrs=' id="pending-timers"')
    held = ""
    if p["workflow_task"]:
        t = p["workflow_task"]
        held = (f'<div class="error">workflow task HELD after attempt {esc(t["attempt"])}: {esc(t["error"])}'
                f'{" (next try " + esc(t["next_try"]) + ")" if t["next_try"] else ""}</div>')
    return (f'<div class="card"><h2>Pending activities</h2>{held}{acts}</div>'
            f'<div class="card"><h2>Pending timers</h2>{timers}</div>')


def state_part(console: Console, events: list[Event], d: WorkflowDescription) -> str:
    """State, input and outcome, what it waits on (refreshed live)."""
    return f'<div class="grid">{_summary(events, d)}{_outcome(console, events, d)}{_pending(events, d)}</div>'


def history_part(console: Console, events: list[Event]) -> str:
    """The timeline and the history table (refreshed live)."""
    return (f"<h2>Timeline (latest run)</h2>{gantt(events, spans_of(events))}"
            f"<h2>History</h2>{event_rows(console.client.converter, events)}")


def _names(console: Console, events: list[Event], d: WorkflowDescription) -> Handlers:
    declared = console.handlers.get(d.workflow_type, Handlers())
    seen = sorted({e.body.signal_name for e in events if isinstance(e.body, SignalReceived)})
    return Handlers(sorted(set(declared.signals) | set(seen)), declared.queries, declared.updates)


def applicable(d: WorkflowDescription, held: bool) -> list[str]:
    """The actions that make sense for the run's state (the engine refuses the others)."""
    if d.status == "RUNNING":
        return ["cancel", "terminate", "resume" if d.paused or held else "pause"]
    return ["reopen"] if d.status in ("FAILED", "CANCELLED") else []


def _actions(wid: str, names: Handlers, d: WorkflowDescription, held: bool) -> str:
    hid = f'<input type="hidden" name="id" value="{esc(wid)}">'
    runs = "".join(f'<button type="submit" name="action" value="{a}" class="{style}">{label}</button> '
                   for a, label, style in ACTIONS if a in applicable(d, held))
    act = (f'<form method="post" action="/workflow/action" id="action-form">{hid}'
           f'<input name="reason" placeholder="reason (optional)" size="20"> {runs}</form>' if runs else
           f'<p class="muted">{esc(d.status.lower())}: nothing to do</p>')
    if d.status != "RUNNING":
        return (f'<div class="grid actions"><div class="card"><h2>Actions</h2>{act}'
                '<p class="muted">(signals and queries go to running workflows)</p></div></div>')
    signals = "".join(f'<option value="{esc(n)}">' for n in names.signals)
    signal = (f'<form method="post" action="/workflow/signal" id="signal-form">{hid}'
              f'<input name="name" list="signal-names" placeholder="signal name" required size="14">'
              f'<datalist id="signal-names">{signals}</datalist> '
              f'<input name="args" placeholder=\'arguments as a JSON array: ["yes"]\' size="28"> '
              f'<button type="submit">Send signal</button></form>')
    # The free name's button comes first: Enter in a text box presses the form's first button.
    declared = "".join(f'<button type="submit" name="name" value="{esc(q)}" class="quiet">{esc(q)}</button> '
                       for q in names.queries)
    query = (f'<form method="post" action="/workflow/query" id="query-form">{hid}'
             f'<input name="free" placeholder="query name" size="14"> '
             f'<input name="args" placeholder="arguments: JSON array" size="18"> '
             f'<button type="submit">Query</button>'
             + (f' <span class="muted">declared:</span> {declared}' if declared else "") + "</form>")
    return (f'<div class="grid actions"><div class="card"><h2>Signal</h2>{signal}</div>'
            f'<div class="card"><h2>Query</h2>{query}</div><div class="card"><h2>Run</h2>{act}</div></div>')


async def workflow_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    wid = workflow_id(request)
    events, d = await load(console, wid)
    if is_fragment(request):
        part = history_part(console, events) if request.query.get("part") == "history" else \
            state_part(console, events, d)
        return web.Response(text=part, content_type="text/html")
    held = d.status == "RUNNING" and pending_of(events, iso)["workflow_task"] is not None
    download = url("/workflow/history.json", id=wid)
    body = (f'<h1>Workflow <span class="mono">{esc(wid)}</span></h1>'
            f'<div class="pager">{live_toggle(REFRESH_MS)} <a href="{esc(download)}" download>'
            f"download history JSON</a> <span class=muted>(the file <code>aion replay FILE</code> reads, as "
            f"<code>aion workflow history ID --json</code>)</span></div>"
            f'<div id="state" data-refresh="{esc(url("/workflow", id=wid, part="state"))}">'
            f"{state_part(console, events, d)}</div>"
            f"{_actions(wid, _names(console, events, d), d, held)}"
            f'<div id="timeline" data-refresh="{esc(url("/workflow", id=wid, part="history"))}">'
            f"{history_part(console, events)}</div>"
            f'<details><summary>History as JSON</summary><pre id="history-json">'
            f"{esc(events_to_json(events, workflow_id=wid))}</pre></details>")
    return web.Response(text=page(wid, body, active="/workflows", notice=request.query.get("notice"),
                                  error=request.query.get("error"), refresh_ms=REFRESH_MS),
                        content_type="text/html")


async def history_json(request: web.Request) -> web.StreamResponse:
    """The history file (``aion workflow history ID --json``), as a download."""
    wid = workflow_id(request)
    events, _ = await load(console_of(request), wid)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in wid)[:100]
    return web.Response(text=events_to_json(events, workflow_id=wid), content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{safe}.history.json"'})


async def workflow_api(request: web.Request) -> web.StreamResponse:
    """``GET /api/workflow?id=``: the description, what it waits on, the history (JSON)."""
    import dataclasses

    wid = workflow_id(request)
    events, d = await load(console_of(request), wid)
    pending = pending_of(events, iso) if d.status == "RUNNING" else {}
    return json_response({**dataclasses.asdict(d), **pending,
                              "history": json.loads(events_to_json(events, workflow_id=wid))})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/workflow", workflow_page)
    router.add_get("/workflow/history.json", history_json)
    router.add_get("/api/workflow", workflow_api)
