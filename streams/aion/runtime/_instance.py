"""One run of workflow code on its deterministic loop: inputs in, commands out.

The execution (``_execution.py``) *delivers* input events (start, signal, activity result,
timer fire, child result, cancel request, resume marker) and then *activates* the instance:
the loop runs to quiescence and every command the code issued is returned in order.

Replay matching
---------------
An activation is either **live** (``expected is None``: every command is new and will be
recorded) or a **replay** (``expected`` = the command events the history recorded right after
the activation's input). In a replay each command the code issues must equal the next expected
event by kind *and* identity:

============================ ==========================================================
command / event               identity compared
============================ ==========================================================
ActivityScheduled             activity id (run-segment ordinal or user id) + activity type
ActivityCancelRequested       activity id
TimerStarted                  timer id (run-segment ordinal) + duration
TimerCancelled                timer id
ChildWorkflowStarted          child workflow id + workflow type
SignalSent                    signal id (run-segment occurrence) + target id + signal name
MarkerRecorded                marker name + marker id
WorkflowUpdateCompleted       update id
SearchAttributesUpserted      kind only
WorkflowCompleted/Failed/...  kind only
============================ ==========================================================

On a mismatch, a command beyond what the history holds, or history commands the code did not
issue, the activation ends with a :class:`~aion.exceptions.NondeterminismError` naming the
workflow id, run id, seq, the expected event and the found command. Recorded values (a side
effect's value, a timer's fire time) are taken from the history, never recomputed.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import random as _random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from .. import exceptions as exc_mod
from ..activity._definition import ActivityDefinition
from ..converter import DataConverter, hints_of, return_hint_of
from ..exceptions import _OTHER_VALUES
from ..exceptions import (
    ActivityError,
    ChildWorkflowError,
    DeadlockError,
    InvalidArgumentError,
    NondeterminismError,
    TerminatedError,
    exception_to_failure,
    failure_to_exception,
)
from ..model import (
    ActivityCancelled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ActivityTimedOut,
    ActivityTimeouts,
    ChildWorkflowCancelled,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowStarted,
    ChildWorkflowTerminated,
    ChildWorkflowTimedOut,
    Event,
    EventBody,
    MarkerRecorded,
    Payload,
    RetryPolicy as ModelRetryPolicy,
    SearchAttributesUpserted,
    SignalReceived,
    SignalSent,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowUpdateAccepted,
    WorkflowUpdateCompleted,
)
from ..model.limits import MAX_ID_BYTES
from ..workflow._api import ActivityOptions, ChildOptions, ContinueAsNewError
from ..workflow._definition import RUN_TYPE_ATTR, WorkflowDefinition
from ..workflow._handles import ActivityHandle, ChildWorkflowHandle, TimerHandle
from ..workflow._types import ActivityCancellationType, FailurePolicy, Info, ParentInfo, RetryPolicy
from ._run_ids import uuid5_url
from ._cron import cron_problem
from .._search_attributes import apply_upsert, decode_all, to_stored, typed
from . import _watchdog
from ._describe import describe, same_command
from ._loop import WorkflowEventLoop
from ._registry import WorkflowCode

__all__ = ["WorkflowInstance", "Activation", "RunContext", "MARKER_RESUME", "MARKER_SIDE_EFFECT",
           "MARKER_PATCH", "MARKER_CANCEL_CHILD", "MARKER_CANCEL_EXTERNAL", "continue_as_new_run_id"]

MARKER_SIDE_EFFECT = "side_effect"
MARKER_PATCH = "patch"
MARKER_CANCEL_CHILD = "cancel_child"
#: ``get_external_workflow_handle(id).cancel()``: marker id = the target's id, value = its run id
#: (when named); the effect is a ``CancelWorkflow`` command to the target (no schema change).
MARKER_CANCEL_EXTERNAL = "cancel_external"
#: Engine marker: a held workflow's task is retried here (an input event, not a command).
MARKER_RESUME = "aion.resume"


#: The retry policy of an activity started without one (shared: nothing changes a model
#: policy, and one per activity was two more objects for the garbage collector to walk).
_DEFAULT_RETRY = ModelRetryPolicy()


def continue_as_new_run_id(workflow_id: str, run_id: str) -> str:
    """The deterministic run id of the run that follows ``run_id`` by continue-as-new."""
    return uuid5_url(f"aion:{workflow_id}:{run_id}:continue-as-new")


def _same_values(recorded: Any, issued: Any) -> bool:
    if isinstance(recorded, MarkerRecorded) and issued.value is None:
        return recorded.marker_name == issued.marker_name and recorded.marker_id == issued.marker_id
    if isinstance(recorded, (WorkflowFailed, WorkflowUpdateCompleted)):
        # Stack text depends on file paths and line numbers: compare the chain without it.
        return (_strip_stacks(recorded.failure) == _strip_stacks(issued.failure)
                and getattr(recorded, "result", None) == getattr(issued, "result", None))
    return recorded == issued


def _strip_stacks(f: Any) -> Any:
    import dataclasses as _dc

    if f is None:
        return None
    return _dc.replace(f, stack="", cause=_strip_stacks(f.cause))


class _Halt(BaseException):
    """Unwinds workflow code after a divergence (never seen by users)."""


@dataclass
class RunContext:
    """What the instance needs to know about its run beyond the WorkflowStarted event."""

    workflow_id: str
    run_id: str
    first_run_id: str
    chain_start_ms: int
    run_start_seq: int
    started: WorkflowStarted
    run_start_ms: int
    continue_as_new_after: int
    #: Payload bytes of this run's history up to (and including) a seq; with the byte warning.
    run_bytes_until: Callable[[int], int] | None = None
    continue_as_new_after_bytes: int | None = None


@dataclass
class Activation:
    """The outcome of running the code after some input."""

    #: Commands issued (live: new, to be recorded; replay: those matched).
    commands: list[EventBody] = field(default_factory=list)
    #: A task failure (bug, deadlock, divergence): nothing of this activation is recorded.
    failure: BaseException | None = None


@dataclass
class _ActivityMeta:
    handle: ActivityHandle[Any]
    activity_type: str
    hint: Any
    cancellation_type: ActivityCancellationType
    retry: ModelRetryPolicy


@dataclass
class _ChildMeta:
    handle: ChildWorkflowHandle[Any]
    workflow_type: str
    hint: Any


class _LoopTimer:
    """What ``loop.call_at`` returns: an ``asyncio.TimerHandle``-like view of a durable timer."""

    def __init__(self, handle: TimerHandle, when: float) -> None:
        self._handle = handle
        self._when = when
        self._cancelled = False

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if not self._handle.done():
                self._handle.cancel()

    def cancelled(self) -> bool:
        return self._cancelled

    def when(self) -> float:
        return self._when


def _seed(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big")


class WorkflowInstance:
    """The workflow object of one run, its loop, its pending handles and the replay cursor."""

    def __init__(
        self,
        definition: WorkflowDefinition,
        ctx: RunContext,
        converter: DataConverter,
        policy: FailurePolicy,
        registry: WorkflowCode | None = None,
    ) -> None:
        self.defn = definition
        self.ctx = ctx
        self.converter = converter
        self.policy = policy
        self.registry = registry
        self.loop = WorkflowEventLoop(self)
        self.obj: Any = None
        self.main_task: asyncio.Task[Any] | None = None
        self._now_ms = ctx.run_start_ms
        self._seq = ctx.run_start_seq
        #: Made at the first ``workflow.random()`` (seeding costs more than most activations).
        self._random: _random.Random | None = None
        self._search_attributes = dict(ctx.started.search_attributes)
        self._search_attribute_types = dict(ctx.started.search_attribute_types)
        # run-segment ordinals
        self._next_activity = 1
        self._next_timer = 1
        self._next_child = 1
        self._next_signal = 1
        self._next_side_effect = 1
        self._activities: dict[str, _ActivityMeta] = {}
        self._timers: dict[str, TimerHandle] = {}
        self._children: dict[str, _ChildMeta] = {}
        self._used_activity_ids: set[str] = set()
        self._used_child_ids: set[str] = set()
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._patches: dict[str, bool] = {}
        #: Async signal handlers still running (``workflow.all_handlers_finished``).
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self.cancel_requested = False
        # activation state
        self._expected: deque[Event] | None = None
        self._cursor_seq = 0
        self._next_history_event: Event | None = None
        self._issued: list[EventBody] = []
        #: Replay only: let the last activation go on live past the end of the history (a step
        #: cut short by a crash, see :meth:`activate`); ``tail`` then holds what it issued.
        self.extend_at_end = False
        self._tail_from: int | None = None
        self.tail: Sequence[EventBody] = ()
        self._in_query = False
        self.divergence: NondeterminismError | None = None
        self.task_failure: BaseException | None = None
        #: The closing command the code issued (WorkflowCompleted/Failed/Cancelled/ContinuedAsNew).
        self.closed: EventBody | None = None
        self.disposed = False
        #: Replay compares whole command bodies, not only their identity (replay checks, tests).
        self.strict = False

    # ================================================================ runtime API (for aion.workflow)
    def now_ms(self) -> int:
        return self._now_ms

    def random(self) -> _random.Random:
        r = self._random
        if r is None:  # seeded by the run id alone: the same sequence whenever it is made
            r = self._random = _random.Random(_seed(self.ctx.run_id))
        return r

    def is_replaying(self) -> bool:
        return self._expected is not None

    def all_handlers_finished(self) -> bool:
        return not self._handler_tasks

    def info(self) -> Info:
        st = self.ctx.started
        run_len = self._seq - self.ctx.run_start_seq + 1
        return Info(
            workflow_id=self.ctx.workflow_id,
            run_id=self.ctx.run_id,
            workflow_type=self.defn.name,
            task_queue=st.task_queue,
            attempt=st.attempt,
            history_length=self._seq,
            run_history_length=run_len,
            continue_as_new_suggested=run_len >= self.ctx.continue_as_new_after or (
                self.ctx.run_bytes_until is not None and self.ctx.continue_as_new_after_bytes is not None
                and self.ctx.run_bytes_until(self._seq) >= self.ctx.continue_as_new_after_bytes),
            start_time=datetime.fromtimestamp(self.ctx.chain_start_ms / 1000, tz=timezone.utc),
            run_start_time=datetime.fromtimestamp(self.ctx.run_start_ms / 1000, tz=timezone.utc),
            first_run_id=self.ctx.first_run_id,
            previous_run_id=st.previous_run_id,
            parent=ParentInfo(st.parent_workflow_id, st.parent_run_id or "") if st.parent_workflow_id else None,
            execution_timeout=None if st.execution_timeout_ms is None else timedelta(milliseconds=st.execution_timeout_ms),
            run_timeout=None if st.run_timeout_ms is None else timedelta(milliseconds=st.run_timeout_ms),
            search_attributes=decode_all(self._search_attributes, self._search_attribute_types),
            typed_search_attributes=typed(self._search_attributes, self._search_attribute_types),
            cron_schedule=st.cron_schedule,
            retry_policy=RetryPolicy.from_model(st.retry_policy) if st.retry_policy is not None else None,
        )

    def memo(self) -> dict[str, Any]:
        """The memo the run was started with, decoded (values as the converter gives them)."""
        return {k: self.converter.from_payload(v, None) for k, v in self.ctx.started.memo.items()}

    def memo_value(self, key: str, type_hint: Any) -> Any:
        p = self.ctx.started.memo.get(key)
        if p is None:
            raise KeyError(f"memo has no key {key!r}")
        return self.converter.from_payload(p, type_hint)

    def last_completion_result(self, type_hint: Any) -> Any:
        """The result of the last completed run of this cron chain (None when there is none)."""
        p = self.ctx.started.last_completion_result
        return None if p is None else self.converter.from_payload(p, type_hint)

    def last_failure(self) -> BaseException | None:
        """The failure of the previous run of a retry or cron chain (None after a success)."""
        f = self.ctx.started.last_failure
        return None if f is None else failure_to_exception(f, self.converter)

    # ---------------------------------------------------------------- issuing commands
    def _issue(self, body: EventBody) -> EventBody:
        """Record (live) or match (replay) one command; returns the body to use."""
        if self._in_query:
            raise RuntimeError(
                f"a query handler of {self.defn.name} tried to issue {type(body).__name__}: "
                f"queries are read-only (no activities, timers, signals or state changes)"
            )
        if self.disposed or self.closed is not None or self.divergence is not None:
            raise _Halt()
        self._extend_at_end()
        if self._expected is None:
            self._issued.append(body)
            return body
        if not self._expected:
            nxt = self._next_history_event
            self._diverge(
                self._cursor_seq,
                describe(nxt.body) if nxt is not None else "nothing more (end of history)",
                describe(body),
            )
        ev = self._expected[0]
        if not same_command(ev.body, body):
            self._diverge(ev.seq, describe(ev.body), describe(body))
        if self.strict and not _same_values(ev.body, body):
            self._diverge(ev.seq, repr(ev.body), repr(body) + _OTHER_VALUES)
        self._expected.popleft()
        self._cursor_seq = ev.seq + 1
        self._issued.append(ev.body)
        return ev.body

    def _extend_at_end(self) -> None:
        """At the end of the history, with ``extend_at_end``: go on live (see :meth:`activate`)."""
        if (self.extend_at_end and self._expected is not None and not self._expected
                and self._next_history_event is None):
            self._expected = None
            self._tail_from = len(self._issued)

    def _diverge(self, seq: int, expected: str, found: str) -> None:
        self.divergence = NondeterminismError(
            workflow_id=self.ctx.workflow_id, run_id=self.ctx.run_id, seq=seq, expected=expected, found=found
        )
        self.loop.stop()
        raise _Halt()

    def reserve_ids(self, taken: Sequence[EventBody]) -> None:
        """A reopen took back ``taken`` (events this run's code issued after the point it
        reopens from): move the ordinals past them and mark their ids used, so that no
        activity, timer, child, signal or side effect issued from now on shares an id (and so
        a command id downstream) with one the log already holds."""
        for b in taken:
            if isinstance(b, ActivityScheduled):
                self._used_activity_ids.add(b.activity_id)
            elif isinstance(b, TimerStarted):
                self._next_timer += 1
            elif isinstance(b, ChildWorkflowStarted):
                self._next_child += 1
                self._used_child_ids.add(b.child_workflow_id)
            elif isinstance(b, SignalSent):
                self._next_signal += 1
            elif isinstance(b, MarkerRecorded) and b.marker_name == MARKER_SIDE_EFFECT:
                self._next_side_effect += 1

    # ---------------------------------------------------------------- activities
    def start_activity(self, activity: Any, args: tuple[Any, ...], opts: ActivityOptions) -> ActivityHandle[Any]:
        name, hint = self._activity_type(activity)
        if opts.result_type is not None:
            hint = opts.result_type
        if opts.activity_id is not None:
            aid = str(opts.activity_id)
            if aid in self._used_activity_ids:
                raise ValueError(
                    f"activity id {aid!r} is already used in this run of {self.ctx.workflow_id!r}: "
                    f"activity ids must be unique per run"
                )
        else:
            while str(self._next_activity) in self._used_activity_ids:
                self._next_activity += 1
            aid = str(self._next_activity)
            self._next_activity += 1
        self._used_activity_ids.add(aid)
        retry = opts.retry_policy.to_model() if opts.retry_policy is not None else _DEFAULT_RETRY
        body = ActivityScheduled(
            activity_id=aid,
            activity_type=name,
            input=self.converter.to_payloads(args),
            task_queue=opts.task_queue or self.ctx.started.task_queue,
            retry_policy=retry,
            timeouts=ActivityTimeouts(
                schedule_to_close_ms=opts.schedule_to_close_ms,
                schedule_to_start_ms=opts.schedule_to_start_ms,
                start_to_close_ms=opts.start_to_close_ms,
                heartbeat_ms=opts.heartbeat_ms,
            ),
        )
        self._issue(body)
        h: ActivityHandle[Any] = ActivityHandle(loop=self.loop)
        h.activity_id = aid
        h.activity_type = name
        h._request_cancel = self._cancel_activity
        self._activities[aid] = _ActivityMeta(h, name, hint, opts.cancellation_type, retry)
        return h

    def _activity_type(self, activity: Any) -> tuple[str, Any]:
        if isinstance(activity, str):
            d = self.registry.activity(activity) if self.registry is not None else None
            return activity, (return_hint_of(d.fn) if d is not None else None)
        d = ActivityDefinition.maybe_of(activity)
        if d is None:
            raise TypeError(
                f"{activity!r} is not an activity: pass an @activity.defn function or an activity type name"
            )
        return d.name, return_hint_of(d.fn)

    def _cancel_activity(self, h: Any) -> bool:
        meta = self._activities.get(h.activity_id)
        if meta is None:
            return True
        if meta.cancellation_type == ActivityCancellationType.ABANDON:
            self._activities.pop(h.activity_id, None)
            return True
        self._issue(ActivityCancelRequested(h.activity_id))
        if meta.cancellation_type == ActivityCancellationType.TRY_CANCEL:
            self._activities.pop(h.activity_id, None)
            return True
        return False  # WAIT_CANCELLATION_COMPLETED: resolves when the activity ends

    # ---------------------------------------------------------------- timers
    def start_timer(self, duration_ms: int, name: str) -> TimerHandle:
        tid = str(self._next_timer)
        self._next_timer += 1
        rec = self._issue(TimerStarted(timer_id=tid, fire_at_ms=self._now_ms + duration_ms,
                                       duration_ms=duration_ms, name=name))
        h = TimerHandle(loop=self.loop)
        h.timer_id = tid
        h.name = name
        h.fire_at_ms = rec.fire_at_ms  # type: ignore[union-attr]
        h._request_cancel = self._cancel_timer
        self._timers[tid] = h
        return h

    def _cancel_timer(self, h: Any) -> bool:
        if self._timers.pop(h.timer_id, None) is not None:
            self._issue(TimerCancelled(h.timer_id))
        return True

    def _loop_timer(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...],
                    context: contextvars.Context | None) -> Any:
        ms = round((when - self._now_ms / 1000.0) * 1000)
        if ms <= 0:
            return self.loop.call_soon(callback, *args, context=context)
        handle = self.start_timer(ms, "asyncio")
        lt = _LoopTimer(handle, when)

        def fire(fut: asyncio.Future[None]) -> None:
            if fut.cancelled() or lt._cancelled:
                return
            lt._cancelled = True
            if context is not None:
                context.run(callback, *args)
            else:
                callback(*args)

        handle.add_done_callback(fire)
        return lt

    # ---------------------------------------------------------------- conditions
    def wait_condition(self, fn: Callable[[], bool]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        self._conditions.append((fn, fut))
        return fut

    def _check_conditions(self) -> bool:
        """Resolve satisfied conditions (in order); True if any resolved."""
        if not self._conditions or self.closed is not None:
            return False
        resolved = False
        keep: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        for fn, fut in self._conditions:
            if fut.done():
                continue
            try:
                ok = fn()
            except Exception as e:  # the waiter sees the predicate's error
                fut.set_exception(e)
                resolved = True
                continue
            if ok:
                fut.set_result(None)
                resolved = True
            else:
                keep.append((fn, fut))
        self._conditions = keep
        return resolved

    # ---------------------------------------------------------------- children
    def start_child(self, workflow: Any, args: tuple[Any, ...], opts: ChildOptions) -> ChildWorkflowHandle[Any]:
        wf_type, hint = self._workflow_type(workflow)
        if opts.result_type is not None:
            hint = opts.result_type
        n = self._next_child
        self._next_child += 1
        cid = opts.id or f"{self.ctx.workflow_id}/{self.ctx.run_id[:8]}/child-{n}"
        if not opts.id and len(cid.encode()) > MAX_ID_BYTES:  # a parent id near the limit: a shorter default
            cid = f"child-{uuid5_url(cid)}"
        if cid in self._used_child_ids:
            raise ValueError(f"child workflow id {cid!r} is already used in this run: give each child its own id")
        cron = opts.cron_schedule or ""
        if cron and (problem := cron_problem(cron)):
            raise InvalidArgumentError(f"child workflow {cid!r}: {problem}")
        memo = {k: self.converter.to_payload(v) for k, v in (opts.memo or {}).items()}
        self._used_child_ids.add(cid)
        self._issue(ChildWorkflowStarted(
            child_workflow_id=cid,
            workflow_type=wf_type,
            input=self.converter.to_payloads(args),
            task_queue=opts.task_queue or self.ctx.started.task_queue,
            parent_close_policy=str(getattr(opts.parent_close_policy, "value", opts.parent_close_policy)),
            execution_timeout_ms=opts.execution_timeout_ms,
            retry_policy=opts.retry_policy.to_model() if opts.retry_policy is not None else None,
            cron_schedule=cron,
            memo=memo,
        ))
        h: ChildWorkflowHandle[Any] = ChildWorkflowHandle(loop=self.loop)
        h.id = cid
        h.workflow_type = wf_type
        h._request_cancel = self._cancel_child
        async def signal_child(signal: Any, sargs: tuple[Any, ...]) -> None:
            self.signal_external(cid, signal, sargs)

        h._signal_hook = signal_child
        self._children[cid] = _ChildMeta(h, wf_type, hint)
        return h

    def _workflow_type(self, workflow: Any) -> tuple[str, Any]:
        if isinstance(workflow, str):
            d = self.registry.workflow(workflow) if self.registry is not None else None
            return workflow, (return_hint_of(d.run_fn) if d is not None else None)
        name = getattr(workflow, RUN_TYPE_ATTR, None)
        if name is not None:
            return name, return_hint_of(workflow)
        d = WorkflowDefinition.maybe_of(workflow)
        if d is None:
            raise TypeError(
                f"{workflow!r} is not a workflow: pass a @workflow.defn class, its run method, or a type name"
            )
        return d.name, return_hint_of(d.run_fn)

    def _cancel_child(self, h: Any) -> bool:
        if h.id in self._children:
            self._issue(MarkerRecorded(MARKER_CANCEL_CHILD, h.id))
        return False  # resolves when the child reports its end

    # ---------------------------------------------------------------- signals to others
    def signal_external(self, workflow_id: str, signal: Any, args: tuple[Any, ...]) -> None:
        name = signal if isinstance(signal, str) else getattr(signal, "__aion_signal_name__", None)
        if not name:
            raise TypeError(f"signal must be a signal name or a @workflow.signal method, got {signal!r}")
        n = self._next_signal
        self._next_signal += 1
        sid = f"{self.ctx.workflow_id}:{self.ctx.run_id}:signal-{n}"
        self._issue(SignalSent(signal_id=sid, target_workflow_id=workflow_id, signal_name=name,
                               args=self.converter.to_payloads(args)))

    def cancel_external(self, workflow_id: str, run_id: str | None) -> None:
        value = None if run_id is None else self.converter.to_payload(run_id)
        self._issue(MarkerRecorded(MARKER_CANCEL_EXTERNAL, workflow_id, value))

    # ---------------------------------------------------------------- markers
    def side_effect(self, fn: Callable[[], Any], result_type: Any) -> Any:
        hint = result_type if result_type is not None else return_hint_of(fn)
        mid = str(self._next_side_effect)
        self._next_side_effect += 1
        if not (self._in_query or self.closed is not None or self.disposed):
            self._extend_at_end()
        if self._expected is not None:
            rec = self._issue(MarkerRecorded(MARKER_SIDE_EFFECT, mid, None))
            value = rec.value  # type: ignore[union-attr]
        else:
            if self._in_query or self.closed is not None or self.disposed:
                self._issue(MarkerRecorded(MARKER_SIDE_EFFECT, mid, None))  # raises
            if inspect.iscoroutinefunction(fn):
                raise TypeError("workflow.side_effect takes a plain function, not a coroutine function")
            value = self.converter.to_payload(fn())
            self._issue(MarkerRecorded(MARKER_SIDE_EFFECT, mid, value))
        return None if value is None else self.converter.from_payload(value, hint)

    def patched(self, patch_id: str, deprecated: bool) -> bool:
        if patch_id in self._patches:
            return self._patches[patch_id]
        if self._expected is not None:
            nxt = self._expected[0] if self._expected else None
            b = nxt.body if nxt is not None else None
            if isinstance(b, MarkerRecorded) and b.marker_name == MARKER_PATCH and b.marker_id == patch_id:
                self._issue(MarkerRecorded(MARKER_PATCH, patch_id))
                result = True
            else:
                result = deprecated
        else:
            if not deprecated:
                self._issue(MarkerRecorded(MARKER_PATCH, patch_id))
            result = True
        self._patches[patch_id] = result
        return result

    def upsert_search_attributes(self, attributes: Any) -> None:
        values, types, unset = to_stored(attributes, "workflow.upsert_search_attributes")
        self._issue(SearchAttributesUpserted(values, types, unset))
        apply_upsert(self._search_attributes, self._search_attribute_types, values, types, unset)

    # ================================================================ execution side
    def set_position(self, ev: Event) -> None:
        self._now_ms = ev.recorded_at_ms
        self._seq = ev.seq

    def deliver(self, ev: Event) -> None:
        """Apply one input event to the code's futures/handlers (nothing runs until ``activate``)."""
        self.set_position(ev)
        b = ev.body
        if self.closed is not None:
            return
        if isinstance(b, WorkflowStarted):
            self.loop.call_soon(self._start_main, b)
        elif isinstance(b, SignalReceived):
            self._deliver_signal(b)
        elif isinstance(b, WorkflowUpdateAccepted):
            self._deliver_update(b)
        elif isinstance(b, ActivityCompleted):
            meta = self._activities.pop(b.activity_id, None)
            if meta is not None and not meta.handle.done():
                if meta.handle._cancel_requested:
                    meta.handle._force_cancel()
                else:
                    try:
                        meta.handle.set_result(self.converter.from_payload(b.result, meta.hint))
                    except Exception as e:
                        meta.handle.set_exception(e)
        elif isinstance(b, (ActivityFailed, ActivityTimedOut)):
            if b.will_retry:
                return
            meta = self._activities.pop(b.activity_id, None)
            if meta is not None and not meta.handle.done():
                if meta.handle._cancel_requested:
                    meta.handle._force_cancel()
                else:
                    meta.handle.set_exception(self._activity_error(b, meta))
        elif isinstance(b, ActivityCancelled):
            meta = self._activities.pop(b.activity_id, None)
            if meta is not None and not meta.handle.done():
                if meta.handle._cancel_requested:
                    meta.handle._force_cancel()
                else:
                    meta.handle.set_exception(ActivityError(
                        f"activity {meta.activity_type!r} (id {b.activity_id}) was cancelled",
                        activity_id=b.activity_id, activity_type=meta.activity_type,
                        retry_state="CANCEL_REQUESTED", cause=asyncio.CancelledError()))
        elif isinstance(b, TimerFired):
            h = self._timers.pop(b.timer_id, None)
            if h is not None and not h.done():
                h.set_result(None)
        elif isinstance(b, (ChildWorkflowCompleted, ChildWorkflowFailed, ChildWorkflowCancelled,
                            ChildWorkflowTimedOut, ChildWorkflowTerminated)):
            self._deliver_child(b)
        elif isinstance(b, WorkflowCancelRequested):
            # Inside the activation (not now), so the cancellation's commands are recorded.
            self.cancel_requested = True
            self.loop.call_soon(self._cancel_main_when_started, b.reason)
        # MarkerRecorded(aion.resume) and others: nothing to deliver

    def _cancel_main_when_started(self, reason: str) -> None:
        if self.main_task is not None and not self.main_task.done():
            self.main_task.cancel(reason or None)

    def _activity_error(self, b: ActivityFailed | ActivityTimedOut, meta: _ActivityMeta) -> ActivityError:
        if isinstance(b, ActivityTimedOut):
            cause: BaseException = exc_mod.TimeoutError(
                f"activity {meta.activity_type!r} (id {b.activity_id}) timed out ({b.timeout_type}) "
                f"on attempt {b.attempt}", timeout_type=b.timeout_type)
            mx = meta.retry.maximum_attempts
            state = "MAXIMUM_ATTEMPTS_REACHED" if (mx and b.attempt >= mx and b.timeout_type != "SCHEDULE_TO_CLOSE") else "TIMEOUT"
            msg = f"activity {meta.activity_type!r} (id {b.activity_id}) timed out ({b.timeout_type})"
        else:
            cause = failure_to_exception(b.failure, self.converter)
            f = b.failure
            mx = meta.retry.maximum_attempts
            if f.non_retryable or f.type in meta.retry.non_retryable_error_types:
                state = "NON_RETRYABLE_FAILURE"
            elif mx and b.attempt >= mx:
                state = "MAXIMUM_ATTEMPTS_REACHED"
            else:
                state = "TIMEOUT"
            msg = f"activity {meta.activity_type!r} (id {b.activity_id}) failed on attempt {b.attempt}: {f.message}"
        return ActivityError(msg, activity_id=b.activity_id, activity_type=meta.activity_type,
                             attempt=b.attempt, retry_state=state, cause=cause)

    def _deliver_child(self, b: Any) -> None:
        meta = self._children.pop(b.child_workflow_id, None)
        if meta is None or meta.handle.done():
            return
        h = meta.handle
        if h._cancel_requested:
            h._force_cancel()
            return
        cid = b.child_workflow_id
        if isinstance(b, ChildWorkflowCompleted):
            try:
                h.set_result(self.converter.from_payload(b.result, meta.hint))
            except Exception as e:
                h.set_exception(e)
            return
        if isinstance(b, ChildWorkflowFailed):
            status, cause = "FAILED", failure_to_exception(b.failure, self.converter)
        elif isinstance(b, ChildWorkflowCancelled):
            status, cause = "CANCELLED", asyncio.CancelledError()
        elif isinstance(b, ChildWorkflowTimedOut):
            status, cause = "TIMED_OUT", exc_mod.TimeoutError("child workflow timed out", timeout_type="EXECUTION")
        else:
            status, cause = "TERMINATED", TerminatedError(f"child workflow terminated: {b.reason}")
        h.set_exception(ChildWorkflowError(
            f"child workflow {meta.workflow_type!r} ({cid}) ended {status}: {cause}",
            workflow_id=cid, workflow_type=meta.workflow_type, status=status, cause=cause))

    def _deliver_signal(self, b: SignalReceived) -> None:
        hd = self.defn.signals.get(b.signal_name)
        if hd is None:
            return  # the engine refuses unknown signals; an old history may still hold one
        try:
            args = self.converter.from_payloads(b.args, hints_of(hd.fn, skip_self=True))
        except Exception as e:
            self.loop.call_soon(self._code_raised, e)
            return
        if hd.is_async:
            def start() -> None:
                if self.obj is None or self.closed is not None:
                    return
                t = self.loop.create_task(hd.fn(self.obj, *args), name=f"signal:{b.signal_name}")
                self._handler_tasks.add(t)
                t.add_done_callback(self._handler_tasks.discard)
                t.add_done_callback(self._on_handler_done)
            self.loop.call_soon(start)
        else:
            def call() -> None:
                if self.obj is None or self.closed is not None:
                    return
                try:
                    hd.fn(self.obj, *args)
                except _Halt:
                    pass
                except ContinueAsNewError as e:
                    self._close_with_continue(e)
                except _watchdog.DeadlockInterrupt:
                    raise
                except asyncio.CancelledError:
                    pass
                except Exception as e:
                    self._code_raised(e)
            self.loop.call_soon(call)

    def _deliver_update(self, b: WorkflowUpdateAccepted) -> None:
        """Run the update's handler (in this activation); its end issues WorkflowUpdateCompleted."""
        uid = b.update_id
        hd = self.defn.updates.get(b.update_name)
        if hd is None:  # the engine refuses unknown updates; code deployed since may have lost it
            self.loop.call_soon(self._update_failed, uid, exc_mod.UpdateNotFoundError(
                f"workflow type {self.defn.name!r} has no update {b.update_name!r} (any more)"))
            return
        try:
            args = self.converter.from_payloads(b.args, hints_of(hd.fn, skip_self=True))
        except Exception as e:  # checked before acceptance; code deployed since may decode otherwise
            self.loop.call_soon(self._update_failed, uid, e)
            return
        if hd.is_async:
            def start() -> None:
                if self.obj is None or self.closed is not None:
                    return
                t = self.loop.create_task(hd.fn(self.obj, *args), name=f"update:{b.update_name}")
                self._handler_tasks.add(t)
                t.add_done_callback(self._handler_tasks.discard)
                t.add_done_callback(lambda done: self._on_update_task_done(uid, done))
            self.loop.call_soon(start)
        else:
            def call() -> None:
                if self.obj is None or self.closed is not None:
                    return
                try:
                    value = hd.fn(self.obj, *args)
                except _Halt:
                    return
                except ContinueAsNewError as e:
                    self._close_with_continue(e)
                    return
                except _watchdog.DeadlockInterrupt:
                    raise
                except BaseException as e:  # noqa: BLE001 - the update's failure (or the task's)
                    if not isinstance(e, (Exception, asyncio.CancelledError)):
                        raise
                    self._update_failed(uid, e)
                    return
                self._update_returned(uid, value)
            self.loop.call_soon(call)

    def _on_update_task_done(self, uid: str, t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            self._update_failed(uid, asyncio.CancelledError())
            return
        e = t.exception()
        if e is None:
            self._update_returned(uid, t.result())
        elif isinstance(e, (_Halt, _watchdog.DeadlockInterrupt)):
            return
        elif isinstance(e, ContinueAsNewError):
            self._close_with_continue(e)
        else:
            self._update_failed(uid, e)

    def _update_returned(self, uid: str, value: Any) -> None:
        try:
            payload = self.converter.to_payload(value)
        except Exception as enc:  # noqa: BLE001 - an unencodable result fails the update
            self._update_failed(uid, enc)
            return
        self._complete_update(WorkflowUpdateCompleted(uid, result=payload))

    def _update_failed(self, uid: str, e: BaseException) -> None:
        """What an update handler raised: a failure by the workflow's policy (``ApplicationError``
        and the other ``FailureError`` types by default) or a cancellation fails the update (the
        workflow goes on); anything else fails the workflow task (held for a fix, as in ``run``)."""
        if isinstance(e, (asyncio.CancelledError, *self.policy.workflow_failure_types)):
            self._complete_update(WorkflowUpdateCompleted(uid, failure=exception_to_failure(e, self.converter)))
        else:
            self._code_raised(e)

    def _complete_update(self, body: WorkflowUpdateCompleted) -> None:
        if self.closed is not None or self.divergence is not None or self.disposed:
            return
        try:
            self._issue(body)
        except _Halt:
            return

    def _on_handler_done(self, t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            return
        e = t.exception()
        if e is None or isinstance(e, (_Halt, _watchdog.DeadlockInterrupt, asyncio.CancelledError)):
            return
        if isinstance(e, ContinueAsNewError):
            self._close_with_continue(e)
            return
        self._code_raised(e)

    def _start_main(self, started: WorkflowStarted) -> None:
        try:
            hints = hints_of(self.defn.run_fn, skip_self=True)
            args = self.converter.from_payloads(started.input, hints)
            self.obj = self.defn.cls(*args) if self.defn.init_takes_args else self.defn.cls()
        except _Halt:
            return
        except Exception as e:
            self._code_raised(e)
            return
        self.main_task = self.loop.create_task(self.defn.run_fn(self.obj, *args), name="workflow:run")
        self.main_task.add_done_callback(self._on_main_done)

    def _on_main_done(self, t: asyncio.Task[Any]) -> None:
        if self.closed is not None or self.divergence is not None or self.disposed:
            return
        if t.cancelled():
            self._close(WorkflowCancelled())
            return
        e = t.exception()
        if e is None:
            try:
                payload = self.converter.to_payload(t.result())
            except Exception as enc:
                self._code_raised(enc)
                return
            self._close(WorkflowCompleted(payload))
            return
        if isinstance(e, (_Halt, _watchdog.DeadlockInterrupt)):
            return
        if isinstance(e, ContinueAsNewError):
            self._close_with_continue(e)
            return
        if isinstance(e, asyncio.CancelledError):
            self._close(WorkflowCancelled())
            return
        self._code_raised(e)

    def _close_with_continue(self, e: ContinueAsNewError) -> None:
        wf_type = e.workflow or self.defn.name
        try:
            payloads = self.converter.to_payloads(e.run_args)
        except Exception as enc:
            self._code_raised(enc)
            return
        self._close(WorkflowContinuedAsNew(
            new_run_id=continue_as_new_run_id(self.ctx.workflow_id, self.ctx.run_id),
            workflow_type=wf_type,
            input=payloads,
            task_queue=e.task_queue or self.ctx.started.task_queue,
        ))

    def _code_raised(self, e: BaseException) -> None:
        """An exception escaped workflow code: fail the workflow or the task, per policy."""
        if self.closed is not None or self.divergence is not None:
            return
        if isinstance(e, (_Halt, _watchdog.DeadlockInterrupt)):
            return
        if isinstance(e, self.policy.workflow_failure_types):
            self._close(WorkflowFailed(exception_to_failure(e, self.converter)))
        else:
            self.task_failure = e
            self.loop.stop()

    def _close(self, body: EventBody) -> None:
        try:
            self._issue(body)
        except _Halt:
            return
        self.closed = body
        self.loop.stop()

    # ---------------------------------------------------------------- activation
    def activate(self, expected: list[Event] | None, next_event: Event | None, next_seq: int) -> Activation:
        """Run the code to quiescence.

        ``expected``: the history's command events for this activation (replay), or None (live).
        ``next_event``: the history event after them (for divergence messages); ``next_seq``:
        the seq the first command takes.

        With ``extend_at_end`` set, a replayed activation that reaches the end of the history
        (``next_event`` None) and issues more than it holds goes on live instead of diverging,
        and ``tail`` gets the commands it issued beyond the history. A step's events can reach
        Kafka only in part when the engine dies while appending them (two produce requests):
        the engine repairs such a step by recording that tail (see
        ``WorkflowExecution.from_history(repair=True)``). None of the missing events had an
        effect (effects wait for the whole batch), so the code's continuation is as valid as
        the lost one. ``workflow.patched`` never extends: at the end it keeps replay's answer.
        """
        self._expected = deque(expected) if expected is not None else None
        self._next_history_event = next_event
        self._cursor_seq = next_seq
        self._issued = []
        self._tail_from = None
        self.tail = ()
        self.task_failure = None
        timeout = self.policy.deadlock_timeout
        armed = _watchdog.arm(timeout.total_seconds()) if timeout else None
        self.loop.interrupt_flag = armed
        deadlocked = False
        runtime_error: BaseException | None = None
        try:
            try:
                self.loop.run_until_quiescent()
            finally:
                if armed is not None:
                    deadlocked = _watchdog.disarm(armed)
        except _watchdog.DeadlockInterrupt:
            deadlocked = True
            if armed is not None:
                _watchdog.disarm(armed)
        except Exception as e:  # a bug of the runtime itself: hold the workflow, do not crash the engine
            runtime_error = e
        finally:
            self.loop.interrupt_flag = None
        act = Activation(commands=list(self._issued))
        if self._tail_from is not None:
            self.tail = act.commands[self._tail_from:]
            self._tail_from = None
        expected_left = self._expected
        self._expected = None
        if deadlocked:
            act.failure = DeadlockError(
                f"workflow {self.ctx.workflow_id!r} (run {self.ctx.run_id}) did not yield within "
                f"{timeout.total_seconds() if timeout else 0:g}s: blocking calls and busy loops do not "
                f"belong in workflow code (move them into an activity), or raise the deadlock_timeout "
                f"of its FailurePolicy. Not retried on this code (each try would stall the engine "
                f"worker again): it is retried once a restarted or newly deployed engine worker holds it",
                code_id=self.registry.code_id if self.registry is not None else "",
            )
        elif self.divergence is not None:
            act.failure = self.divergence
        elif runtime_error is not None:
            act.failure = runtime_error
        elif self.task_failure is not None:
            act.failure = self.task_failure
        elif expected_left:
            ev = expected_left[0]
            self.divergence = NondeterminismError(
                workflow_id=self.ctx.workflow_id, run_id=self.ctx.run_id, seq=ev.seq,
                expected=describe(ev.body), found="nothing (the code is waiting)")
            act.failure = self.divergence
        return act

    # ---------------------------------------------------------------- queries
    def query(self, handler: Callable[..., Any], args: list[Payload], hints: list[Any]) -> Any:
        from asyncio import events as _events

        values = self.converter.from_payloads(args, hints)
        prev = _events._get_running_loop()
        _events._set_running_loop(self.loop)
        self._in_query = True
        try:
            return handler(self.obj, *values)
        finally:
            self._in_query = False
            _events._set_running_loop(prev)

    # ---------------------------------------------------------------- disposal
    def dispose(self) -> None:
        """Drop the run's pending coroutines quietly (their ``finally`` blocks cannot issue commands)."""
        if self.disposed:
            return
        self.disposed = True
        from asyncio import events as _events

        prev = _events._get_running_loop()
        _events._set_running_loop(self.loop)
        try:
            for task in self.loop.tasks():  # asyncio.all_tasks walks every task of the process
                if not task.done():
                    coro = task.get_coro()
                    try:
                        coro.close()
                    except BaseException:
                        pass
        finally:
            _events._set_running_loop(prev)
            self.loop.close()
