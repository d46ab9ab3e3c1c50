"""Samples of every model type with a non-default value in every field (and their minimal twins)."""

from __future__ import annotations

import dataclasses
import sys
import typing

from aion import model as m

P1 = m.Payload("application/json", b'{"amount": 4200}')
P2 = m.Payload("application/x-protobuf", b"\x00\x01\xfe\xff")
P3 = m.Payload("text/plain; charset=utf-8", "żółw 🐢".encode())
FAIL = m.Failure(
    type="PaymentDeclined",
    message="card declined",
    details=P2,
    non_retryable=True,
    stack='File "pay.py", line 3',
    cause=m.Failure(
        type="HTTPError",
        message="402",
        details=P3,
        non_retryable=True,
        stack="in request()",
        cause=m.Failure(type="ConnectionReset", message="peer reset", details=P1, non_retryable=True, stack="x", cause=None),
    ),
)
RETRY = m.RetryPolicy(
    initial_interval_ms=250,
    backoff_coefficient=1.5,
    maximum_interval_ms=60_000,
    maximum_attempts=7,
    non_retryable_error_types=["ValueError", "PaymentDeclined"],
)
TIMEOUTS = m.ActivityTimeouts(schedule_to_close_ms=90_000, schedule_to_start_ms=5_000, start_to_close_ms=30_000, heartbeat_ms=2_000)
ATTRS = {"customer": "c-17", "region": "eu-west", "ünïcode": "välue"}
T = 1_700_000_000_123  # a timestamp in ms

EVENT_BODIES: list[typing.Any] = [
    m.WorkflowStarted(
        workflow_type="OrderWorkflow", input=[P1, P2], task_queue="orders", previous_run_id="run-0",
        parent_workflow_id="parent-1", parent_run_id="prun-1", parent_close_policy="ABANDON",
        execution_timeout_ms=86_400_000, run_timeout_ms=3_600_000, search_attributes=ATTRS,
        code_version="v2.3", attempt=3, request_id="req-9", reply_to="aion.replies:4",
        retry_policy=RETRY, cron_schedule="CRON_TZ=Europe/Paris 0 9 * * 1-5", memo={"note": P2},
        first_task_backoff_ms=60_000, initiator="RETRY", last_completion_result=P3, last_failure=FAIL,
        search_attribute_types={"region": "Keyword"},
    ),
    m.WorkflowCompleted(result=P1),
    m.WorkflowFailed(failure=FAIL),
    m.WorkflowCancelRequested(reason="user asked"),
    m.WorkflowCancelled(details=P3),
    m.WorkflowTerminated(reason="operator"),
    m.WorkflowTimedOut(timeout_type="RUN"),
    m.WorkflowContinuedAsNew(new_run_id="run-2", workflow_type="OrderWorkflowV2", input=[P2], task_queue="orders-2"),
    m.WorkflowTaskFailed(failure=FAIL, attempt=4, retry_at_ms=T + 10_000),
    m.ActivityScheduled(activity_id="act-1", activity_type="charge", input=[P1, P3], task_queue="payments", retry_policy=RETRY, timeouts=TIMEOUTS),
    m.ActivityStarted(activity_id="act-1", attempt=2, worker="host-a/123"),
    m.ActivityCompleted(activity_id="act-1", attempt=2, result=P2),
    m.ActivityFailed(activity_id="act-1", attempt=5, failure=FAIL, will_retry=True, retry_at_ms=T + 2_000),
    m.ActivityTimedOut(activity_id="act-1", attempt=6, timeout_type="HEARTBEAT", will_retry=True, retry_at_ms=T + 4_000),
    m.ActivityCancelRequested(activity_id="act-2"),
    m.ActivityCancelled(activity_id="act-2", details=P1),
    m.TimerStarted(timer_id="t-1", fire_at_ms=T + 60_000, duration_ms=60_000, name="reminder"),
    m.TimerFired(timer_id="t-1"),
    m.TimerCancelled(timer_id="t-2"),
    m.SignalReceived(signal_name="approve", args=[P1, P2], signal_id="sig-1"),
    m.SignalSent(signal_id="sig-2", target_workflow_id="other-wf", signal_name="ping", args=[P3]),
    m.ChildWorkflowStarted(child_workflow_id="child-1", workflow_type="Shipment", input=[P2], task_queue="shipping", parent_close_policy="REQUEST_CANCEL", execution_timeout_ms=120_000,
                           retry_policy=RETRY, cron_schedule="@hourly", memo={"note": P1}),
    m.ChildWorkflowCompleted(child_workflow_id="child-1", result=P3),
    m.ChildWorkflowFailed(child_workflow_id="child-1", failure=FAIL),
    m.ChildWorkflowCancelled(child_workflow_id="child-2"),
    m.ChildWorkflowTimedOut(child_workflow_id="child-3"),
    m.ChildWorkflowTerminated(child_workflow_id="child-4", reason="parent closed"),
    m.MarkerRecorded(marker_name="side_effect", marker_id="se-1", value=P1),
    m.SearchAttributesUpserted(attributes=ATTRS, types={"region": "Keyword"}, unset=["old"]),
    m.WorkflowPaused(reason="maintenance window"),
    m.WorkflowResumed(reason="window closed"),
    m.WorkflowReopened(from_seq=17, reason="fixed the card service"),
    m.WorkflowUpdateAccepted(update_id="upd-1", update_name="set_address", args=[P1, P2], reply_to="aion.replies:3"),
    m.WorkflowUpdateCompleted(update_id="upd-1", result=P3, failure=FAIL),
]

