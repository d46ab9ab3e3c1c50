"""The operator's actions on one workflow, posted from its page: signal, query, cancel,
terminate, pause, resume, reopen. Each answers with a redirect back to the page carrying a
notice, or the error in words (bad JSON, an unknown name, the engine's refusal)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..exceptions import AionError
from ._app import Console, PageError, console_of
from ._html import url
from ._workflow_page import ACTIONS, workflow_id


def json_args(text: str, what: str) -> list[Any]:
    """A form's arguments: a JSON array (empty text: none)."""
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PageError(f"{what} arguments are not JSON: {exc.msg} at column {exc.colno} in {text[:200]!r}; "
                        'write a JSON array, e.g. ["yes"] or [1, {"id": "o-1"}]') from None
    if not isinstance(value, list):
        raise PageError(f"{what} arguments must be a JSON array of the arguments, e.g. [{text[:100]}], "
                        f"not a {type(value).__name__}")
    return value


def _back(wid: str, **message: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(url("/workflow", id=wid, **{k: v[:2000] for k, v in message.items()}))


async def _form(request: web.Request) -> tuple[Console, str, Any]:
    form = await request.post()
    return console_of(request), workflow_id(request, form), form


async def signal(request: web.Request) -> web.StreamResponse:
    console, wid, form = await _form(request)
    name = str(form.get("name", "")).strip()
    try:
        if not name:
            raise PageError("give the signal's name")
        args = json_args(str(form.get("args", "")), f"signal {name!r}")
        await console.client.get_workflow_handle(wid).signal(name, *args)
    except Exception as exc:
        raise _back(wid, error=_message(exc, f"signal {name!r}")) from None
    raise _back(wid, notice=f"signal {name!r} sent with {json.dumps(args)[:200]}")


async def query(request: web.Request) -> web.StreamResponse:
    console, wid, form = await _form(request)
    name = str(form.get("name") or form.get("free") or "").strip()  # a declared query's button, or the box
    try:
        if not name:
            raise PageError("give the query's name")
        args = json_args(str(form.get("args", "")), f"query {name!r}")
        result = await console.client.get_workflow_handle(wid).query(name, *args)
    except Exception as exc:
        raise _back(wid, error=_message(exc, f"query {name!r}")) from None
    raise _back(wid, notice=f"query {name!r} answered: {json.dumps(result, default=str)}")


async def action(request: web.Request) -> web.StreamResponse:
    console, wid, form = await _form(request)
    what = str(form.get("action", ""))
    if what not in {a for a, _, _ in ACTIONS}:
        raise _back(wid, error=f"unknown action {what!r}: one of {', '.join(a for a, _, _ in ACTIONS)}")
    try:
        await getattr(console.client.get_workflow_handle(wid), what)(str(form.get("reason", "")))
    except Exception as exc:
        raise _back(wid, error=_message(exc, what)) from None
    raise _back(wid, notice=f"{what}: done")


def _message(exc: Exception, what: str) -> str:
    """An error as the page says it (the type only when the message alone would not tell)."""
    if isinstance(exc, (PageError, AionError)):
        return str(exc) if what in str(exc) else f"{what}: {exc}"
    return f"{what} failed: {type(exc).__name__}: {exc}"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/workflow/signal", signal)
    router.add_post("/workflow/query", query)
    router.add_post("/workflow/action", action)
