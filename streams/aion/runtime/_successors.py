"""Runs that follow a closed run on their own: workflow retries and cron workflows.

Temporal's two server-side ways of starting the next run of a workflow id, built here on the
machinery continue-as-new already uses (the next run's ``WorkflowStarted`` appended to the same
history, in the step that closed the previous run) plus a first-task backoff on a durable timer:

- **Retry** (``WorkflowStarted.retry_policy``): a run that fails (``WorkflowFailed``) or times
  out on its run timeout is followed by run ``attempt + 1`` after the policy's backoff, unless
  the failure is non-retryable (``non_retryable`` or its type listed in the policy), the
  attempts are used up, or the backoff would end past the execution timeout.
- **Cron** (``WorkflowStarted.cron_schedule``): every run's code starts at a fire time (the
  first run waits for the first one), and a run that closes in any way but cancelled,
  terminated or an execution time-out is followed by a run that starts at the next fire time,
  with the last completed run's result (``workflow.get_last_completion_result()``) and, after a
  failure, that failure (``workflow.get_last_failure()``). Retries come first: a cron run
  that fails is retried per its policy before the chain waits for the next fire time.

The closed run keeps its real status (``FAILED``, ``COMPLETED``, ``TIMED_OUT``) as in
Temporal; what changes is that it tells nobody: its parent gets no child result and the result
waiters keep waiting, for the run that follows (``Run.successor``, decided from the history
alone, so a replay decides the same). The next run's ``WorkflowStarted`` records
``first_task_backoff_ms``: the run is open (signals are recorded, a cancel closes it, a
terminate ends it) but no code runs until the ``wf/start`` timer fires and records the resume
marker, which delivers everything to the code at once — the same path a held run takes.
"""

from __future__ import annotations

from typing import Any

from ..model import Failure, Payload, WorkflowCompleted, WorkflowFailed, WorkflowStarted, WorkflowTimedOut
from ._cron import next_cron_ms
from ._state import backoff_ms

__all__ = ["RETRY", "CRON", "successor_of", "successor_start", "retryable"]

RETRY = "RETRY"
CRON = "CRON_SCHEDULE"


def retryable(st: WorkflowStarted, failure: Failure) -> bool:
    """Whether the run started by ``st`` that failed with ``failure`` is retried."""
    p = st.retry_policy
    if p is None or failure.non_retryable or failure.type in p.non_retryable_error_types:
        return False
    return not (p.maximum_attempts and st.attempt >= p.maximum_attempts)


def _failure_of(body: Any) -> Failure | None:
    if isinstance(body, WorkflowFailed):
        return body.failure
    if isinstance(body, WorkflowTimedOut):
        return Failure("TimeoutError", f"workflow timed out ({body.timeout_type})")
    return None


def successor_of(st: WorkflowStarted, body: Any, status: str, t: int,
                 exec_deadline_ms: int | None) -> tuple[str, int] | None:
    """``(initiator, first-task backoff ms)`` of the run that follows a run started by ``st``
    and closed by ``body`` (status ``status``) at ``t``; None when the chain ends there."""
    if status in ("CANCELLED", "TERMINATED", "CONTINUED_AS_NEW", "RUNNING"):
        return None
    if isinstance(body, WorkflowTimedOut) and body.timeout_type != "RUN":
        return None  # the execution timeout bounds the whole chain, retries and cron included
    failure = _failure_of(body)
    if failure is not None and st.retry_policy is not None and retryable(st, failure):
        wait = backoff_ms(st.retry_policy, st.attempt)
        if exec_deadline_ms is None or t + wait < exec_deadline_ms:
            return RETRY, wait
    if st.cron_schedule:
        try:
            nxt = next_cron_ms(st.cron_schedule, t)
        except Exception:  # refused at the start; an older or foreign record: the chain ends
            return None
        if exec_deadline_ms is None or nxt < exec_deadline_ms:
            return CRON, max(1, nxt - t)
    return None


def successor_start(st: WorkflowStarted, old_run_id: str, body: Any, initiator: str, wait_ms: int, *,
                    search_attributes: dict[str, str], search_attribute_types: dict[str, str],
                    code_version: str) -> WorkflowStarted:
    """The ``WorkflowStarted`` of the run that follows (same type, input, options)."""
    last_result: Payload | None = st.last_completion_result
    if isinstance(body, WorkflowCompleted):
        last_result = body.result
    return WorkflowStarted(
        workflow_type=st.workflow_type,
        input=list(st.input),
        task_queue=st.task_queue,
        previous_run_id=old_run_id,
        parent_workflow_id=st.parent_workflow_id,
        parent_run_id=st.parent_run_id,
        parent_close_policy=st.parent_close_policy,
        execution_timeout_ms=st.execution_timeout_ms,
        run_timeout_ms=st.run_timeout_ms,
        search_attributes=dict(search_attributes),
        search_attribute_types=dict(search_attribute_types),
        code_version=code_version,
        attempt=st.attempt + 1 if initiator == RETRY else 1,
        request_id=st.request_id,
        retry_policy=st.retry_policy,
        cron_schedule=st.cron_schedule,
        memo=dict(st.memo),
        first_task_backoff_ms=wait_ms,
        initiator=initiator,
        last_completion_result=last_result,
        last_failure=_failure_of(body),
    )
