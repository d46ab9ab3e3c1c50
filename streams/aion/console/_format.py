"""Values as the console shows them: payloads decoded by the client's converter, times in ISO
8601 UTC, an event's body in one line, a failure chain."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Any

from ..model import Event, Failure, Payload


def jsonable(value: Any) -> Any:
    """What ``json.dumps`` cannot write, as JSON: typed search attributes as ``{name: value}``,
    datetimes as ISO 8601, anything else as its text."""
    from .._search_attributes import TypedSearchAttributes

    if isinstance(value, TypedSearchAttributes):
        return {pair.key.name: pair.value for pair in value}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def json_response(data: Any, *, status: int = 200) -> Any:
    """``aiohttp.web.json_response`` for the console's API: every value written (:func:`jsonable`)."""
    import functools

    from aiohttp import web

    return web.json_response(data, status=status, dumps=functools.partial(json.dumps, default=jsonable))


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC (``2026-12-03T12:38:46.768Z``)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_value(converter: Any, p: Payload | None) -> Any:
    """What ``p`` holds, as the client's converter decodes it (the raw text when it cannot)."""
    if p is None:
        return None
    try:
        return converter.from_payload(p, None)
    except Exception:  # an encrypted payload without the key, a foreign encoding
        try:
            return p.data.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(p.data)} bytes of {p.content_type}>"


def pretty(value: Any) -> str:
    """``value`` as indented JSON (its ``str`` when it is not JSON-able)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=jsonable)
    except (TypeError, ValueError):
        return str(value)


def failure_text(f: Failure | None) -> str:
    """A failure chain as Python prints one: ``Type: message``, its stack, then each cause."""
    lines: list[str] = []
    depth = 0
    while f is not None and depth < 20:
        if depth:
            lines.append("\ncaused by:")
        lines.append(f"{f.type}: {f.message}" if f.type else f.message)
        if f.non_retryable:
            lines.append("(non-retryable)")
        if f.stack:
            lines.append(f.stack.rstrip())
        f, depth = f.cause, depth + 1
    return "\n".join(lines)


def _plain(converter: Any, v: Any) -> Any:
    if isinstance(v, Payload):
        return payload_value(converter, v)
    if isinstance(v, Failure):
        return f"{v.type}: {v.message}" if v.type else v.message
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(converter, getattr(v, f.name)) for f in dataclasses.fields(v)
                if getattr(v, f.name) is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(converter, x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(converter, x) for k, x in v.items()}
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return v


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def event_details(converter: Any, e: Event, limit: int = 240) -> str:
    """The event's body fields that say something (not empty, not their default), in one line
    (payloads decoded)."""
    body = {f.name: getattr(e.body, f.name) for f in dataclasses.fields(e.body)
            if f.name not in ("reply_to", "request_id") and getattr(e.body, f.name) != _default(f)}
    shown = {k: _plain(converter, v) for k, v in body.items() if v not in (None, [], {}, "")}
    text = json.dumps(shown, ensure_ascii=False, default=jsonable)
    return text if len(text) <= limit else text[: limit - 1] + "…"
