"""The client commands of a workflow execution: start, signal, signal-with-start, cancel,
terminate, get-result and query — their refusals, replies and result waiters.

De-duplication
--------------
A command whose ``command_id`` already produced events produces none: a repeated start, signal,
cancel or terminate is answered ``ACCEPTED`` again. But a client command whose id already
produced events and whose body differs from what that id recorded (another workflow type,
input or task queue than its ``WorkflowStarted``, another signal name or arguments than its
``SignalReceived``, a cancel where a termination was recorded, any client command on the id of
an activity report or timer fire ...) is not a re-delivery: it is refused with
``CommandIdReusedError`` naming the id, and the first command's effect stays. A ``GetResult``
records nothing and is answered (or waits) again.

Refusals
--------
A duplicate start per the id-reuse policy, an unknown workflow type, a signal/cancel/terminate/
result for an unknown or closed workflow, an unknown signal name, a signal (or
signal-with-start) whose arguments do not fit its handler (``_signals.py``): no event, and a
``SendReply(ERROR)`` whose failure ``type`` is the error class name
(``WorkflowAlreadyStartedError``, ``WorkflowNotFoundError``, ``SignalArgumentsError``, ...). A refused child start is
reported to the parent as a failed ``ChildWorkflowResult`` instead (not one refused for its
reused command id: the parent's own start with that id was taken). With nobody to answer,
``Step.refusal`` says why (the engine dead-letters the command with it).

Result waiters
--------------
A ``GetResult`` (or a start with ``wait_result``) on a running workflow leaves a waiter, keyed
by ``(command_id, reply_to)``, answered with ``RESULT`` when the run closes (a continue-as-new
keeps them for the next run). Waiters live in memory only (not in the history): a hand-over or
an eviction forgets them, which is why a waiting client re-sends its ``GetResult`` — with the
same command id, so the re-send finds its waiter and adds nothing. At most :data:`MAX_WAITERS`
are kept per workflow; past that a ``GetResult`` is refused with ``TooManyWaitersError``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..converter import hints_of
from ..exceptions import (
    InvalidArgumentError,
    QueryError,
    SignalArgumentsError,
    SignalNotFoundError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowTypeNotFoundError,
)
from ..model import (
    CancelWorkflow,
    ChildWorkflowResult,
    Command,
    Event,
    Failure,
    GetResult,
    Payload,
    QueryWorkflow,
    Reply,
    SignalReceived,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTaskFailed,
    WorkflowTerminated,
)
from ._run_ids import uuid5_url
from ._cron import cron_problem, next_cron_ms
from ._history_pages import HISTORY_QUERY, history_page
from ._signals import signal_args_problem
from ._versions import code_of, route_of, version_not_loaded
from ._state import CLOSE_STATUS, FAILED_STATUSES, RUNNING, Parts, Run
from .effects import SendCommand, SendReply

if TYPE_CHECKING:
    from ._instance import WorkflowInstance

log = logging.getLogger("aion.runtime")

#: The most result waiters (``GetResult`` senders, starts with ``wait_result``) one workflow
#: keeps in memory. One waiting ``handle.result()`` is one waiter however long it waits (it
#: re-sends its GetResult with the same command id); past the cap a GetResult is refused with
#: ``TooManyWaitersError`` instead of growing the engine's memory and the close's replies.
MAX_WAITERS = 1_000

#: The client commands whose re-used id is compared with what the id recorded.
_CLIENT_COMMANDS = (StartWorkflow, SignalWithStart, SignalWorkflow, CancelWorkflow, TerminateWorkflow)
#: The reason of the termination a TERMINATE_IF_RUNNING start records before its WorkflowStarted.
TERMINATED_BY_START = "terminated by a new start (TERMINATE_IF_RUNNING)"


@dataclass(frozen=True, slots=True)
class _Recorded:
    """What a command id's events say its command was (see ``WorkflowExecution._recorded_by``).

    ``kind``: ``start`` (a root ``WorkflowStarted``, with the ``SignalReceived`` of a
    signal-with-start), ``signal``, ``cancel``, ``terminate``, the type of the engine input it
    recorded (``TimerFired``, ``ActivityCompleted`` ...), or None when nothing says.
    """

    seq: int
    kind: str | None
    started: WorkflowStarted | None
    signal: SignalReceived | None
    #: Whether the step closed the run it started (a signal-with-start then records no signal).
    closed: bool = False


class ClientCommands(Parts):
    """The client-command room of :class:`~aion.runtime.WorkflowExecution` (see the module docs)."""

    _command_ids: dict[str, int]
    _start_runs: dict[str, str]
    _waiters: dict[tuple[str, str], None]
    _last_close: tuple[str, str, Payload | None, Failure | None] | None
    _chain_start: Event | None
    earlier: Callable[[int, int], Iterable[Event]] | None
    load_failure: BaseException | None

    if TYPE_CHECKING:
        @property
        def held(self) -> bool: ...

        def _rebuild_instance(self, upto: int, *, extend: bool = False) -> WorkflowInstance | None: ...

    # ------------------------------------------------------------------ replies
    def _reply(self, command: Command, kind: str, **kw: Any) -> None:
        if command.reply_to and self._fx is not None:
            self._fx.append(SendReply(command.reply_to, Reply(command.command_id, self.workflow_id, kind, **kw)))

    def _refuse(self, command: Command, error: type[BaseException] | str, message: str, *,
                notify_parent: bool = True) -> None:
        """Refuse ``command`` (no event): ``ERROR`` to its ``reply_to``, a failed child result to
        the parent of a refused child start (unless ``notify_parent`` is False), else nothing
        but ``Step.refusal`` (the engine dead-letters it with the reason). ``error`` is the class,
        or its name."""
        name = error if isinstance(error, str) else error.__name__
        failure = Failure(type=name, message=message)
        self._refusal = failure
        b = command.body
        start = b.start if isinstance(b, SignalWithStart) else b
        if command.reply_to:
            self._reply(command, "ERROR", run_id=self.run_id, failure=failure)
        elif (notify_parent and isinstance(start, StartWorkflow) and start.parent_workflow_id
              and self._fx is not None):
            self._fx.append(SendCommand(Command(
                f"{self.workflow_id}:refused:{command.command_id}", start.parent_workflow_id, self._now,
                ChildWorkflowResult(run_id=start.parent_run_id or "", child_workflow_id=self.workflow_id,
                                    outcome="FAILED", failure=failure))))
        else:
            log.info("workflow %s: refused %s (%s): %s", self.workflow_id, command.type, name, message)

    def _reply_result_or_wait(self, command: Command) -> None:
        run = self.run
        if run is not None and run.status not in (RUNNING, "CONTINUED_AS_NEW") and self._last_close is not None:
            rid, status, result, failure = self._last_close
            self._reply(command, "RESULT", run_id=rid, status=status, result=result, failure=failure)
        elif command.reply_to:
            key = (command.command_id, command.reply_to)
            if key in self._waiters:
                return  # a re-send of a waiting GetResult (or start): it waits already
            if len(self._waiters) >= MAX_WAITERS:
                self._refuse(command, "TooManyWaitersError",
                             f"workflow {self.workflow_id!r} already has {len(self._waiters)} result waiters, "
                             f"the most one workflow keeps (MAX_WAITERS = {MAX_WAITERS}); wait on fewer "
                             f"handles, or follow the workflow's events instead")
                return
            self._waiters[key] = None

    # ------------------------------------------------------------------ command handlers
    def _on_duplicate(self, command: Command) -> None:
        b = command.body
        if isinstance(b, GetResult):
            # Its id recorded events (a task failure found at load was recorded in its step),
            # but a GetResult itself records nothing: a re-send must still wait or be answered.
            self._h_get_result(command, b)
            return
        if isinstance(b, _CLIENT_COMMANDS):
            problem = self._reuse_problem(command)
            if problem is not None:
                self._refuse(command, "CommandIdReusedError", problem, notify_parent=False)
                return
        if isinstance(b, (StartWorkflow, SignalWithStart)):
            rid = self._start_runs.get(command.command_id, self.run_id)
            self._reply(command, "ACCEPTED", run_id=rid)
            start = b.start if isinstance(b, SignalWithStart) else b
            if start.wait_result:
                self._reply_result_or_wait(command)
        elif isinstance(b, (SignalWorkflow, CancelWorkflow, TerminateWorkflow)):
            self._reply(command, "ACCEPTED", run_id=self.run_id)

    def _recorded_by(self, command_id: str) -> _Recorded:
        """What the events of ``command_id`` (a known id) say its command was.

        A command's events are one contiguous run of the history from its first one: its own
        step, plus what a step cut short by a crash still owed (recorded under its id at the
        start of the next step). Only this run is read, and only for a repeated client command.
        """
        cs = self._chain_start
        if cs is not None and command_id not in self._command_ids and cs.command_id == command_id:
            # The chain's start, before the events held (a history loaded from the current run
            # on): its WorkflowStarted is all that is known of its step, so only the start is
            # compared (``closed``: no signal-with-start difference is claimed).
            assert isinstance(cs.body, WorkflowStarted)
            return _Recorded(cs.seq, "start", cs.body, None, True)
        h = self.history
        i = self._command_ids[command_id]
        seq = h[i].seq
        started: WorkflowStarted | None = None
        signal: SignalReceived | None = None
        closed = False
        kind: str | None = None
        while i < len(h) and h[i].command_id == command_id:
            b = h[i].body
            i += 1
            if started is not None:  # a start's step: its signal (signal-with-start), its close
                if isinstance(b, SignalReceived) and signal is None:
                    signal = b
                closed = closed or (type(b) in CLOSE_STATUS and not isinstance(b, WorkflowContinuedAsNew))
            elif isinstance(b, WorkflowStarted):
                # A run the step's code continued as new has a previous run: not a start command's.
                if b.previous_run_id is None:
                    started, kind = b, "start"
            elif isinstance(b, (WorkflowTaskFailed, WorkflowFailed)):
                continue  # a task failure found at load (and the failure it exhausts) precede any step
            elif isinstance(b, WorkflowTerminated) and b.reason == TERMINATED_BY_START:
                continue  # a TERMINATE_IF_RUNNING start ends the running run before its WorkflowStarted
            else:
                # The step's input comes first: what it is decides.
                if isinstance(b, SignalReceived):
                    signal, kind = b, "signal"
                elif isinstance(b, WorkflowCancelRequested):
                    kind = "cancel"
                elif isinstance(b, WorkflowTerminated):
                    kind = "terminate"
                else:
                    kind = type(b).__name__
                break
        return _Recorded(seq, kind, started, signal, closed)

    def _reuse_problem(self, command: Command) -> str | None:
        """Why a client command whose id already produced events is not a re-delivery of the
        command that produced them (None: it is, or nothing recorded says otherwise).

        Compared with what the id recorded: a start's workflow type, input and task queue (its
        ``WorkflowStarted``), a signal's name and arguments (its ``SignalReceived``; a
        signal-with-start recorded both, or only the signal when the workflow was running),
        a cancel request or a termination by kind. Fields that nothing recorded (a start's id
        reuse policy, a cancel's reason) are not compared.
        """
        rec = self._recorded_by(command.command_id)
        if rec.kind is None:
            return None  # only a task failure (or a start's termination of the run before): unknown
        b = command.body
        diffs: list[str] = []

        def signal_diffs(name: str, args: Sequence[Payload]) -> None:
            assert rec.signal is not None
            if rec.signal.signal_name != name:
                diffs.append(f"signal {rec.signal.signal_name!r} was recorded, this one is {name!r}")
            elif list(rec.signal.args) != list(args):
                diffs.append(f"signal {name!r} was recorded with other arguments")

        if isinstance(b, (StartWorkflow, SignalWithStart)):
            start = b.start if isinstance(b, SignalWithStart) else b
            if rec.kind == "start":
                st = rec.started
                assert st is not None
                if st.workflow_type != start.workflow_type:
                    diffs.append(f"workflow type {st.workflow_type!r} was started, this one is {start.workflow_type!r}")
                if list(st.input) != list(start.input):
                    diffs.append("the workflow was started with another input")
                if st.task_queue != start.task_queue:
                    diffs.append(f"task queue {st.task_queue!r} was recorded, this one is {start.task_queue!r}")
                if rec.signal is not None:  # a signal-with-start that started the workflow
                    if isinstance(b, SignalWithStart):
                        signal_diffs(b.signal_name, b.args)
                    else:
                        diffs.append(f"a signal-with-start (signal {rec.signal.signal_name!r}) was recorded, "
                                     f"this is a plain start")
                elif isinstance(b, SignalWithStart) and not rec.closed:
                    # (a signal-with-start whose run closed in its first activation records no signal)
                    diffs.append("a plain start was recorded, this is a signal-with-start")
            elif rec.kind == "signal" and isinstance(b, SignalWithStart):
                signal_diffs(b.signal_name, b.args)  # it was delivered to the running workflow
            else:
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is a {command.type}")
        elif isinstance(b, SignalWorkflow):
            if rec.kind == "signal":
                signal_diffs(b.signal_name, b.args)
            else:
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is signal {b.signal_name!r}")
        elif isinstance(b, CancelWorkflow):
            if rec.kind != "cancel":
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is a cancel request")
        else:
            assert isinstance(b, TerminateWorkflow)
            if rec.kind != "terminate":
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is a termination")
        if not diffs:
            return None
        return (f"command id {command.command_id!r} was already used on workflow {self.workflow_id!r} "
                f"(its events start at seq {rec.seq}) by another command: {'; '.join(diffs)}. This "
                f"{command.type} is not a re-delivery of it and is refused (the first command's effect "
                f"stays); give each distinct command its own id")

    def _on_start(self, command: Command, b: StartWorkflow, signal: SignalWithStart | None = None) -> None:
        run = self.run
        if b.request_id and run is not None and run.started.request_id == b.request_id:
            self._reply(command, "ACCEPTED", run_id=run.run_id)
            if b.wait_result:
                self._reply_result_or_wait(command)
            return
        build, code = route_of(self.registry, b.workflow_type)  # the build routed for the type (_versions.py)
        # A routed build this worker has not loaded: the run is recorded pinned to it, and held.
        defn = code.workflow(b.workflow_type) if code is not None else None
        if defn is None and code is not None:
            known = ", ".join(sorted(self.registry.workflows)) or "none"
            self._refuse(command, WorkflowTypeNotFoundError,
                         f"workflow type {b.workflow_type!r} is not registered (registered: {known}); "
                         f"check the type name or deploy an engine that registers it")
            return
        if signal is not None and defn is not None and signal.signal_name not in defn.signals:
            self._refuse(command, SignalNotFoundError, self._unknown_signal_msg(defn, signal.signal_name))
            return
        if signal is not None and defn is not None and (
                problem := self._signal_args_problem(defn, signal.signal_name, signal.args)):
            self._refuse(command, SignalArgumentsError, problem)  # neither the start nor the signal
            return
        if b.cron_schedule and (problem := cron_problem(b.cron_schedule)):
            self._refuse(command, InvalidArgumentError, f"cannot start workflow {self.workflow_id!r}: {problem}")
            return
        policy = b.id_reuse_policy
        if run is not None and run.status == RUNNING:
            if policy == "TERMINATE_IF_RUNNING":
                self._record(WorkflowTerminated(reason=TERMINATED_BY_START))
            else:
                self._refuse(command, WorkflowAlreadyStartedError,
                             f"workflow {self.workflow_id!r} is already running (run {run.run_id}); "
                             f"signal or query it, use another id, or start with "
                             f"id_reuse_policy=TERMINATE_IF_RUNNING")
                return
        elif run is not None:
            if policy == "REJECT_DUPLICATE" or (policy == "ALLOW_DUPLICATE_FAILED_ONLY" and run.status not in FAILED_STATUSES):
                self._refuse(command, WorkflowAlreadyStartedError,
                             f"workflow {self.workflow_id!r} already ran (last run {run.run_id} ended "
                             f"{run.status}) and id_reuse_policy={policy} forbids another run; use a new id")
                return
        run_id = uuid5_url(f"aion:{self.workflow_id}:{command.command_id}")
        self._reply(command, "ACCEPTED", run_id=run_id)
        self._record(
            WorkflowStarted(
                workflow_type=b.workflow_type,
                input=list(b.input),
                task_queue=b.task_queue,
                parent_workflow_id=b.parent_workflow_id,
                parent_run_id=b.parent_run_id,
                parent_close_policy=b.parent_close_policy,
                execution_timeout_ms=b.execution_timeout_ms,
                run_timeout_ms=b.run_timeout_ms,
                search_attributes=dict(b.search_attributes),
                search_attribute_types=dict(b.search_attribute_types),
                code_version=build,
                request_id=b.request_id,
                reply_to=command.reply_to if b.wait_result else None,
                retry_policy=b.retry_policy,
                cron_schedule=b.cron_schedule,
                memo=dict(b.memo),
                # A cron workflow's first run starts at the first fire time (Temporal's too).
                first_task_backoff_ms=(max(1, next_cron_ms(b.cron_schedule, self._now) - self._now)
                                       if b.cron_schedule else 0),
            ),
            run_id=run_id,
        )
        if signal is not None and self.run is not None and self.run.status == RUNNING:
            self._record(SignalReceived(signal.signal_name, list(signal.args), signal_id=command.command_id))

    def _h_start(self, command: Command, b: StartWorkflow) -> None:
        self._on_start(command, b)

    def _h_signal_with_start(self, command: Command, b: SignalWithStart) -> None:
        run = self.run
        if run is not None and run.status == RUNNING:
            self._h_signal(command, SignalWorkflow(b.signal_name, b.args, signal_id=command.command_id))
            return
        self._on_start(command, b.start, b)

    def _signal_args_problem(self, defn: Any, name: str, args: Sequence[Payload]) -> str | None:
        """Why ``args`` do not fit the handler of signal ``name`` (``_signals.py``), or None."""
        return signal_args_problem(defn.name, name, defn.signals[name].fn, args, self.registry.converter)

    @staticmethod
    def _unknown_signal_msg(defn: Any, name: str) -> str:
        known = ", ".join(sorted(defn.signals)) or "none"
        return (f"workflow type {defn.name!r} has no signal {name!r} (its signals: {known}); "
                f"check the signal name")

    def _open_run_or_refuse(self, command: Command, what: str, run_id: str | None) -> Run | None:
        run = self.run
        if run is None:
            self._refuse(command, WorkflowNotFoundError,
                         f"no workflow with id {self.workflow_id!r}: cannot {what}; check the id or start it first")
            return None
        if run_id and run_id != run.run_id:
            self._refuse(command, WorkflowNotFoundError,
                         f"run {run_id} of workflow {self.workflow_id!r} is not the current run "
                         f"({run.run_id}): cannot {what}")
            return None
        if run.status != RUNNING:
            self._refuse(command, WorkflowNotFoundError,
                         f"workflow {self.workflow_id!r} is not running (its last run {run.run_id} ended "
                         f"{run.status}): cannot {what}")
            return None
        return run

    def _h_signal(self, command: Command, b: SignalWorkflow) -> None:
        run = self._open_run_or_refuse(command, f"deliver signal {b.signal_name!r}", b.run_id)
        if run is None:
            return
        code = code_of(self.registry, run.started)  # the run's build: its signals (None: not loaded, held)
        defn = code.workflow(run.workflow_type) if code is not None else None
        if defn is not None and b.signal_name not in defn.signals:
            self._refuse(command, SignalNotFoundError, self._unknown_signal_msg(defn, b.signal_name))
            return
        if defn is not None and (problem := self._signal_args_problem(defn, b.signal_name, b.args)):
            self._refuse(command, SignalArgumentsError, problem)
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._record(SignalReceived(b.signal_name, list(b.args), signal_id=b.signal_id or command.command_id))

    def _h_cancel(self, command: Command, b: CancelWorkflow) -> None:
        run = self._open_run_or_refuse(command, "cancel it", b.run_id)
        if run is None:
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        if not run.cancel_requested:
            self._record(WorkflowCancelRequested(reason=b.reason))
            if run.first_task_at_ms is not None and run.status == RUNNING:
                # Its code has not started (a cron run before its fire time, a retry in its
                # backoff): nothing to unwind, the run ends cancelled now.
                self._record(WorkflowCancelled())

    def _h_terminate(self, command: Command, b: TerminateWorkflow) -> None:
        run = self._open_run_or_refuse(command, "terminate it", b.run_id)
        if run is None:
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._drop_instance()
        self._record(WorkflowTerminated(reason=b.reason))

    def _h_get_result(self, command: Command, b: GetResult) -> None:
        if self.run is None:
            self._refuse(command, WorkflowNotFoundError,
                         f"no workflow with id {self.workflow_id!r}: nothing to wait for; check the id")
            return
        self._reply_result_or_wait(command)

    def _h_query(self, command: Command, b: QueryWorkflow) -> None:  # pragma: no cover - handled in handle()
        pass

    # ------------------------------------------------------------------ queries
    def query(self, command: Command) -> Reply:
        """Answer a ``QueryWorkflow`` from the workflow's current state; never appends history."""
        b = command.body
        assert isinstance(b, QueryWorkflow)
        cid, wf = command.command_id, self.workflow_id

        def error(cls: type[BaseException], msg: str) -> Reply:
            return Reply(cid, wf, "ERROR", run_id=self.run_id, failure=Failure(cls.__name__, msg))

        run = self.run
        if run is None:
            return error(WorkflowNotFoundError, f"no workflow with id {wf!r}: nothing to query; check the id")
        if b.query_name == HISTORY_QUERY:  # the engine serves the history (``_history_pages.py``)
            try:
                return Reply(cid, wf, "QUERY", run_id=run.run_id, result=history_page(self.history, b.args, self.earlier))
            except ValueError as e:
                return error(QueryError, str(e))
        code = code_of(self.registry, run.started)  # the run's build (_versions.py)
        if code is None:
            return error(QueryError, f"cannot run query {b.query_name!r}: "
                                     f"{version_not_loaded(self.registry, wf, run.run_id, run.started)}")
        defn = code.workflow(run.workflow_type)
        if defn is None:
            return error(QueryError, f"workflow type {run.workflow_type!r} is not registered here: cannot run query {b.query_name!r}")
        hd = defn.queries.get(b.query_name)
        if hd is None:
            known = ", ".join(sorted(defn.queries)) or "none"
            return error(QueryError, f"workflow type {defn.name!r} has no query {b.query_name!r} (its queries: {known})")
        if self.held:
            why = self.load_failure or "a failed workflow task"
            return error(QueryError, f"workflow {wf!r} is held after a task failure ({why}); "
                                     f"queries are answered again once it resumes")
        inst = self.instance
        if inst is None or inst.disposed:
            saved = self.load_failure
            inst = self._rebuild_instance(len(self.history))
            if inst is None:
                failure, self.load_failure = self.load_failure, saved
                return error(QueryError, f"cannot rebuild workflow {wf!r} to answer the query: {failure}")
        if inst.obj is None:
            return error(QueryError, f"workflow {wf!r} has not started running its code yet")
        try:
            value = inst.query(hd.fn, list(b.args), hints_of(hd.fn, skip_self=True))
            payload = self.registry.converter.to_payload(value)
        except Exception as e:
            return error(QueryError, f"query {b.query_name!r} of {wf!r} raised {type(e).__name__}: {e}")
        return Reply(cid, wf, "QUERY", run_id=run.run_id, result=payload)

    HANDLERS = {
        StartWorkflow: _h_start,
        SignalWithStart: _h_signal_with_start,
        SignalWorkflow: _h_signal,
        CancelWorkflow: _h_cancel,
        TerminateWorkflow: _h_terminate,
        GetResult: _h_get_result,
        QueryWorkflow: _h_query,
    }


def _recorded_kind(rec: _Recorded) -> str:
    if rec.kind == "start":
        assert rec.started is not None
        return f"a start of workflow type {rec.started.workflow_type!r}"
    if rec.kind == "signal":
        assert rec.signal is not None
        return f"signal {rec.signal.signal_name!r}"
    if rec.kind == "cancel":
        return "a cancel request"
    if rec.kind == "terminate":
        return "a termination"
    return f"an engine input ({rec.kind})"
