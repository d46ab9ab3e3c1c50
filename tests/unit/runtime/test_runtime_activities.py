"""The engine-level activity state machine: attempts, retries, timeouts, cancellation, staleness."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from runtime_sim import CONV, Hang, NoStart, Sim

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ActivityError, ApplicationError, TimeoutError
from aion.model import (
    ActivityHeartbeat,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskStarted,
    Command,
    FireTimer,
)
from aion.runtime import effects
from aion.workflow import ActivityCancellationType


@activity.defn
async def work(n: int) -> int:
    return n + 1


@activity.defn(name="custom-name")
def sync_work(s: str) -> str:
    return s.upper()


def _policy(**kw: object) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=3), **kw)  # type: ignore[arg-type]


@workflow.defn
class Calls:
    @workflow.run
    async def run(self, mode: str) -> str:
        try:
            if mode == "retry5":
                r = await workflow.execute_activity(work, 1, start_to_close_timeout=timedelta(seconds=10),
                                                    retry_policy=_policy(maximum_attempts=5))
            elif mode == "nonretryable":
                r = await workflow.execute_activity(work, 1, retry_policy=_policy(
                    maximum_attempts=5, non_retryable_error_types=["KeyError"]))
            elif mode == "s2c":
                r = await workflow.execute_activity(work, 1, start_to_close_timeout=timedelta(seconds=5),
                                                    retry_policy=_policy(maximum_attempts=2))
            elif mode == "s2s":
                r = await workflow.execute_activity(work, 1, schedule_to_start_timeout=timedelta(seconds=5),
                                                    retry_policy=_policy(maximum_attempts=2))
            elif mode == "s2close":
                r = await workflow.execute_activity(work, 1, schedule_to_close_timeout=timedelta(seconds=4),
                                                    start_to_close_timeout=timedelta(seconds=2))
            elif mode == "heartbeat":
                r = await workflow.execute_activity(work, 1, heartbeat_timeout=timedelta(seconds=10),
                                                    retry_policy=_policy(maximum_attempts=1))
            elif mode == "by-name":
                r = await workflow.execute_activity("custom-name", "abc", task_queue="other")
            else:
                raise ValueError(mode)
            return f"ok {r}"
        except ActivityError as e:
            return f"{e.retry_state} attempt={e.attempt} cause={type(e.cause).__name__}:{getattr(e.cause, 'timeout_type', '')}"


def test_retries_with_backoff_then_success() -> None:
    s = Sim([Calls], [work], script={"work": [RuntimeError("a"), RuntimeError("b"), RuntimeError("c"), 41]})
    t0 = s.now
    s.start(Calls, "retry5")
    s.run()
    assert s.value() == "ok 41"
    attempts = [(t.attempt, t.scheduled_at_ms - t0) for t in s.dispatched]
    # 1s, 2s, then capped at 3s
    assert attempts == [(1, 0), (2, 1000), (3, 3000), (4, 6000)]
    fails = [e.body for e in s.history() if e.type == "ActivityFailed"]
    assert all(f.will_retry for f in fails) and [f.retry_at_ms - t0 for f in fails] == [1000, 3000, 6000]


def test_non_retryable_types_and_flag_stop_retries() -> None:
    s = Sim([Calls], [work], script={"work": [KeyError("k")]})
    s.start(Calls, "nonretryable")
    s.run()
    assert s.value() == "NON_RETRYABLE_FAILURE attempt=1 cause=ApplicationError:"
    s = Sim([Calls], [work], script={"work": [ApplicationError("no", non_retryable=True)]})
    s.start(Calls, "retry5")
    s.run()
    assert s.value() == "NON_RETRYABLE_FAILURE attempt=1 cause=ApplicationError:"


def test_start_to_close_timeout_retries_then_gives_up() -> None:
    s = Sim([Calls], [work], script={"work": [Hang]})
    s.start(Calls, "s2c")
    s.run()
    assert s.value() == "MAXIMUM_ATTEMPTS_REACHED attempt=2 cause=TimeoutError:START_TO_CLOSE"
    timed = [e.body for e in s.history() if e.type == "ActivityTimedOut"]
    assert [(t.attempt, t.timeout_type, t.will_retry) for t in timed] == [(1, "START_TO_CLOSE", True), (2, "START_TO_CLOSE", False)]
    # the timed-out attempts were told to stop
    assert [(c.activity_id, c.attempt) for c in s.cancels] == [("1", 1), ("1", 2)]


def test_late_result_of_a_timed_out_attempt_records_nothing() -> None:
    s = Sim([Calls], [work], script={"work": [Hang, 5]})
    s.start(Calls, "s2c")
    s.settle()
    first = s.dispatched[0]
    s.fire_next_timer()  # start-to-close of attempt 1
    s.settle()
    n = len(s.history())
    s.send(Command("late", "wf-1", s.now, ActivityTaskCompleted(first.run_id, "1", 1, CONV.to_payload(99))))
    s.settle()
    assert len(s.history()) == n
    s.run()
    assert s.value() == "ok 5"


def test_schedule_to_start_timeout() -> None:
    s = Sim([Calls], [work], script={"work": [NoStart]})
    s.start(Calls, "s2s")
    s.run()
    assert s.value() == "MAXIMUM_ATTEMPTS_REACHED attempt=2 cause=TimeoutError:SCHEDULE_TO_START"


def test_schedule_to_close_bounds_all_attempts() -> None:
    s = Sim([Calls], [work], script={"work": [Hang]})
    t0 = s.now
    s.start(Calls, "s2close")
    s.run()
    assert s.value() == "TIMEOUT attempt=2 cause=TimeoutError:SCHEDULE_TO_CLOSE"
    last = [e for e in s.history() if e.type == "ActivityTimedOut"][-1]
    assert last.recorded_at_ms - t0 == 4000


def test_heartbeats_keep_an_attempt_alive_until_they_stop() -> None:
    s = Sim([Calls], [work], auto_activities=False)
    t0 = s.now
    s.start(Calls, "heartbeat")
    s.settle()
    task = s.tasks.popleft()
    s.send(Command("st", "wf-1", s.now, ActivityTaskStarted(task.run_id, "1", 1)))
    s.settle()
    for i in range(1, 4):  # heartbeat every 6 s for 18 s (timeout 10 s)
        s.now = t0 + 6000 * i
        s.send(Command(f"hb{i}", "wf-1", s.now, ActivityHeartbeat(task.run_id, "1", 1, CONV.to_payload(i))))
        s.settle()
        while s.timers and min(s.timers.values()) <= s.now:
            s.fire_next_timer()
            s.settle()
    assert "ActivityTimedOut" not in s.types()
    s.run()  # no more heartbeats
    assert s.value() == "MAXIMUM_ATTEMPTS_REACHED attempt=1 cause=TimeoutError:HEARTBEAT"
    timed = [e for e in s.history() if e.type == "ActivityTimedOut"][0]
    assert timed.recorded_at_ms == t0 + 18000 + 10000


def test_activity_named_by_string_and_task_queue() -> None:
    s = Sim([Calls], [sync_work])
    s.start(Calls, "by-name")
    s.run()
    assert s.value() == "ok ABC"
    assert s.dispatched[0].task_queue == "other" and s.dispatched[0].activity_type == "custom-name"


def test_an_outcome_without_a_start_report_records_the_start_in_the_same_step() -> None:
    """The activity worker reports a short attempt's start with its outcome: the step records
    ActivityStarted then the outcome (one transaction), for a completion and a failure."""
    from aion.exceptions import exception_to_failure
    from aion.model import ActivityTaskCompleted, ActivityTaskFailed

    s = Sim([Calls], [work], auto_activities=False)
    s.start(Calls, "retry5")
    s.settle()
    t = s.tasks.popleft()
    s.send(Command("f", "wf-1", s.now, ActivityTaskFailed(t.run_id, "1", 1, exception_to_failure(RuntimeError("x")),
                                                         worker="w1")))
    s.settle()
    failed = [e for e in s.history() if e.type in ("ActivityStarted", "ActivityFailed")]
    assert [e.type for e in failed] == ["ActivityStarted", "ActivityFailed"]
    assert failed[0].command_id == failed[1].command_id == "f" and failed[0].body.worker == "w1"
    s.fire_next_timer()
    s.settle()
    retry = s.tasks.popleft()
    s.send(Command("done", "wf-1", s.now, ActivityTaskCompleted(t.run_id, "1", retry.attempt, CONV.to_payload(5))))
    s.settle()
    done = [e for e in s.history() if e.command_id == "done"]
    assert [e.type for e in done][:2] == ["ActivityStarted", "ActivityCompleted"]
    assert done[0].body.attempt == 2


@pytest.mark.parametrize("resident", [True, False])
def test_retry_passes_heartbeat_details_to_next_attempt(resident: bool) -> None:
    """The next attempt starts from the last heartbeat's details. Heartbeats are not events:
    the runtime asks the engine to keep them (``KeepHeartbeat``), so an execution rebuilt from
    the history alone (``resident=False``: a takeover, an eviction) gets them back with
    ``restore_heartbeat``. Once the activity closes they are dropped (``DropHeartbeat``)."""
    from aion.exceptions import exception_to_failure
    from aion.model import ActivityTaskCompleted, ActivityTaskFailed

    s = Sim([Calls], [work], auto_activities=False, resident=resident)
    s.start(Calls, "retry5")
    s.settle()
    t = s.tasks.popleft()
    s.send(Command("st", "wf-1", s.now, ActivityTaskStarted(t.run_id, "1", 1)))
    s.send(Command("hb", "wf-1", s.now, ActivityHeartbeat(t.run_id, "1", 1, CONV.to_payload({"page": 3}))))
    s.settle()
    assert s.heartbeats[("wf-1", "1")][1].details == CONV.to_payload({"page": 3})
    s.send(Command("f", "wf-1", s.now, ActivityTaskFailed(t.run_id, "1", 1, exception_to_failure(RuntimeError("x")))))
    s.settle()
    s.fire_next_timer()
    s.settle()
    retry = s.tasks.popleft()
    assert retry.attempt == 2 and CONV.from_payload(retry.heartbeat_details) == {"page": 3}
    s.send(Command("st2", "wf-1", s.now, ActivityTaskStarted(t.run_id, "1", 2)))
    s.send(Command("done", "wf-1", s.now, ActivityTaskCompleted(t.run_id, "1", 2, CONV.to_payload(5))))
    s.settle()
    assert ("wf-1", "1") not in s.heartbeats


def test_restore_heartbeat_ignores_other_runs_and_later_attempts() -> None:
    s = Sim([Calls], [work], auto_activities=False)
    s.start(Calls, "retry5")
    s.settle()
    t = s.tasks.popleft()
    ex = s.ex("wf-1")
    assert ex.open_activity_ids() == ["1"]
    assert not ex.restore_heartbeat(s.now, ActivityHeartbeat("another-run", "1", 1, CONV.to_payload(1)))
    assert not ex.restore_heartbeat(s.now, ActivityHeartbeat(t.run_id, "1", 2, CONV.to_payload(1)))
    assert not ex.restore_heartbeat(s.now, ActivityHeartbeat(t.run_id, "9", 1, CONV.to_payload(1)))
    assert ex.restore_heartbeat(s.now, ActivityHeartbeat(t.run_id, "1", 1, CONV.to_payload(7)))


# ------------------------------------------------------------------ cancellation types


@workflow.defn
class CancelKinds:
    @workflow.run
    async def run(self, kind: str) -> str:
        h = workflow.start_activity(work, 1, start_to_close_timeout=timedelta(minutes=5),
                                    cancellation_type=ActivityCancellationType(kind))
        await workflow.sleep(timedelta(seconds=1))
        h.cancel()
        try:
            await h
        except asyncio.CancelledError:
            return f"cancelled at {workflow.now().timestamp():.0f}"
        return "not cancelled"


@pytest.mark.parametrize("kind", ["TRY_CANCEL", "WAIT_CANCELLATION_COMPLETED", "ABANDON"])
def test_activity_cancellation_types(kind: str) -> None:
    s = Sim([CancelKinds], [work], script={"work": [Hang]})
    t0 = s.now
    s.start(CancelKinds, kind)
    s.settle()
    s.fire_next_timer()  # the 1 s sleep
    s.settle()
    if kind == "WAIT_CANCELLATION_COMPLETED":
        assert s.ex("wf-1").status == "RUNNING"
        task = s.dispatched[0]
        assert [c.activity_id for c in s.cancels] == ["1"]
        s.now += 500
        s.send(Command("cc", "wf-1", s.now, ActivityTaskCancelled(task.run_id, "1", 1)))
        s.settle()
        assert s.value() == f"cancelled at {(t0 + 1500) / 1000:.0f}"
        assert s.types()[-2:] == ["ActivityCancelled", "WorkflowCompleted"]
    else:
        assert s.value() == f"cancelled at {(t0 + 1000) / 1000:.0f}"
        assert ("ActivityCancelRequested" in s.types()) == (kind == "TRY_CANCEL")
        assert len(s.cancels) == 1  # TRY_CANCEL: the request; ABANDON: the run closing


@workflow.defn
class CancelDuringBackoff:
    @workflow.run
    async def run(self) -> str:
        h = workflow.start_activity(work, 1, retry_policy=RetryPolicy(initial_interval=timedelta(minutes=10)),
                                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.sleep(timedelta(seconds=5))
        h.cancel()
        try:
            return str(await h)
        except asyncio.CancelledError:
            return "cancelled"


def test_cancel_while_waiting_for_retry_confirms_itself() -> None:
    s = Sim([CancelDuringBackoff], [work], script={"work": [RuntimeError("x")]})
    s.start(CancelDuringBackoff)
    s.run()
    assert s.value() == "cancelled"
    assert "ActivityCancelled" in s.types()
    assert len(s.dispatched) == 1  # the second attempt was never dispatched


def test_effects_of_one_activity_step() -> None:
    s = Sim([Calls], [work])
    cmd = s.start(Calls, "s2close")
    ex = __import__("aion.runtime", fromlist=["x"]).WorkflowExecution.new(s.registry, "wf-x")
    step = ex.handle(Command("c1", "wf-x", s.now, cmd.body, reply_to="r:1"), s.now)
    kinds = [type(e).__name__ for e in step.effects]
    assert kinds == ["SendReply", "DispatchActivity", "ScheduleTimer"]
    assert step.replies[0].reply.kind == "ACCEPTED"
    timer = step.effects[2]
    assert isinstance(timer, effects.ScheduleTimer) and timer.timer_id == "a/1/close" and timer.fire_at_ms == s.now + 4000


def test_activity_timer_ids_are_written_and_parsed_back() -> None:
    from aion.runtime._state import ActivityTimer

    for timer, text in [
        (ActivityTimer("1", "close"), "a/1/close"),
        (ActivityTimer("1", "retry", 3), "a/1/3/retry"),
        (ActivityTimer("pay/eu", "s2s", 1), "a/pay/eu/1/s2s"),
        (ActivityTimer("x", "s2c", 2), "a/x/2/s2c"),
        (ActivityTimer("a/b", "hb", 4, 7), "a/a/b/4/hb/7"),
    ]:
        assert str(timer) == text
        assert ActivityTimer.parse(text) == timer
    for other in ("1", "wf/exec", "task/2", "a/1/x/retry", "a/1/2/nope", "a/"):
        assert ActivityTimer.parse(other) is None, other


def test_an_activitys_timer_ids_are_the_activity_timers_text() -> None:
    """``Act.timer`` writes the ids without making an ``ActivityTimer``: the same text."""
    from aion.model import RetryPolicy as ModelRetryPolicy
    from aion.runtime._state import Act, ActivityTimer

    for aid in ("1", "pay/eu", "a/b"):
        act = Act(aid, "t", [], "q", ModelRetryPolicy(), None, None, None, None, 0, attempt=3)
        act.hb_gen = 5
        for kind in ("close", "retry", "s2s", "s2c", "hb"):
            want = ActivityTimer(aid, "close") if kind == "close" else ActivityTimer(aid, kind, 3, 5 if kind == "hb" else 0)
            assert act.timer(kind) == str(want)
            assert ActivityTimer.parse(act.timer(kind)) == want
        assert act.timer("hb", gen=9) == str(ActivityTimer(aid, "hb", 3, 9))
