"""Value types shared by events, commands and activity tasks (mirror schemas/aion.common.*)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


def now_ms() -> int:
    """The wall clock in epoch milliseconds: the unit of every timestamp in the model."""
    return int(time.time() * 1000)


@dataclass(slots=True, frozen=True)
class Payload:
    """One encoded value: a workflow input, an activity result, a signal argument."""

    content_type: str
    data: bytes


@dataclass(slots=True, frozen=True)
class Failure:
    """A failure chain: what went wrong, where, and what caused it."""

    type: str
    message: str
    details: Payload | None = None
    non_retryable: bool = False
    stack: str = ""
    cause: Failure | None = None


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Durable retry policy of an activity (or a workflow task); intervals in milliseconds.

    ``maximum_attempts == 0`` means unlimited attempts.
    """

    initial_interval_ms: int = 1000
    backoff_coefficient: float = 2.0
    maximum_interval_ms: int | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: list[str] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class ActivityTimeouts:
    """The four activity timeouts in milliseconds; ``None`` means not set."""

    schedule_to_close_ms: int | None = None
    schedule_to_start_ms: int | None = None
    start_to_close_ms: int | None = None
    heartbeat_ms: int | None = None


def payload_size(value: Any) -> int:
    """Bytes of user data an event, command or task body carries: its payloads (inputs,
    arguments, results, details) and the text of its failures (message and stack), which land
    in the history too. The one measure behind the payload limit (``AION_MAX_PAYLOAD_BYTES``,
    checked by the engine on every command) and the history size limits (the runtime)."""
    t = type(value)
    if t is Payload:
        return len(value.data)
    if t is Failure:
        return len(value.message) + len(value.stack) + payload_size(value.details) + payload_size(value.cause)
    if t is list or t is tuple:
        n = 0
        for v in value:
            n += payload_size(v)
        return n
    size = _SIZERS.get(t)
    if size is None:
        size = _SIZERS[t] = _sizer(t)
    return size(value)


def _sizer(t: type) -> Callable[[Any], int]:
    """:func:`payload_size` of a ``t``: the sum over its dataclass fields that hold neither None
    nor a scalar, written out once per type (payload_size walks every event and command; a
    loop over the field names with getattr cost twice as much)."""
    lines = ["def size(o):", "    n = 0"]
    for name in getattr(t, "__dataclass_fields__", ()):
        lines += [f"    v = o.{name}", "    if v is not None and type(v) not in _SCALARS:",
                  "        n += payload_size(v)"]
    lines.append("    return n")
    ns: dict[str, Any] = {"_SCALARS": _SCALARS, "payload_size": payload_size}
    exec("\n".join(lines), ns)  # noqa: S102 - field names of a dataclass are identifiers
    fn: Callable[[Any], int] = ns["size"]
    return fn


#: The sizer of each type met (payload_size walks every event and command: no per-call lookups).
_SIZERS: dict[type, Callable[[Any], int]] = {}
_SCALARS = frozenset({str, int, bool, float, bytes, dict})
