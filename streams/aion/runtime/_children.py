"""Child workflows of a workflow execution: their starts, results, cancel requests and the
parent-close policy.

A child start is recorded as ``ChildWorkflowStarted`` in the parent and sent as a
``StartWorkflow`` command (``parent_workflow_id``/``parent_run_id`` set, command id
``<parent>:<run>:start-child:<child>``) to the child's partition; the child's close comes back
as a ``ChildWorkflowResult`` command, recorded as ``ChildWorkflowCompleted`` / ``Failed`` /
``Cancelled`` / ``TimedOut`` / ``Terminated``. When the parent's run closes, its open children
get what their ``parent_close_policy`` says (``TERMINATE``, ``REQUEST_CANCEL``; ``ABANDON``
leaves them), as commands the close sends (``Run.close_commands``).

A child's ``retry_policy``, ``cron_schedule`` and ``memo`` travel in its start: the child's own
execution retries it and runs its cron chain (``_successors.py``); the parent hears only of
the last run's close.
"""

from __future__ import annotations

from typing import Any

from ..model import (
    CancelWorkflow,
    ChildWorkflowCancelled,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowResult,
    ChildWorkflowStarted,
    ChildWorkflowTerminated,
    ChildWorkflowTimedOut,
    Command,
    Event,
    EventBody,
    Failure,
    MarkerRecorded,
    StartWorkflow,
    TerminateWorkflow,
)
from ._state import RUNNING, Child, Parts, Run
from .effects import Effect, SendCommand


class Children(Parts):
    """The children room of :class:`~aion.runtime.WorkflowExecution` (see the module docs)."""

    _child_starts: dict[tuple[str, str], ChildWorkflowStarted]

    def _on_child_started(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, ChildWorkflowStarted)
        held = run.paused_at_ms is not None  # started at the resume (_lifecycle.py)
        run.children[b.child_workflow_id] = Child(b.child_workflow_id, b.workflow_type, b.parent_close_policy,
                                                  start_held=held)
        self._child_starts[(run.run_id, b.child_workflow_id)] = b
        if fx is not None and not held:
            fx.extend(self._child_start_effects(run, b.child_workflow_id))

    def _on_child_closed(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        ch = run.children.get(ev.body.child_workflow_id)  # type: ignore[union-attr]
        if ch is not None:
            ch.closed = True

    def _on_cancel_child_marker(self, b: MarkerRecorded, run: Run, t: int, fx: list[Effect] | None) -> None:
        ch = run.children.get(b.marker_id)
        if ch is not None and not ch.closed and fx is not None:
            wf, rid = self.workflow_id, run.run_id
            fx.append(SendCommand(Command(
                command_id=f"{wf}:{rid}:cancel-child:{b.marker_id}", workflow_id=b.marker_id,
                sent_at_ms=t, body=CancelWorkflow(reason=f"cancellation requested by parent {wf!r}"))))

    def _close_children(self, run: Run, status: str, t: int) -> None:
        """The run closed: its open children's parent-close policy, as close commands."""
        wf, rid = self.workflow_id, run.run_id
        for ch in run.children.values():
            if ch.closed:
                continue
            if ch.parent_close_policy in ("TERMINATE", "REQUEST_CANCEL"):
                body: Any = (TerminateWorkflow(reason=f"parent {wf!r} run closed ({status})")
                             if ch.parent_close_policy == "TERMINATE"
                             else CancelWorkflow(reason=f"parent {wf!r} run closed ({status})"))
                run.close_commands.append(Command(f"{wf}:{rid}:close-child:{ch.child_workflow_id}{run.close_tag}",
                                                  ch.child_workflow_id, t, body))
            ch.closed = True

    def _child_recovery(self, run: Run) -> list[Effect]:
        """The open children's share of ``recovery_effects``: their starts (idempotent)."""
        out: list[Effect] = []
        for ch in run.children.values():
            if not ch.closed and not ch.start_held:
                out.extend(self._child_start_effects(run, ch.child_workflow_id))
        return out

    def _child_start_effects(self, run: Run, cid: str) -> list[Effect]:
        b = self._child_starts.get((run.run_id, cid))
        if b is None:
            return []
        wf, rid = self.workflow_id, run.run_id
        return [SendCommand(Command(
            command_id=f"{wf}:{rid}:start-child:{cid}",
            workflow_id=cid,
            sent_at_ms=self._now,
            body=StartWorkflow(
                workflow_type=b.workflow_type,
                input=list(b.input),
                task_queue=b.task_queue,
                id_reuse_policy="ALLOW_DUPLICATE",
                request_id=f"{wf}:{rid}:child:{cid}",
                execution_timeout_ms=b.execution_timeout_ms,
                parent_workflow_id=wf,
                parent_run_id=rid,
                parent_close_policy=b.parent_close_policy,
                retry_policy=b.retry_policy,
                cron_schedule=b.cron_schedule,
                memo=dict(b.memo),
            )))]

    def _h_child_result(self, command: Command, b: ChildWorkflowResult) -> None:
        run = self.run
        if run is None or run.status != RUNNING or run.run_id != b.run_id:
            return
        ch = run.children.get(b.child_workflow_id)
        if ch is None or ch.closed:
            return
        cid = b.child_workflow_id
        body: EventBody
        if b.outcome == "COMPLETED":
            body = ChildWorkflowCompleted(cid, b.result if b.result is not None else self.registry.converter.to_payload(None))
        elif b.outcome == "CANCELLED":
            body = ChildWorkflowCancelled(cid)
        elif b.outcome == "TIMED_OUT":
            body = ChildWorkflowTimedOut(cid)
        elif b.outcome == "TERMINATED":
            body = ChildWorkflowTerminated(cid, reason=b.failure.message if b.failure else "")
        else:
            body = ChildWorkflowFailed(cid, b.failure or Failure("ChildWorkflowError", f"child {cid} failed"))
        self._record(body)

    APPLY = {
        ChildWorkflowStarted: _on_child_started,
        ChildWorkflowCompleted: _on_child_closed,
        ChildWorkflowFailed: _on_child_closed,
        ChildWorkflowCancelled: _on_child_closed,
        ChildWorkflowTimedOut: _on_child_closed,
        ChildWorkflowTerminated: _on_child_closed,
    }
    HANDLERS = {ChildWorkflowResult: _h_child_result}
