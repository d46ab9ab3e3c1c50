"""A workflow's history served by the engine that owns it, page by page (``__aion.history``).

Reading a history from the events topic costs the whole partition (every other workflow's
events on it are read and skipped); the engine that owns the workflow holds its events, so
the client asks it: a ``QueryWorkflow`` named :data:`HISTORY_QUERY` whose one argument is
``{"from_seq": n, "max_bytes": m}`` (JSON) is answered, never recorded, with
``{"events": [...], "next_seq": n2 | null, "last_seq": s}``: the events from ``from_seq`` on in
the JSON form of ``aion workflow history --json`` (``_history_json``), at most about
``max_bytes`` of them (at least one), and where the next page starts (``null``: this page
reaches the end). The name is reserved (a workflow's own query of that name is never reached):
the answer never depends on the workflow's code, and a held or broken workflow is read as well
as any other.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Sequence

from ..model import Event, Payload
from ._history_json import event_from_obj, event_to_obj

__all__ = ["HISTORY_QUERY", "DEFAULT_PAGE_BYTES", "MAX_PAGE_BYTES", "page_request", "history_page", "read_page"]

HISTORY_QUERY = "__aion.history"
#: What a client asks for per page, and the most an engine sends (a reply stays well under
#: Kafka's default 1 MiB record limit).
DEFAULT_PAGE_BYTES = 256 * 1024
MAX_PAGE_BYTES = 512 * 1024
JSON = "application/json"


def page_request(from_seq: int, max_bytes: int = DEFAULT_PAGE_BYTES) -> list[Payload]:
    """The query arguments asking for the page that starts at ``from_seq``."""
    return [Payload(JSON, json.dumps({"from_seq": from_seq, "max_bytes": max_bytes}).encode())]


def history_page(history: Sequence[Event], args: Sequence[Payload],
                 earlier: Callable[[int, int], Iterable[Event]] | None = None) -> Payload:
    """The page ``args`` asks for, from ``history`` (the workflow's events in seq order).

    ``history`` may hold only the workflow's latest events (an execution loaded from its
    current run on): ``earlier(from_seq, to_seq)`` then gives the events with seq in
    ``[from_seq, to_seq)`` before them, read only as far as the page goes."""
    try:
        req = json.loads(args[0].data) if args else {}
        from_seq = max(1, int(req.get("from_seq", 1)))
        budget = min(MAX_PAGE_BYTES, max(1, int(req.get("max_bytes", DEFAULT_PAGE_BYTES))))
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"bad {HISTORY_QUERY} request (want one JSON argument "
                         f"{{\"from_seq\": n, \"max_bytes\": m}}): {e}") from None
    first = history[0].seq if history else 1
    out: list[str] = []
    size = 0
    next_seq: int | None = None
    if earlier is not None and from_seq < first:
        for ev in earlier(from_seq, first):
            text = json.dumps(event_to_obj(ev), separators=(",", ":"))
            if out and size + len(text) > budget:
                next_seq = ev.seq
                break
            out.append(text)
            size += len(text) + 1
        from_seq = first
    i = max(0, from_seq - first)
    while next_seq is None and i < len(history):
        text = json.dumps(event_to_obj(history[i]), separators=(",", ":"))
        if out and size + len(text) > budget:
            next_seq = history[i].seq
            break
        out.append(text)
        size += len(text) + 1
        i += 1
    last_seq = history[-1].seq if history else 0
    data = '{"events":[' + ",".join(out) + f'],"next_seq":{json.dumps(next_seq)},"last_seq":{last_seq}}}'
    return Payload(JSON, data.encode())


def read_page(payload: Payload) -> tuple[list[Event], int | None]:
    """The events of one page and where the next one starts (None: the history's end)."""
    obj: dict[str, Any] = json.loads(payload.data)
    return [event_from_obj(o) for o in obj["events"]], obj["next_seq"]