START = m.StartWorkflow(
    workflow_type="OrderWorkflow", input=[P1], task_queue="orders", id_reuse_policy="REJECT_DUPLICATE",
    request_id="req-1", execution_timeout_ms=86_400_000, run_timeout_ms=3_600_000, search_attributes=ATTRS,
    parent_workflow_id="parent-1", parent_run_id="prun-1", parent_close_policy="ABANDON", wait_result=True,
    retry_policy=RETRY, cron_schedule="*/5 * * * *", memo={"note": P3}, search_attribute_types={"region": "Keyword"},
)
COMMAND_BODIES: list[typing.Any] = [
    START,
    m.SignalWorkflow(signal_name="approve", args=[P1, P2], signal_id="sig-1", run_id="run-1"),
    m.SignalWithStart(start=START, signal_name="approve", args=[P3]),
    m.CancelWorkflow(reason="user asked", run_id="run-1"),
    m.TerminateWorkflow(reason="operator", run_id="run-1"),
    m.QueryWorkflow(query_name="status", args=[P1]),
    m.GetResult(run_id="run-1"),
    m.ActivityTaskStarted(run_id="run-1", activity_id="act-1", attempt=2, worker="host-a/1"),
    m.ActivityTaskCompleted(run_id="run-1", activity_id="act-1", attempt=2, result=P2, worker="host-a/1"),
    m.ActivityTaskFailed(run_id="run-1", activity_id="act-1", attempt=3, failure=FAIL, worker="host-b/2"),
    m.ActivityTaskCancelled(run_id="run-1", activity_id="act-1", attempt=3, details=P3),
    m.ActivityHeartbeat(run_id="run-1", activity_id="act-1", attempt=3, details=P1),
    m.ChildWorkflowResult(run_id="run-1", child_workflow_id="child-1", outcome="FAILED", result=P1, failure=FAIL),
    m.FireTimer(run_id="run-1", timer_id="t-1", fire_at_ms=T + 60_000),
    m.PauseWorkflow(reason="maintenance window", run_id="run-1"),
    m.ResumeWorkflow(reason="window closed", run_id="run-1"),
    m.ReopenWorkflow(reason="fixed the card service", run_id="run-1"),
    m.UpdateWorkflow(update_id="upd-1", update_name="set_address", args=[P1], run_id="run-1", wait_for_stage="ACCEPTED"),
    m.UpdateWithStart(start=START, update=m.UpdateWorkflow(update_id="upd-2", update_name="set_address", args=[P2], run_id="run-2", wait_for_stage="ACCEPTED")),
]

TASKS: list[typing.Any] = [
    m.ActivityTask(
        workflow_id="order-1", run_id="run-1", activity_id="act-1", attempt=2, activity_type="charge",
        input=[P1, P2], task_queue="payments", workflow_type="OrderWorkflow", scheduled_at_ms=T,
        start_to_close_ms=30_000, heartbeat_ms=2_000, schedule_to_close_deadline_ms=T + 90_000, heartbeat_details=P3,
    ),
    m.CancelActivityTask(workflow_id="order-1", run_id="run-1", activity_id="act-1", attempt=2),
]

REPLY = m.Reply(command_id="cmd-1", workflow_id="order-1", kind="RESULT", run_id="run-1", status="FAILED", result=P1, failure=FAIL)


def event(body: typing.Any, seq: int = 7, command_id: str | None = "cmd-7") -> m.Event:
    return m.Event(workflow_id="order-1", seq=seq, run_id="run-1", recorded_at_ms=T, body=body, command_id=command_id)


def command(body: typing.Any, reply_to: str | None = "aion.replies:3") -> m.Command:
    return m.Command(command_id="cmd-1", workflow_id="order-1", sent_at_ms=T, body=body, reply_to=reply_to)


def minimal(obj: typing.Any) -> typing.Any:
    """``obj`` with every defaulted field at its default (None, empty map...) and required lists empty."""
    changes: dict[str, typing.Any] = {}
    hints = typing.get_type_hints(type(obj), vars(sys.modules[type(obj).__module__]))
    for f in dataclasses.fields(obj):
        if f.default is not dataclasses.MISSING:
            changes[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            changes[f.name] = f.default_factory()
        elif typing.get_origin(hints[f.name]) is list:
            changes[f.name] = []
        elif dataclasses.is_dataclass(getattr(obj, f.name)):
            changes[f.name] = minimal(getattr(obj, f.name))
    return dataclasses.replace(obj, **changes)
