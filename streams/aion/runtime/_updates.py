"""Updates (Temporal's workflow updates): a request to a running workflow that its code answers.

An ``UpdateWorkflow`` command names an ``@workflow.update`` handler of the run's type, its
arguments and an update id. Before anything is recorded the engine checks it:

- the run is open (else ``WorkflowNotFoundError`` naming the status the run ended with, as
  for a signal), the type has that update (else ``UpdateNotFoundError``), and the workflow is
  not held after a task failure (``WorkflowStateError``);
- the run is within the limits: at most :data:`MAX_UPDATES_IN_FLIGHT` updates in flight and
  :data:`MAX_UPDATES_PER_RUN` accepted in one run (``TooManyUpdatesError``; Temporal's
  defaults are the same numbers);
- the arguments fit the handler, and its validator (``@my_update.validator``), run read-only
  on the live workflow object, does not raise. A rejected update appends nothing: its sender
  gets ``WorkflowUpdateFailedError`` whose cause is what the validator raised.

An accepted update records ``WorkflowUpdateAccepted`` (with the sender's ``reply_to``), an
input like a signal: the handler starts in that activation and may await activities, timers
and conditions. When it returns or raises, the code issues ``WorkflowUpdateCompleted`` (a
command event, matched on replay by update id). On replay the accepted event re-delivers the
update to its handler at the same point, so a handler in flight when an engine dies goes on
in the engine that takes over.

Answers. A sender that waits for the ``ACCEPTED`` stage gets ``Reply(kind=UPDATE,
status=ACCEPTED)`` in the step that records the acceptance; every sender gets
``Reply(kind=UPDATE, status=COMPLETED, result|failure)`` in the step that records the
completion — an effect of that event, produced in the same Kafka transaction, and addressed
from the accepted event (its ``command_id`` and ``reply_to``), so an engine that takes over
after a kill -9 answers the completion once, whichever engine ran the handler's start.

De-duplication is by update id per run: the same update id again (a re-sent command, another
client) runs nothing; it is answered with the recorded outcome, or, while the handler is in
flight, waits for it (such extra waiters live in memory, like result waiters: after a
hand-over their senders must ask again). The same update id with another name or other
arguments is refused with ``InvalidArgumentError``.

A run that closes (completes, fails, continues as new, is cancelled or terminated) with
updates in flight answers their senders with a failure (``WorkflowStateError`` as the cause)
naming how the run ended; the handlers never finish. ``workflow.all_handlers_finished()``
counts update handlers, so ``await workflow.wait_condition(workflow.all_handlers_finished)``
before returning lets them finish first.

``UpdateWithStart`` starts the workflow unless a run is open (the start's id reuse policy
applies to a closed run), then updates the run: one command, so the update cannot miss the
run it starts. The sender gets the update's answers (or the start's refusal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..converter import hints_of
from ..exceptions import (
    InvalidArgumentError,
    TooManyUpdatesError,
    UpdateNotFoundError,
    WorkflowStateError,
    WorkflowUpdateFailedError,
    exception_to_failure,
)
from ..model import (
    Command,
    Event,
    Failure,
    Payload,
    Reply,
    UpdateWithStart,
    UpdateWorkflow,
    WorkflowUpdateAccepted,
    WorkflowUpdateCompleted,
)
from ._commands import MAX_WAITERS, ClientCommands
from ._signals import _signature, _takes
from ._state import RUNNING, Parts, Run
from .effects import Effect, SendReply

if TYPE_CHECKING:
    from ._instance import WorkflowInstance

__all__ = ["Updates", "UpdateState", "MAX_UPDATES_IN_FLIGHT", "MAX_UPDATES_PER_RUN"]

#: Updates accepted and not completed, per run (Temporal: 10 per workflow execution).
MAX_UPDATES_IN_FLIGHT = 10
#: Updates accepted in one run, completed or not (Temporal: 2,000 per workflow execution);
#: continue-as-new starts a run with none.
MAX_UPDATES_PER_RUN = 2_000


@dataclass
class UpdateState:
    """One accepted update of a run (from its ``WorkflowUpdateAccepted``)."""

    update_id: str
    update_name: str
    args: list[Payload]
    #: The accepting command (its id and reply address answer the completion).
    command_id: str
    reply_to: str | None
    accepted_seq: int
    completed: WorkflowUpdateCompleted | None = None
    #: Other senders of the same update id waiting for the completion (memory only).
    waiters: dict[tuple[str, str], None] = field(default_factory=dict)


class Updates(Parts):
    """The update room of :class:`~aion.runtime.WorkflowExecution` (see the module docs)."""

    if TYPE_CHECKING:
        load_failure: BaseException | None
        _command_ids: dict[str, int]

        @property
        def held(self) -> bool: ...

        def _open_run_or_refuse(self, command: Command, what: str, run_id: str | None) -> Run | None: ...
        def _reply(self, command: Command, kind: str, **kw: Any) -> None: ...
        def _refuse(self, command: Command, error: type[BaseException] | str, message: str, *,
                    notify_parent: bool = True) -> None: ...
        def _on_start(self, command: Command, b: Any, signal: Any = None) -> None: ...
        def _rebuild_instance(self, upto: int, *, extend: bool = False) -> WorkflowInstance | None: ...
        def _task_failed(self, failure: BaseException) -> None: ...

    # ------------------------------------------------------------------ commands
    def _h_update(self, command: Command, b: UpdateWorkflow) -> None:
        run = self.run
        if run is not None and (not b.run_id or b.run_id == run.run_id):
            known = run.updates.get(b.update_id)
            if known is not None:
                self._update_again(command, b, run, known)
                return
        what = f"deliver update {b.update_name!r} (id {b.update_id})"
        run = self._open_run_or_refuse(command, what, b.run_id)
        if run is None:
            return
        if self.held:
            self._refuse(command, WorkflowStateError,
                         f"workflow {self.workflow_id!r} (run {run.run_id}) is held after a task failure: cannot "
                         f"{what}; updates are accepted again once it resumes (deploy a fix, or resume it)")
            return
        in_flight = sum(1 for u in run.updates.values() if u.completed is None)
        if in_flight >= MAX_UPDATES_IN_FLIGHT:
            self._refuse(command, TooManyUpdatesError,
                         f"workflow {self.workflow_id!r} (run {run.run_id}) has {in_flight} updates in flight, the "
                         f"most one run takes (MAX_UPDATES_IN_FLIGHT = {MAX_UPDATES_IN_FLIGHT}): cannot {what}; "
                         f"try again once one of them completed")
            return
        if len(run.updates) >= MAX_UPDATES_PER_RUN:
            self._refuse(command, TooManyUpdatesError,
                         f"run {run.run_id} of workflow {self.workflow_id!r} has accepted {len(run.updates)} updates, "
                         f"the most one run takes (MAX_UPDATES_PER_RUN = {MAX_UPDATES_PER_RUN}): cannot {what}; "
                         f"let the workflow continue as new (workflow.continue_as_new) to take more")
            return
        # The run's own code (its build, with versioned deploys) says which updates it has.
        inst = self.instance
        if inst is None or inst.disposed:
            inst = self._rebuild_instance(len(self.history))
            if inst is None:  # the code cannot be rebuilt: the workflow is held (recorded), the update refused
                failure, self.load_failure = self.load_failure, None
                if failure is not None:
                    self._task_failed(failure)
                self._refuse(command, WorkflowStateError,
                             f"workflow {self.workflow_id!r} (run {run.run_id}) cannot run its code ({failure}): "
                             f"cannot {what}; it is held until it can")
                return
        hd = inst.defn.updates.get(b.update_name)
        if hd is None:
            names = ", ".join(sorted(inst.defn.updates)) or "none"
            self._refuse(command, UpdateNotFoundError,
                         f"workflow type {inst.defn.name!r} has no update {b.update_name!r} (its updates: {names}); "
                         f"check the update name")
            return
        rejected = self._validate(inst, hd, b)
        if rejected is not None:
            message, cause = rejected
            self._reject(command, b, message, cause)
            return
        if b.wait_for_stage == "ACCEPTED":
            self._reply(command, "UPDATE", run_id=run.run_id, status="ACCEPTED")
        self._record(WorkflowUpdateAccepted(b.update_id, b.update_name, list(b.args), reply_to=command.reply_to))

    def _h_update_with_start(self, command: Command, b: UpdateWithStart) -> None:
        run = self.run
        if run is None or run.status != RUNNING:
            # The start is answered by the update's replies (or by its own refusal, below).
            quiet = dataclasses.replace(command, reply_to=None)
            self._on_start(quiet, dataclasses.replace(b.start, wait_result=False))
            refusal = self._refusal
            if refusal is not None:
                self._reply(command, "ERROR", run_id=self.run_id, failure=refusal)
                return
        self._h_update(command, b.update)

    def _on_duplicate(self, command: Command) -> None:
        """A command id that recorded events, again: an update is de-duplicated by its update
        id (``_h_update``); anything else as every client command (``_commands.py``)."""
        b = command.body
        if isinstance(b, (UpdateWorkflow, UpdateWithStart)) and self._answered_in_earlier_run(command):
            return
        if isinstance(b, UpdateWorkflow):
            self._h_update(command, b)
        elif isinstance(b, UpdateWithStart):
            self._h_update_with_start(command, b)
        else:
            ClientCommands._on_duplicate(self, command)  # type: ignore[arg-type]

    def _answered_in_earlier_run(self, command: Command) -> bool:
        """A re-delivered update command whose events belong to a run that has ended since (it
        continued as new, or closed and another started): answered from that run's history,
        so the handler never runs again in the new run. Reads that run's events (rare)."""
        b = command.body
        update = b.update if isinstance(b, UpdateWithStart) else b
        assert isinstance(update, UpdateWorkflow)
        i = self._command_ids.get(command.command_id)
        run = self.run
        if i is None or run is None or self.history[i].run_id == run.run_id:
            return False
        then = self.history[i].run_id
        accepted = False
        for ev in self.history[i:]:
            if ev.run_id != then:
                break
            e = ev.body
            if isinstance(e, WorkflowUpdateAccepted) and e.update_id == update.update_id:
                accepted = True
            elif isinstance(e, WorkflowUpdateCompleted) and e.update_id == update.update_id:
                self._reply(command, "UPDATE", run_id=then, status="COMPLETED", result=e.result, failure=e.failure)
                return True
        if not accepted:
            return False  # its step recorded something else (a start whose update was refused): as new
        self._reply(command, "UPDATE", run_id=then, status="COMPLETED", failure=Failure(
            type=WorkflowStateError.__name__,
            message=(f"run {then} of workflow {self.workflow_id!r} ended before the handler of update "
                     f"{update.update_name!r} (id {update.update_id}) finished")))
        return True

    def _update_again(self, command: Command, b: UpdateWorkflow, run: Run, u: UpdateState) -> None:
        """An update id this run accepted already: its outcome, never a second run of the handler."""
        if u.update_name != b.update_name or list(u.args) != list(b.args):
            other = (f"update {u.update_name!r}" if u.update_name != b.update_name
                     else f"update {u.update_name!r} with other arguments")
            self._refuse(command, InvalidArgumentError,
                         f"update id {b.update_id!r} was already used in run {run.run_id} of workflow "
                         f"{self.workflow_id!r} (seq {u.accepted_seq}) by {other}; give each update its own id")
            return
        if u.completed is not None:
            c = u.completed
            self._reply(command, "UPDATE", run_id=run.run_id, status="COMPLETED", result=c.result, failure=c.failure)
            return
        if run.status != RUNNING:
            self._reply(command, "UPDATE", run_id=run.run_id, status="COMPLETED",
                        failure=self._unfinished(run, u))
            return
        if b.wait_for_stage == "ACCEPTED":
            self._reply(command, "UPDATE", run_id=run.run_id, status="ACCEPTED")
        reply_to = command.reply_to
        if not reply_to or (command.command_id == u.command_id and reply_to == u.reply_to):
            return  # the accepting sender: the completion is addressed to it already
        if len(u.waiters) < MAX_WAITERS:
            u.waiters[(command.command_id, reply_to)] = None

    def _validate(self, inst: WorkflowInstance, hd: Any, b: UpdateWorkflow) -> tuple[str, BaseException | None] | None:
        """Why the update is rejected (message, what was raised), or None to accept it."""
        what = f"update {b.update_name!r} (id {b.update_id}) of workflow {self.workflow_id!r}"
        hints = hints_of(hd.fn, skip_self=True)
        try:
            values = inst.converter.from_payloads(list(b.args), hints)
        except Exception as e:  # noqa: BLE001 - the sender's arguments
            return f"{what}: its arguments cannot be decoded for the handler: {type(e).__name__}: {e}", e
        sig = _signature(hd.fn)
        if sig is not None:
            try:
                sig.bind(*values)
            except TypeError as e:
                n = len(values)
                return (f"{what}: the handler takes {_takes(sig)} {b.update_name}{sig} but was sent {n} "
                        f"argument{'s' if n != 1 else ''}: {e}"), e
        if hd.validator is None:
            return None
        if inst.obj is None:
            return f"{what}: the workflow has not started running its code", None
        try:
            inst.query(hd.validator, list(b.args), hints)
        except Exception as e:  # noqa: BLE001 - the validator's rejection
            return f"{what} was rejected by its validator: {type(e).__name__}: {e}", e
        return None

    def _reject(self, command: Command, b: UpdateWorkflow, message: str, cause: BaseException | None) -> None:
        """Refuse with ``WorkflowUpdateFailedError`` carrying ``cause`` (nothing recorded)."""
        failure = Failure(type=WorkflowUpdateFailedError.__name__, message=message,
                          cause=exception_to_failure(cause, self.registry.converter) if cause is not None else None)
        self._refusal = failure
        if command.reply_to:
            self._reply(command, "ERROR", run_id=self.run_id, failure=failure)

    # ------------------------------------------------------------------ state
    def _on_update_accepted(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, WorkflowUpdateAccepted)
        run.updates.setdefault(b.update_id, UpdateState(
            b.update_id, b.update_name, list(b.args), ev.command_id or "", b.reply_to, ev.seq))  # set: a command recorded it

    def _on_update_completed(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, WorkflowUpdateCompleted)
        u = run.updates.get(b.update_id)
        if u is None or u.completed is not None:
            return
        u.completed = b
        waiters, u.waiters = u.waiters, {}
        if fx is not None:
            for cid, reply_to in self._senders(u, waiters):
                fx.append(SendReply(reply_to, Reply(cid, self.workflow_id, "UPDATE", run.run_id, "COMPLETED",
                                                    b.result, b.failure)))

    def _close_updates(self, run: Run, status: str, fx: list[Effect] | None) -> None:
        """The run closed: its updates in flight will never complete; their senders are told."""
        for u in run.updates.values():
            if u.completed is not None:
                continue
            waiters, u.waiters = u.waiters, {}
            if fx is not None:
                failure = self._unfinished(run, u, status)
                for cid, reply_to in self._senders(u, waiters):
                    fx.append(SendReply(reply_to, Reply(cid, self.workflow_id, "UPDATE", run.run_id, "COMPLETED",
                                                        None, failure)))

    @staticmethod
    def _senders(u: UpdateState, waiters: dict[tuple[str, str], None]) -> list[tuple[str, str]]:
        out = [(u.command_id, u.reply_to)] if u.reply_to else []
        out.extend(k for k in waiters if k not in out)
        return out

    def _unfinished(self, run: Run, u: UpdateState, status: str | None = None) -> Failure:
        return Failure(type=WorkflowStateError.__name__, message=(
            f"run {run.run_id} of workflow {self.workflow_id!r} ended {status or run.status} before the handler "
            f"of update {u.update_name!r} (id {u.update_id}) finished; wait for "
            f"workflow.all_handlers_finished before the workflow returns"))

    APPLY = {WorkflowUpdateAccepted: _on_update_accepted, WorkflowUpdateCompleted: _on_update_completed}
    HANDLERS = {UpdateWorkflow: _h_update, UpdateWithStart: _h_update_with_start}

