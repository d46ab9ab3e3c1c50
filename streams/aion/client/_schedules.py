"""Schedules from the client: create, pause, resume, update, trigger, delete, describe, list.

A schedule is the engine's ``aion.Schedule`` system workflow with id ``schedule:<id>``
(see :mod:`aion.engine._schedules`); this module only builds and validates its spec, and
talks to it with start / signals / a query. The listing reads the visibility index (the
schedule mirrors its spec in search attributes), so it needs no query per schedule.

```python
sched = await client.create_schedule("nightly-report", cron="0 2 * * *", workflow=Report.run,
                                     args=["daily"], overlap="SKIP", catch_up="ONE")
await sched.pause("db maintenance"); await sched.resume()
await sched.update(cron="30 2 * * *")
print((await sched.describe()).next_fire_times)
for s in await client.list_schedules():
    print(s.id, s.spec, s.paused)
await sched.delete()
```
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

from ..common.schedule_spec import (
    SCHEDULE_WORKFLOW_TYPE,
    ScheduleSpecError,
    schedule_id_of,
    schedule_workflow_id,
    validate_spec,
)
from ..exceptions import WorkflowAlreadyStartedError, WorkflowNotFoundError
from ._errors import ScheduleAlreadyExistsError, ScheduleNotFoundError
from ._names import workflow_name

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "ScheduleOverlapPolicy",
    "ScheduleCatchUpPolicy",
    "ScheduleHandle",
    "ScheduleDescription",
    "ScheduleSummary",
    "ScheduleAlreadyExistsError",
    "ScheduleNotFoundError",
    "ScheduleSpecError",
    "create_schedule",
    "list_schedules",
]


class ScheduleOverlapPolicy(str, enum.Enum):
    """What a fire does while the workflow the schedule started last is still running."""

    SKIP = "SKIP"  #: start nothing
    BUFFER_ONE = "BUFFER_ONE"  #: start it once the running one ends (one kept; later fires skipped)
    CANCEL_OTHER = "CANCEL_OTHER"  #: cancel the running one, start when it has ended
    ALLOW_ALL = "ALLOW_ALL"  #: start anyway


class ScheduleCatchUpPolicy(str, enum.Enum):
    """What happens to fire times that passed while no engine ran the schedule."""

    ALL = "ALL"  #: start each, in order
    ONE = "ONE"  #: start only the latest
    SKIP = "SKIP"  #: start none (only fires at most ``catch_up_window`` late)


def _ms(value: timedelta | float | int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(float(value) * 1000)
    raise TypeError(f"{what} must be a timedelta or seconds, got {value!r}")


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _policy(value: Any, allowed: type[enum.Enum], what: str) -> str:
    v = str(getattr(value, "value", value)).upper()
    if v not in allowed.__members__:
        raise ScheduleSpecError(f"{what} must be one of {', '.join(allowed.__members__)}, got {value!r}")
    return v


@dataclass
class ScheduleDescription:
    """A schedule's spec and state (``handle.describe()``); times are aware UTC datetimes."""

    id: str
    cron: str | None
    #: The IANA zone ``cron`` is read in ("UTC" unless set).
    timezone: str
    interval: timedelta | None
    offset: timedelta | None
    workflow_type: str
    args: list[Any]
    task_queue: str
    overlap: str
    catch_up: str
    catch_up_window: timedelta
    paused: bool
    note: str
    #: Ids of the workflows it started that are still running.
    running: list[str]
    #: The fire time waiting to start (``BUFFER_ONE``), if any.
    buffered_fire_time: datetime | None
    #: The latest fire time acted on (started, skipped or buffered).
    last_fire_time: datetime | None
    next_fire_times: list[datetime]
    started: int
    skipped: int
    #: The most recent actions: started / skipped / buffered / missed / cancelling / paused ...
    recent: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_query(cls, d: dict[str, Any]) -> "ScheduleDescription":
        return cls(
            id=d["id"], cron=d.get("cron"), timezone=d.get("timezone") or "UTC",
            interval=None if d.get("interval_ms") is None else timedelta(milliseconds=d["interval_ms"]),
            offset=None if d.get("interval_ms") is None else timedelta(milliseconds=d.get("offset_ms") or 0),
            workflow_type=d["workflow_type"], args=list(d.get("args") or []), task_queue=d.get("task_queue", "default"),
            overlap=d["overlap"], catch_up=d["catch_up"],
            catch_up_window=timedelta(milliseconds=d.get("catch_up_window_ms") or 0),
            paused=bool(d.get("paused")), note=d.get("note") or "", running=list(d.get("running") or []),
            buffered_fire_time=_time(d.get("buffered_fire_ms")), last_fire_time=_time(d.get("last_fire_ms")),
            next_fire_times=[t for t in (_time(x) for x in d.get("next_fires_ms") or []) if t is not None],
            started=int(d.get("started") or 0), skipped=int(d.get("skipped") or 0),
            recent=list(d.get("recent") or []), raw=d,
        )


