"""The workflow list: filters (type, status, start-time range, search attributes and the
client's list filter), paging, and a live refresh of the results."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..client import WorkflowSummary
from ..exceptions import AionError
from ._app import PageError, console_of, is_fragment
from ._format import json_response
from ._html import badge, esc, live_toggle, page, table, url, when

STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW")
PAGE_SIZES = (25, 50, 100, 200)
REFRESH_MS = 3000


@dataclasses.dataclass
class ListFilters:
    """The list page's filters, from its query string."""

    query: str = ""
    type: str = ""
    status: str = ""
    after: str = ""
    before: str = ""
    attrs: str = ""
    page: int = 1
    size: int = PAGE_SIZES[0]

    def params(self, **changes: Any) -> dict[str, Any]:
        d = {**dataclasses.asdict(self), **changes}
        if d["size"] == PAGE_SIZES[0]:
            d["size"] = None
        if d["page"] == 1:
            d["page"] = None
        return d


def _when(text: str, what: str) -> datetime | None:
    """An ISO 8601 time from a form (``2026-12-03T10:00`` is read as UTC)."""
    text = text.strip()
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PageError(f"{what} {text!r} is not a time: write it as 2026-12-03T10:00 (UTC) or "
                        "2026-12-03T10:00:00+01:00") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _attrs(text: str) -> dict[str, str]:
    """``Key=Value, Other=2`` as a dict."""
    out = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            raise PageError(f"search attribute {part!r} is not KEY=VALUE (separate several with commas)")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _int(value: str, default: int, what: str) -> int:
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise PageError(f"{what} {value!r} is not a number") from None
    if n < 1:
        raise PageError(f"{what} must be 1 or more, not {n}")
    return n


def filters_of(q: Any) -> ListFilters:
    status = q.get("status", "").strip().upper()
    if status and status not in STATUSES:
        raise PageError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return ListFilters(query=q.get("query", "").strip(), type=q.get("type", "").strip(), status=status,
                       after=q.get("after", "").strip(), before=q.get("before", "").strip(),
                       attrs=q.get("attrs", "").strip(), page=_int(q.get("page", ""), 1, "page"),
                       size=min(_int(q.get("size", ""), PAGE_SIZES[0], "page size"), 1000))


async def matching(request: web.Request, f: ListFilters, upto: int) -> tuple[list[WorkflowSummary], int]:
    """The first ``upto`` workflows the filters select, newest first, and how
    many match in all (``client.list_workflows`` and ``count_workflows``: the engines answer
    both from their index, so a page costs the rows up to it, not every workflow)."""
    client = console_of(request).client
    filters: dict[str, Any] = dict(
        type=f.type or None, status=f.status or None,
        started_after=_when(f.after, "started after"), started_before=_when(f.before, "started before"),
        search_attributes=_attrs(f.attrs) or None)
    rows = await client.list_workflows(f.query or None, limit=upto, newest_first=True, **filters)
    total = len(rows) if len(rows) < upto else await client.count_workflows(f.query or None, **filters)
    return rows, total


def _row(r: WorkflowSummary) -> list[str]:
    pairs = [f"{k}={v}" for k, v in sorted(r.search_attributes.items())]
    chips = " ".join(f'<code class="chip">{esc(p)}</code>' for p in pairs[:3])
    if len(pairs) > 3:
        chips += f' <span class="muted" title="{esc(", ".join(pairs))}">+{len(pairs) - 3} more</span>'
    return [f'<a href="{esc(url("/workflow", id=r.workflow_id))}" class="mono">{esc(r.workflow_id)}</a>',
            esc(r.workflow_type), badge(r.status), when(r.started_at_ms), when(r.closed_at_ms),
            f'<span class="num">{r.history_length}</span>', chips]


