"""The engine-level state of one workflow's runs, and the names of its durable timers.

:class:`WorkflowExecution` (``_execution.py``) is assembled from rooms that share this state:
the activity machine (``_activities.py``), the children (``_children.py``) and the client
commands (``_commands.py``). Each room is a mixin over :class:`Parts`, which declares what they
share; only ``WorkflowExecution.__init__`` sets it.

Timer ids
---------
Every timer the runtime arms is a ``ScheduleTimer`` with an id that comes back in the
``FireTimer`` command, and is a key of the engine's timer table: the formats below are part of
the stored data and never change. :class:`ActivityTimer` writes and parses the activity ones
(an activity id may itself hold ``/``).

=========================  ====================================================================
``1``, ``2``, ...          the workflow code's timers (per run)
``a/<a>/close``            schedule-to-close of activity ``a``, armed at schedule
``a/<a>/<n>/retry``        the backoff before attempt ``n``
``a/<a>/<n>/s2s``          schedule-to-start of attempt ``n``, armed at dispatch
``a/<a>/<n>/s2c``          start-to-close of attempt ``n``, armed on ``ActivityStarted``
``a/<a>/<n>/hb/<g>``       heartbeat of attempt ``n``, generation ``g`` (re-armed after a newer
                           heartbeat)
``wf/exec``, ``wf/run``    the workflow's execution and run timeouts
``task/<n>``, ``task/now`` the retry of a held workflow's task (``now``: :meth:`resume`)
``wf/start``               the first-task backoff of a run that follows a retried or cron run
                           (``WorkflowStarted.first_task_backoff_ms``): its code starts at the fire
=========================  ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model import (
    Command,
    Event,
    EventBody,
    Failure,
    Payload,
    STATUS_OF_CLOSE,
    RetryPolicy as ModelRetryPolicy,
    WorkflowStarted,
    taken_back,
)

if TYPE_CHECKING:
    from ._instance import WorkflowInstance
    from ._registry import WorkflowCode
    from .effects import Effect

RUNNING = "RUNNING"
CLOSE_STATUS = STATUS_OF_CLOSE
FAILED_STATUSES = frozenset({"FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT"})

EXEC_TIMER = "wf/exec"
RUN_TIMER = "wf/run"
RESUME_NOW_TIMER = "task/now"
START_TIMER = "wf/start"


def task_timer(attempt: int) -> str:
    """The timer that retries a held workflow's task after its ``attempt``-th failure."""
    return f"task/{attempt}"


def activity_timer_id(activity_id: str, kind: str, attempt: int = 0, gen: int = 0) -> str:
    """The text of ``ActivityTimer(activity_id, kind, attempt, gen)``, without making one."""
    if kind == "close":
        return f"a/{activity_id}/close"
    if kind == "hb":
        return f"a/{activity_id}/{attempt}/hb/{gen}"
    return f"a/{activity_id}/{attempt}/{kind}"


@dataclass(frozen=True, slots=True)
class ActivityTimer:
    """An activity's timer id (see the module docs): ``kind`` is ``close``, ``retry``, ``s2s``,
    ``s2c`` or ``hb``; ``attempt`` is 0 for ``close``; ``gen`` counts heartbeat re-arms."""

    activity_id: str
    kind: str
    attempt: int = 0
    gen: int = 0

    def __str__(self) -> str:
        return activity_timer_id(self.activity_id, self.kind, self.attempt, self.gen)

    @classmethod
    def parse(cls, tid: str) -> ActivityTimer | None:
        """The activity timer ``tid`` names, or None when it names none."""
        if not tid.startswith("a/"):
            return None
        if tid.endswith("/close"):
            return cls(tid[2:-6], "close")
        parts = tid[2:].split("/")
        if len(parts) >= 4 and parts[-2] == "hb":
            aid, n, kind, gen = "/".join(parts[:-3]), parts[-3], "hb", parts[-1]
        elif len(parts) >= 3 and parts[-1] in ("retry", "s2s", "s2c"):
            aid, n, kind, gen = "/".join(parts[:-2]), parts[-2], parts[-1], "0"
        else:
            return None
        try:
            return cls(aid, kind, int(n), int(gen))
        except ValueError:
            return None