@dataclass
class ScheduleSummary:
    """One schedule in a listing (from the visibility index, no query)."""

    id: str
    workflow_id: str
    status: str | None
    spec: str
    workflow_type: str
    overlap: str
    catch_up: str
    paused: bool
    note: str


class ScheduleHandle:
    """Talks to one schedule (``client.get_schedule_handle(id)`` or ``create_schedule``)."""

    def __init__(self, client: "Client", schedule_id: str) -> None:
        self.client = client
        self.id = schedule_id
        self.workflow_id = schedule_workflow_id(schedule_id)

    def __repr__(self) -> str:
        return f"ScheduleHandle(id={self.id!r})"

    async def _signal(self, name: str, *args: Any) -> None:
        try:
            await self.client.signal_workflow(self.workflow_id, name, *args)
        except WorkflowNotFoundError as e:
            raise ScheduleNotFoundError(
                f"schedule {self.id!r} does not exist (never created, or deleted): cannot {name} it; "
                f"list them with client.list_schedules() / `aion schedule list`") from e

    async def pause(self, note: str = "") -> None:
        """Stop firing (fire times passed while paused are skipped, not caught up)."""
        await self._signal("pause", note)

    async def resume(self, note: str = "") -> None:
        """Fire again, from the next fire time on."""
        await self._signal("resume", note)

    async def trigger(self) -> None:
        """Start the workflow now, once (overlap applies); its id ends with ``-manual``."""
        await self._signal("trigger")

    async def delete(self) -> None:
        """Delete the schedule: it fires no more; workflows it started keep running."""
        await self._signal("delete")

    async def update(
        self,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        interval: timedelta | float | None = None,
        offset: timedelta | float | None = None,
        workflow: Any = None,
        args: Sequence[Any] | None = None,
        task_queue: str | None = None,
        overlap: ScheduleOverlapPolicy | str | None = None,
        catch_up: ScheduleCatchUpPolicy | str | None = None,
        catch_up_window: timedelta | float | None = None,
        note: str | None = None,
    ) -> None:
        """Change what is given (a new cron or interval replaces the other); validated here
        first (:class:`ScheduleSpecError`), applied by the schedule when it gets the signal."""
        changes: dict[str, Any] = {}
        if cron is not None and interval is not None:
            raise ScheduleSpecError(f"schedule {self.id!r}: give cron or interval, not both")
        if cron is not None:
            changes.update(cron=cron, interval_ms=None)
        if timezone is not None:
            changes["timezone"] = timezone
        if interval is not None:
            changes.update(interval_ms=_ms(interval, "interval"), cron=None, offset_ms=_ms(offset, "offset") or 0)
        elif offset is not None:
            changes["offset_ms"] = _ms(offset, "offset")
        if workflow is not None:
            changes["workflow_type"] = workflow_name(workflow)[0]
        if args is not None:
            changes["args"] = list(args)
        if task_queue is not None:
            changes["task_queue"] = task_queue
        if overlap is not None:
            changes["overlap"] = _policy(overlap, ScheduleOverlapPolicy, "overlap")
        if catch_up is not None:
            changes["catch_up"] = _policy(catch_up, ScheduleCatchUpPolicy, "catch_up")
        if catch_up_window is not None:
            changes["catch_up_window_ms"] = _ms(catch_up_window, "catch_up_window")
        if note is not None:
            changes["note"] = note
        if not changes:
            return
        # Validate against the current spec, so a bad change fails here and not in the schedule.
        current = (await self.describe()).raw
        candidate = {k: current.get(k) for k in ("id", "cron", "timezone", "interval_ms", "offset_ms", "workflow_type",
                                                 "args", "task_queue", "overlap", "catch_up", "catch_up_window_ms",
                                                 "note")}
        candidate.update(changes)
        validate_spec(candidate)
        await self._signal("update", changes)

    async def describe(self) -> ScheduleDescription:
        try:
            d = await self.client.get_workflow_handle(self.workflow_id).query("describe")
        except WorkflowNotFoundError as e:
            raise ScheduleNotFoundError(f"schedule {self.id!r} does not exist (never created, or deleted)") from e
        if d.get("deleted"):
            raise ScheduleNotFoundError(f"schedule {self.id!r} was deleted")
        return ScheduleDescription.from_query(d)


