"""Schedule specs: what every part may know of a schedule without running one.

The spec a schedule fires on (a 5-field cron expression in an IANA time zone, or a fixed
interval with an offset), its validation (:func:`validate_spec`, :class:`ScheduleSpecError`),
its fire times (:func:`next_fire_ms`, :func:`fire_times`), and the ids: the schedule's own
workflow ``schedule:<id>`` of type ``aion.Schedule`` and the deterministic id of each workflow it
starts. The client builds and checks specs with these; the system workflow that fires them is
``aion.engine._schedules.ScheduleWorkflow``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..exceptions import AionError

__all__ = [
    "SCHEDULE_WORKFLOW_TYPE",
    "WORKFLOW_ID_PREFIX",
    "OVERLAP_POLICIES",
    "CATCH_UP_POLICIES",
    "ScheduleSpecError",
    "schedule_workflow_id",
    "schedule_id_of",
    "target_workflow_id",
    "validate_spec",
    "next_fire_ms",
    "fire_times",
    "latest_fire",
    "spec_text",
    "cron_step",
    "cron_zone",
]

SCHEDULE_WORKFLOW_TYPE = "aion.Schedule"
WORKFLOW_ID_PREFIX = "schedule:"
OVERLAP_POLICIES = ("SKIP", "BUFFER_ONE", "CANCEL_OTHER", "ALLOW_ALL")
CATCH_UP_POLICIES = ("ALL", "ONE", "SKIP")


class ScheduleSpecError(AionError, ValueError):
    """A schedule spec that cannot work; the message says which field and what to do."""


def schedule_workflow_id(schedule_id: str) -> str:
    return WORKFLOW_ID_PREFIX + schedule_id


def schedule_id_of(workflow_id: str) -> str:
    return workflow_id[len(WORKFLOW_ID_PREFIX):] if workflow_id.startswith(WORKFLOW_ID_PREFIX) else workflow_id


def _iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def target_workflow_id(schedule_id: str, fire_ms: int) -> str:
    """The id of the workflow a schedule starts for fire time ``fire_ms`` (deterministic)."""
    return f"{schedule_id}-{_iso(fire_ms)}"


def validate_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise a schedule spec; raises :class:`ScheduleSpecError`."""
    sid = spec.get("id")
    if not sid or not isinstance(sid, str):
        raise ScheduleSpecError("a schedule needs an id (a non-empty string)")
    cron, interval = spec.get("cron"), spec.get("interval_ms")
    if (cron is None) == (interval is None):
        raise ScheduleSpecError(f"schedule {sid!r}: give exactly one of cron=... (5 fields) or interval=...")
    tz = spec.get("timezone") or "UTC"
    try:
        _zone(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleSpecError(f"schedule {sid!r}: unknown time zone {tz!r}: give an IANA name such as "
                                f"'Europe/Paris' or 'America/New_York' (the default is 'UTC')") from None
    if cron is not None:
        from croniter import croniter

        if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ScheduleSpecError(f"schedule {sid!r}: cron {cron!r} is not a valid 5-field cron expression "
                                    f"(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *')")
    else:
        if not isinstance(interval, int) or interval < 1000:
            raise ScheduleSpecError(f"schedule {sid!r}: interval must be at least 1 second, got {interval!r} ms")
        off = spec.get("offset_ms", 0) or 0
        if not isinstance(off, int) or not 0 <= off < interval:
            raise ScheduleSpecError(f"schedule {sid!r}: offset must be within [0, interval), got {off!r} ms")
    if not spec.get("workflow_type") or not isinstance(spec.get("workflow_type"), str):
        raise ScheduleSpecError(f"schedule {sid!r}: name the workflow to start (workflow=Order.run or a type name)")
    if spec.get("overlap", "SKIP") not in OVERLAP_POLICIES:
        raise ScheduleSpecError(f"schedule {sid!r}: overlap must be one of {', '.join(OVERLAP_POLICIES)}, "
                                f"got {spec.get('overlap')!r}")
    if spec.get("catch_up", "ONE") not in CATCH_UP_POLICIES:
        raise ScheduleSpecError(f"schedule {sid!r}: catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, "
                                f"got {spec.get('catch_up')!r}")
    window = spec.get("catch_up_window_ms", 10_000)
    if not isinstance(window, int) or window < 0:
        raise ScheduleSpecError(f"schedule {sid!r}: catch_up_window must be >= 0, got {window!r} ms")
    if not isinstance(spec.get("args", []), list):
        raise ScheduleSpecError(f"schedule {sid!r}: args must be a list")
    out = {
        "id": sid, "cron": cron, "timezone": tz, "interval_ms": interval, "offset_ms": spec.get("offset_ms", 0) or 0,
        "workflow_type": spec["workflow_type"], "args": list(spec.get("args", [])),
        "task_queue": spec.get("task_queue") or "default", "overlap": spec.get("overlap", "SKIP"),
        "catch_up": spec.get("catch_up", "ONE"), "catch_up_window_ms": window,
        "paused": bool(spec.get("paused", False)), "note": spec.get("note", "") or "",
    }
    if "state" in spec:
        out["state"] = spec["state"]
    return out


def cron_zone(name: str | None) -> tzinfo:
    """The zone ``name`` names (UTC when empty); raises for an unknown name."""
    if not name or name == "UTC":
        return timezone.utc
    return ZoneInfo(name)


_zone = cron_zone


def cron_step(fields: str, tz: str | None, from_ms: int, forward: bool) -> int:
    """The fire time of the 5-field cron ``fields`` in zone ``tz`` strictly after
    (``forward``) or at-or-before ``from_ms`` (schedules, and cron workflows through
    ``aion.runtime._cron``).

    The expression matches wall-clock times in the zone: croniter walks naive local times, each
    is placed in the zone, and a time that falls on the wrong side of ``from_ms`` (in an hour
    that a daylight-saving change repeats) is stepped over. So a local time that happens twice
    (autumn) fires once, at its first occurrence, and one that does not exist (spring) fires at
    the same moment an hour later on the clock (02:30 -> 03:30), as Vixie cron does. (croniter's
    own handling of aware datetimes drifts by an hour for the days after a change.)"""
    from croniter import croniter

    zone = cron_zone(tz)
    local = datetime.fromtimestamp(from_ms / 1000, tz=zone).replace(tzinfo=None)
    if not forward:
        local += timedelta(microseconds=1)  # get_prev is strict: include from_ms itself
    it = croniter(fields, local)
    for _ in range(4):
        naive = it.get_next(datetime) if forward else it.get_prev(datetime)
        t = int(round(naive.replace(tzinfo=zone).timestamp() * 1000))
        if (t > from_ms) if forward else (t <= from_ms):
            return t
    raise ScheduleSpecError(f"cron {fields!r} in {tz!r} found no fire time near {from_ms}")


def _cron_step(spec: dict[str, Any], from_ms: int, forward: bool) -> int:
    """The cron fire time of a schedule spec strictly after (``forward``) or at-or-before ``from_ms``."""
    return cron_step(spec["cron"], spec.get("timezone"), from_ms, forward)


def next_fire_ms(spec: dict[str, Any], after_ms: int) -> int:
    """The first fire time strictly after ``after_ms``."""
    if spec.get("cron"):
        return _cron_step(spec, after_ms, forward=True)
    interval, off = spec["interval_ms"], spec.get("offset_ms", 0) or 0
    return ((after_ms - off) // interval + 1) * interval + off


def fire_times(spec: dict[str, Any], after_ms: int, upto_ms: int, limit: int) -> list[int]:
    """Fire times in ``(after_ms, upto_ms]``, the first ``limit`` of them."""
    out: list[int] = []
    t = after_ms
    while len(out) < limit:
        t = next_fire_ms(spec, t)
        if t > upto_ms:
            break
        out.append(t)
    return out


def latest_fire(spec: dict[str, Any], after_ms: int, upto_ms: int) -> int | None:
    """The last fire time in ``(after_ms, upto_ms]`` (None if there is none)."""
    if spec.get("cron"):
        t = _cron_step(spec, upto_ms, forward=False)
    else:
        interval, off = spec["interval_ms"], spec.get("offset_ms", 0) or 0
        t = ((upto_ms - off) // interval) * interval + off
    return t if after_ms < t <= upto_ms else None


def spec_text(s: dict[str, Any]) -> str:
    if not s.get("cron"):
        return f"every {s['interval_ms']}ms+{s.get('offset_ms', 0)}"
    tz = s.get("timezone") or "UTC"
    return s["cron"] if tz == "UTC" else f"{s['cron']} ({tz})"
