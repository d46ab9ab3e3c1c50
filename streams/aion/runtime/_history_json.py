"""A small JSON form of workflow histories (golden files, ``aion replay FILE``, debugging).

```json
{"format": "aion-history/1", "events": [
  {"workflow_id": "order-1", "seq": 1, "run_id": "...", "recorded_at_ms": 1700000000000,
   "command_id": "c-1", "type": "WorkflowStarted", "body": {"workflow_type": "Order", ...}}
]}
```

Bodies are the model dataclasses field by field; ``bytes`` (payload data) are base64 strings;
nested dataclasses (``Payload``, ``Failure``, ``RetryPolicy``, ``ActivityTimeouts``) are
objects. Decoding follows the dataclasses' type hints, so the format tracks the model.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Iterable

from .. import model
from ..model import EVENT_TYPES, Event

__all__ = ["FORMAT", "event_to_obj", "event_from_obj", "events_to_json", "events_from_json",
           "dump_history", "load_history", "to_obj", "from_obj"]

FORMAT = "aion-history/1"
_EVENT_BODIES = {t.__name__: t for t in EVENT_TYPES}
_HINTS: dict[type, dict[str, Any]] = {}


def to_obj(v: Any) -> Any:
    """A model value as JSON-able data (dataclasses -> dicts, bytes -> base64)."""
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_obj(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [to_obj(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_obj(x) for k, x in v.items()}
    return v


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = typing.get_type_hints(cls, vars(model) | vars(__import__(cls.__module__, fromlist=["x"])))
    return h


def from_obj(data: Any, hint: Any) -> Any:
    """Inverse of :func:`to_obj` for a value of type ``hint``."""
    if data is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return from_obj(data, inner[0])
        return data
    if origin in (list, tuple):
        return [from_obj(x, args[0] if args else Any) for x in data]
    if origin is dict:
        return {k: from_obj(x, args[1] if len(args) > 1 else Any) for k, x in data.items()}
    if hint is bytes:
        return base64.b64decode(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        h = _hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        return hint(**{k: from_obj(v, h.get(k, Any)) for k, v in data.items() if k in names})
    return data


def event_to_obj(ev: Event) -> dict[str, Any]:
    return {
        "workflow_id": ev.workflow_id,
        "seq": ev.seq,
        "run_id": ev.run_id,
        "recorded_at_ms": ev.recorded_at_ms,
        "command_id": ev.command_id,
        "type": ev.type,
        "body": to_obj(ev.body),
    }


def event_from_obj(o: dict[str, Any]) -> Event:
    cls = _EVENT_BODIES.get(o["type"])
    if cls is None:
        raise ValueError(f"unknown event type {o['type']!r} at seq {o.get('seq')}")
    return Event(
        workflow_id=o["workflow_id"],
        seq=int(o["seq"]),
        run_id=o["run_id"],
        recorded_at_ms=int(o["recorded_at_ms"]),
        body=from_obj(o.get("body") or {}, cls),
        command_id=o.get("command_id"),
    )


def events_to_json(events: Iterable[Event], **meta: Any) -> str:
    doc = {"format": FORMAT, **meta, "events": [event_to_obj(e) for e in events]}
    return json.dumps(doc, indent=1, sort_keys=False)


def events_from_json(text: str) -> list[Event]:
    doc = json.loads(text)
    if isinstance(doc, list):
        items = doc
    else:
        fmt = doc.get("format")
        if fmt != FORMAT:
            raise ValueError(f"not an aion JSON history (format {fmt!r}, expected {FORMAT!r})")
        items = doc["events"]
    return [event_from_obj(o) for o in items]


def dump_history(path: str | Path, events: Iterable[Event], **meta: Any) -> None:
    Path(path).write_text(events_to_json(events, **meta) + "\n")


def load_history(path: str | Path) -> list[Event]:
    return events_from_json(Path(path).read_text())