async def create_schedule(
    client: "Client",
    schedule_id: str,
    *,
    workflow: Any,
    args: Sequence[Any] = (),
    cron: str | None = None,
    timezone: str = "UTC",
    interval: timedelta | float | None = None,
    offset: timedelta | float | None = None,
    task_queue: str = "default",
    overlap: ScheduleOverlapPolicy | str = ScheduleOverlapPolicy.SKIP,
    catch_up: ScheduleCatchUpPolicy | str = ScheduleCatchUpPolicy.ONE,
    catch_up_window: timedelta | float = timedelta(seconds=10),
    paused: bool = False,
    note: str = "",
) -> ScheduleHandle:
    """Create schedule ``schedule_id``: start ``workflow`` (``Order.run``, ``Order`` or a type
    name) with ``args`` at each fire time of ``cron`` (5 fields, read as wall-clock time in
    ``timezone``, an IANA name such as ``"Europe/Paris"``; daylight-saving changes are
    followed) or every ``interval`` (timedelta or seconds; fire times
    ``offset + k * interval`` since the epoch).

    Each start gets the workflow id ``<schedule_id>-<fire time, ISO-8601 UTC>``.
    Raises :class:`ScheduleSpecError` for an invalid spec, :class:`ScheduleAlreadyExistsError`
    when the id is taken by a schedule that was not deleted.
    """
    name, _ = workflow_name(workflow)
    spec = validate_spec({
        "id": schedule_id, "cron": cron, "timezone": timezone, "interval_ms": _ms(interval, "interval"),
        "offset_ms": _ms(offset, "offset") or 0, "workflow_type": name, "args": list(args),
        "task_queue": task_queue, "overlap": _policy(overlap, ScheduleOverlapPolicy, "overlap"),
        "catch_up": _policy(catch_up, ScheduleCatchUpPolicy, "catch_up"),
        "catch_up_window_ms": _ms(catch_up_window, "catch_up_window"), "paused": paused, "note": note,
    })
    try:
        await client.start_workflow(SCHEDULE_WORKFLOW_TYPE, spec, id=schedule_workflow_id(schedule_id),
                                    id_reuse_policy="ALLOW_DUPLICATE")
    except WorkflowAlreadyStartedError as e:
        raise ScheduleAlreadyExistsError(
            f"schedule {schedule_id!r} already exists: change it with "
            f"client.get_schedule_handle({schedule_id!r}).update(...), or delete it first") from e
    return ScheduleHandle(client, schedule_id)


async def list_schedules(client: "Client", *, include_deleted: bool = False) -> list[ScheduleSummary]:
    """The schedules of this deployment, from the visibility index (a few seconds behind)."""
    rows = await client.list_workflows(type=SCHEDULE_WORKFLOW_TYPE)
    out = []
    for r in rows:
        # A schedule continues as new: its latest run is RUNNING; COMPLETED means deleted.
        if not include_deleted and r.status != "RUNNING":
            continue
        sa = r.search_attributes or {}
        out.append(ScheduleSummary(
            id=sa.get("aion.schedule.id") or schedule_id_of(r.workflow_id), workflow_id=r.workflow_id,
            status=r.status, spec=sa.get("aion.schedule.spec", ""), workflow_type=sa.get("aion.schedule.workflow", ""),
            overlap=sa.get("aion.schedule.overlap", ""), catch_up=sa.get("aion.schedule.catch_up", ""),
            paused=sa.get("aion.schedule.paused") == "true", note=sa.get("aion.schedule.note", "")))
    return sorted(out, key=lambda s: s.id)
