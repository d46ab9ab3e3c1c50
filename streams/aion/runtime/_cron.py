"""Cron expressions: the next fire time, shared by cron workflows and schedules.

A cron workflow (``start_workflow(..., cron_schedule=...)``, or a child's ``cron_schedule``)
records its expression in ``WorkflowStarted.cron_schedule``; the runtime computes, when a run
closes, the first fire time after the close and starts the next run with that wait as its
first-task backoff (``_successors.py``). The walk over fire times is the schedules' own
(``aion.common.schedule_spec.cron_step``, daylight-saving changes included). Expressions are
read as Temporal reads them: five fields (minute hour day-of-month month day-of-week) or a macro (``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@hourly``), in
UTC unless prefixed with ``CRON_TZ=<IANA zone>`` (or ``TZ=``).
"""

from __future__ import annotations

from zoneinfo import ZoneInfoNotFoundError

from ..common.schedule_spec import cron_step, cron_zone

__all__ = ["cron_problem", "next_cron_ms"]

_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def _split(expr: str) -> tuple[str, str]:
    """``(five fields, zone name)`` of a Temporal-style cron schedule."""
    text = expr.strip()
    tz = ""
    head, _, rest = text.partition(" ")
    if head.startswith(("CRON_TZ=", "TZ=")):
        tz = head.split("=", 1)[1]
        text = rest.strip()
    return _MACROS.get(text, text), tz


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a cron schedule this engine runs, or None."""
    from croniter import croniter

    if not isinstance(expr, str) or not expr.strip():
        return "a cron schedule is a non-empty string such as '0 * * * *'"
    fields, tz = _split(expr)
    try:
        cron_zone(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return f"unknown time zone {tz!r} in cron schedule {expr!r}: give an IANA name (CRON_TZ=Europe/Paris)"
    if len(fields.split()) != 5 or not croniter.is_valid(fields):
        return (f"cron schedule {expr!r} is not a valid 5-field cron expression (minute hour day-of-month "
                f"month day-of-week, e.g. '*/5 * * * *', or @hourly/@daily/@weekly/@monthly/@yearly, "
                f"optionally after CRON_TZ=<zone>)")
    return None


def next_cron_ms(expr: str, after_ms: int) -> int:
    """The first fire time of the cron schedule ``expr`` strictly after ``after_ms``."""
    fields, tz = _split(expr)
    return cron_step(fields, tz, after_ms, forward=True)
