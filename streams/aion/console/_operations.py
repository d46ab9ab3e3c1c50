"""The operations pages: schedules (pause, resume, trigger), dead letters (list with the reason,
replay), and a live tail of the events topic."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ..client._dlq import read_dead_letters, replay_dead_letters
from ..client._recent import read_recent_events
from ._app import PageError, console_of, is_fragment
from ._format import event_details, iso, json_response
from ._html import badge, esc, live_toggle, page, table, url, when

TAIL_SIZES = (25, 50, 100, 250)
REFRESH_MS = 2000


# ---------------------------------------------------------------- schedules


async def schedules_page(request: web.Request) -> web.StreamResponse:
    rows = await console_of(request).client.list_schedules()
    cells = []
    for s in rows:
        sid = f'<input type="hidden" name="id" value="{esc(s.id)}">'
        toggle = ("resume", "Resume") if s.paused else ("pause", "Pause")
        buttons = (f'<form class="inline" method="post" action="/schedules/action">{sid}'
                   f'<button name="action" value="{toggle[0]}" class="quiet">{toggle[1]}</button> '
                   f'<button name="action" value="trigger">Trigger now</button></form>')
        cells.append([f'<span class="mono">{esc(s.id)}</span>', esc(s.spec), esc(s.workflow_type),
                      badge("PAUSED") if s.paused else '<span class="badge s-RUNNING">active</span>',
                      esc(s.overlap), esc(s.catch_up), esc(s.note),
                      f'<a href="{esc(url("/workflow", id=s.workflow_id))}">{esc(s.workflow_id)}</a>', buttons])
    body = ("<h1>Schedules</h1>" + table(
        ["schedule", "spec", "starts", "state", "overlap", "catch-up", "note", "its workflow", ""], cells,
        empty="no schedule (create one with client.create_schedule or `aion schedule create`)", attrs=' id="schedules"'))
    return web.Response(text=page("Schedules", body, active="/schedules", notice=request.query.get("notice"),
                                  error=request.query.get("error")), content_type="text/html")


async def schedule_action(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    sid, what = str(form.get("id", "")), str(form.get("action", ""))
    if what not in ("pause", "resume", "trigger"):
        raise web.HTTPSeeOther(url("/schedules", error=f"unknown action {what!r}: pause, resume or trigger"))
    try:
        h = console_of(request).client.get_schedule_handle(sid)
        await (h.trigger() if what == "trigger" else getattr(h, what)("from the console"))
    except Exception as exc:
        raise web.HTTPSeeOther(url("/schedules", error=f"{what} schedule {sid!r}: {exc}")) from None
    done = {"pause": "paused", "resume": "resumed", "trigger": "triggered"}[what]
    raise web.HTTPSeeOther(url("/schedules", notice=f"schedule {sid!r} {done}"))


# ---------------------------------------------------------------- dead letters


async def dlq_page(request: web.Request) -> web.StreamResponse:
    s = console_of(request).settings
    letters = await asyncio.to_thread(read_dead_letters, s)
    cells = []
    for d in reversed(letters):
        r = d.row()
        again = f' <span class="badge">replay of {esc(r["replayed_from"])}</span>' if r["replayed_from"] else ""
        cells.append([f'<input type="checkbox" name="pos" value="{esc(d.position)}" form="replay">',
                      f'<span class="mono">{esc(d.position)}</span>', esc(r["time"]),
                      f'<a href="{esc(url("/workflow", id=r["key"]))}">{esc(r["key"])}</a>' if r["key"] else "",
                      f'<span class="mono">{esc(d.source)}</span>', esc(d.reason) + again])
    body = ("<h1>Dead letters</h1><p class=muted>Commands the engine could not decode or refused with nobody to "
            f"tell, on <code>{esc(s.topic_prefix)}.dlq</code>, newest first. Replay re-submits the original "
            "record to the commands topic (after a fix: a deployed workflow type, a started workflow).</p>"
            '<form id="replay" method="post" action="/dlq/replay" class="pager">'
            '<button type="submit">Replay selected</button></form>'
            + table(["", "dead letter", "time (UTC)", "key", "source", "reason"], cells,
                    empty="no dead letter", attrs=' id="dead-letters"'))
    return web.Response(text=page("Dead letters", body, active="/dlq", notice=request.query.get("notice"),
                                  error=request.query.get("error")), content_type="text/html")


async def dlq_replay(request: web.Request) -> web.StreamResponse:
    s = console_of(request).settings
    wanted = {str(p) for p in (await request.post()).getall("pos", [])}
    if not wanted:
        raise web.HTTPSeeOther(url("/dlq", error="select the dead letters to replay first"))
    letters = [d for d in await asyncio.to_thread(read_dead_letters, s) if d.position in wanted]
    missing = wanted - {d.position for d in letters}
    if missing:
        raise web.HTTPSeeOther(url("/dlq", error=f"no dead letter at {', '.join(sorted(missing))}"))
    n = await asyncio.to_thread(replay_dead_letters, s, letters)
    raise web.HTTPSeeOther(url("/dlq", notice=f"re-submitted {n} dead letter(s) "
                                              f"({', '.join(sorted(wanted))}) to {s.topic_prefix}.commands"))


# ---------------------------------------------------------------- events


def _size(text: str) -> int:
    try:
        n = int(text or TAIL_SIZES[1])
    except ValueError:
        raise PageError(f"the number of events {text!r} is not a number") from None
    if not 1 <= n <= 1000:
        raise PageError(f"show 1 to 1000 events, not {n}")
    return n


async def events_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    n, prefix = _size(request.query.get("n", "")), request.query.get("workflow", "").strip()
    records = await asyncio.to_thread(read_recent_events, console.settings, n, codec=console.client.codec,
                                      workflow_id_prefix=prefix)
    conv = console.client.converter
    cells = [[when(r.event.recorded_at_ms), f'<a href="{esc(url("/workflow", id=r.workflow_id))}" '
              f'class="mono">{esc(r.workflow_id)}</a>', f'<span class="num">{r.seq}</span>', f"<b>{esc(r.type)}</b>",
              f'<span class="mono">{esc(event_details(conv, r.event, 160))}</span>', f"{r.partition}@{r.offset}"]
             for r in reversed(records) if r.event is not None]
    part = table(["recorded", "workflow", "seq", "event", "details", "record"], cells,
                 empty="no event yet", attrs=f' id="events" data-count="{len(cells)}"')
    if is_fragment(request):
        return web.Response(text=part, content_type="text/html")
    sizes = "".join(f'<option{" selected" if k == n else ""}>{k}</option>' for k in TAIL_SIZES)
    form = (f'<form class="filters" method="get" action="/events"><label>last<select name="n">{sizes}</select></label>'
            f'<label>workflow id starts with<input name="workflow" value="{esc(prefix)}"></label>'
            f'<button type="submit">Show</button></form>')
    body = (f"<h1>Events</h1><p class=muted>The newest events of <code>{esc(console.settings.topic_prefix)}.events"
            f"</code>, newest first.</p>{form}<div>{live_toggle(REFRESH_MS)}</div>"
            f'<div data-refresh="{esc(url("/events", n=n, workflow=prefix))}">{part}</div>')
    return web.Response(text=page("Events", body, active="/events", refresh_ms=REFRESH_MS), content_type="text/html")


async def events_api(request: web.Request) -> web.StreamResponse:
    """``GET /api/events?n=50``: the newest events (JSON, oldest first)."""
    console = console_of(request)
    records = await asyncio.to_thread(read_recent_events, console.settings, _size(request.query.get("n", "")),
                                      codec=console.client.codec)
    return json_response([{"workflow_id": r.workflow_id, "seq": r.seq, "type": r.type,
                               "recorded_at": iso(r.event.recorded_at_ms) if r.event else None,
                               "partition": r.partition, "offset": r.offset} for r in records])


async def dlq_api(request: web.Request) -> web.StreamResponse:
    """``GET /api/dlq``: the dead letters as ``aion dlq list --json`` (plus ``replayed_from``)."""
    letters = await asyncio.to_thread(read_dead_letters, console_of(request).settings)
    return web.Response(text=json.dumps([d.row() for d in letters]), content_type="application/json")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/schedules", schedules_page)
    router.add_post("/schedules/action", schedule_action)
    router.add_get("/dlq", dlq_page)
    router.add_post("/dlq/replay", dlq_replay)
    router.add_get("/api/dlq", dlq_api)
    router.add_get("/events", events_page)
    router.add_get("/api/events", events_api)