def results(rows: list[WorkflowSummary], total: int, f: ListFilters) -> str:
    """The results part of the page (what the live refresh replaces): ``rows`` are the newest
    up to the page's end, ``total`` how many match."""
    pages = max(1, -(-total // f.size))
    shown = rows[(f.page - 1) * f.size: f.page * f.size]
    nav = [f"<b data-count='{total}'>{total}</b> workflow{'s' if total != 1 else ''} match",
           f"page {f.page} of {pages}"]
    if f.page > 1:
        nav.append(f'<a href="{esc(url("/workflows", **f.params(page=f.page - 1)))}">‹ newer</a>')
    if f.page < pages:
        nav.append(f'<a href="{esc(url("/workflows", **f.params(page=f.page + 1)))}">older ›</a>')
    head = ["workflow id", "type", "status", "started", "closed", "events", "search attributes"]
    return (f'<div class="pager">{" · ".join(nav)}</div>'
            + table(head, (_row(r) for r in shown), empty="no workflow matches", attrs=' id="workflows"'))


def _form(f: ListFilters) -> str:
    status = "".join(f'<option{" selected" if s == f.status else ""}>{s}</option>' for s in STATUSES)
    sizes = "".join(f'<option{" selected" if n == f.size else ""}>{n}</option>' for n in PAGE_SIZES)
    return f"""<form class="filters" method="get" action="/workflows">
<label>type<input name="type" value="{esc(f.type)}" placeholder="Order" size="12"></label>
<label>status<select name="status"><option value="">any</option>{status}</select></label>
<label>started after (UTC)<input name="after" type="datetime-local" step="1" value="{esc(f.after)}"></label>
<label>started before (UTC)<input name="before" type="datetime-local" step="1" value="{esc(f.before)}"></label>
<label>search attributes<input name="attrs" value="{esc(f.attrs)}" placeholder="Customer=acme, Region=eu" size="20"></label>
<label style="flex:1">list filter<input name="query" value="{esc(f.query)}" size="40"
 placeholder="WorkflowType = 'Order' AND ExecutionStatus = 'Running' AND StartTime > '2026-12-01T00:00:00Z'"></label>
<label>per page<select name="size">{sizes}</select></label>
<button type="submit">Filter</button> <a href="/workflows">clear</a></form>"""


async def list_page(request: web.Request) -> web.StreamResponse:
    try:
        f = filters_of(request.query)
        rows, total = await matching(request, f, upto=f.page * f.size)
        body, error = results(rows, total, f), None
    except (PageError, AionError) as exc:  # a filter that does not parse: the form stays, with the reason
        q = request.query
        f = ListFilters(query=q.get("query", ""), type=q.get("type", ""), after=q.get("after", ""),
                        before=q.get("before", ""), attrs=q.get("attrs", ""))
        body, error = "", str(exc)
    if is_fragment(request):
        if error:
            raise PageError(error)
        return web.Response(text=body, content_type="text/html")
    s = console_of(request).settings
    refresh = url("/workflows", **f.params())
    html = (f"<h1>Workflows</h1>{_form(f)}<div>{live_toggle(REFRESH_MS)}</div>"
            f'<div data-refresh="{esc(refresh)}">{body}</div>')
    return web.Response(text=page("Workflows", html, active="/workflows", error=error,
                                  where=f"{s.bootstrap_servers} · prefix {s.topic_prefix}",
                                  refresh_ms=REFRESH_MS if not error else 0),
                        status=400 if error else 200, content_type="text/html")


async def list_api(request: web.Request) -> web.StreamResponse:
    """``GET /api/workflows``: the same filters, the page's rows as JSON."""
    f = filters_of(request.query)
    rows, total = await matching(request, f, upto=f.page * f.size)
    shown = rows[(f.page - 1) * f.size: f.page * f.size]
    return json_response({"total": total, "page": f.page, "size": f.size,
                              "workflows": [dataclasses.asdict(r) for r in shown]})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/workflows", list_page)
    router.add_get("/api/workflows", list_api)