@dataclass
class Act:
    """One activity of a run: its options (from ``ActivityScheduled``) and where its attempts are."""

    activity_id: str
    activity_type: str
    input: list[Payload]
    task_queue: str
    retry: ModelRetryPolicy
    s2close_ms: int | None
    s2s_ms: int | None
    s2c_ms: int | None
    hb_ms: int | None
    scheduled_at_ms: int
    attempt: int = 1
    attempt_at_ms: int = 0
    started_at_ms: int | None = None
    backoff_until_ms: int | None = None
    cancel_requested: bool = False
    closed: bool = False
    # not in the history (heartbeats are not events): kept by the engine beside it
    # (KeepHeartbeat / DropHeartbeat effects, restore_heartbeat on a load)
    last_heartbeat_ms: int | None = None
    heartbeat_details: Payload | None = None
    hb_gen: int = 0
    #: Scheduled while its run was paused: dispatched at the resume (``_lifecycle.py``).
    dispatch_held: bool = False

    def in_flight(self, now_ms: int) -> bool:
        return not self.closed and (self.backoff_until_ms is None or now_ms >= self.backoff_until_ms)

    def timer(self, kind: str, *, gen: int | None = None) -> str:
        """The id of this activity's ``kind`` timer for its current attempt: the text of
        ``ActivityTimer(activity_id, kind, attempt, gen)``, written here without making one."""
        return activity_timer_id(self.activity_id, kind, self.attempt, self.hb_gen if gen is None else gen)


@dataclass
class Child:
    child_workflow_id: str
    workflow_type: str
    parent_close_policy: str
    closed: bool = False
    #: Started while its parent's run was paused: sent at the resume (``_lifecycle.py``).
    start_held: bool = False


@dataclass
class Run:
    """One run segment of the history (a start, up to its close or continue-as-new)."""

    run_id: str
    started: WorkflowStarted
    start_seq: int
    start_index: int
    started_at_ms: int
    status: str = RUNNING
    activities: dict[str, Act] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    cancel_requested: bool = False
    held: bool = False
    task_attempt: int = 0
    task_retry_at_ms: int | None = None
    resume_pending: bool = False
    exec_deadline_ms: int | None = None
    run_deadline_ms: int | None = None
    search_attributes: dict[str, str] = field(default_factory=dict)
    #: The types of its typed search attributes (``aion.common``; untyped ones are text).
    search_attribute_types: dict[str, str] = field(default_factory=dict)
    #: When an operator paused the run (``WorkflowPaused``); None when it is not paused.
    paused_at_ms: int | None = None
    close_body: Any = None
    #: The run's accepted updates by update id (``_updates.py``): in flight or completed.
    updates: dict[str, Any] = field(default_factory=dict)
    #: The commands its close sent to other workflows (children under a TERMINATE /
    #: REQUEST_CANCEL policy, the parent): re-sent by ``recovery_effects``.
    close_commands: list[Command] = field(default_factory=list)
    #: The seq ranges ``[from_seq, reopen_seq)`` its reopens took back (``WorkflowReopened``):
    #: kept in the history, never applied or replayed to the code (``_lifecycle.py``).
    voids: list[tuple[int, int]] = field(default_factory=list)
    #: While its code waits for the first-task backoff (a retry's or a cron run's): when the
    #: ``wf/start`` timer fires. Inputs are recorded meanwhile and delivered when it starts.
    first_task_at_ms: int | None = None
    #: Set at the close when another run of the workflow follows it (``_successors.py``):
    #: ``(initiator, first-task backoff in ms)``; its parent and result waiters are not told.
    successor: tuple[str, int] | None = None

    def voided(self, seq: int) -> bool:
        """Whether a reopen took back the event ``seq`` of this run."""
        return taken_back(seq, self.voids)

    @property
    def close_tag(self) -> str:
        """Suffix of the command ids its close sends: a reopened run closes again with new ids
        (``""`` before any reopen, so older runs keep theirs)."""
        return f":reopen-{len(self.voids)}" if self.voids else ""

    @property
    def workflow_type(self) -> str:
        return self.started.workflow_type


def backoff_ms(p: ModelRetryPolicy, attempt: int) -> int:
    """The wait before retry ``attempt + 1`` under ``p``."""
    initial = max(1, p.initial_interval_ms)
    cap = p.maximum_interval_ms if p.maximum_interval_ms is not None else 100 * initial
    try:
        interval = initial * (max(1.0, p.backoff_coefficient) ** max(0, attempt - 1))
    except OverflowError:  # the thousandth retry of an unlimited policy
        return int(cap)
    return int(min(interval, cap))


def model_retry(rp: Any) -> ModelRetryPolicy:
    return rp.to_model() if hasattr(rp, "to_model") else rp


class Parts:
    """What the rooms of :class:`~aion.runtime.WorkflowExecution` share (declared here for the
    type checker; set by ``WorkflowExecution.__init__``)."""

    registry: "WorkflowCode"
    workflow_id: str
    history: list[Event]
    run: Run | None
    instance: WorkflowInstance | None
    _now: int
    _cmd: Command | None
    _fx: list[Effect] | None
    _refusal: Failure | None
    _resident_since_ms: int | None

    if TYPE_CHECKING:
        @property
        def run_id(self) -> str | None: ...

        def _record(self, body: EventBody, run_id: str | None = None) -> Event: ...

        def _drop_instance(self) -> None: ...
