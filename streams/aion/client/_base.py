"""What the Kafka client and the test environment's client (``env.client``) share.

Both build the same commands, hand out handles with the same API and turn replies into results
and typed exceptions the same way; they differ only in how a command travels and how its replies
come back. :class:`ClientBase` holds the public workflow methods over a small transport
(:meth:`ClientBase._command`, :meth:`ClientBase._ask`, :meth:`ClientBase._forget`, ...), and
:class:`WorkflowHandleBase` the handle logic over :meth:`WorkflowHandleBase._result_replies`
(how a handle waits for the workflow to close), ``history()`` and ``events()``. Keeping one copy
keeps the two APIs from drifting apart: a test written against ``env.client`` must behave like
production code.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, aclosing, nullcontext
from datetime import timedelta
from typing import (Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Generic, Self, Sequence, TypedDict,
                    TypeVar, Unpack, overload)

from ..exceptions import InvalidArgumentError, WorkflowFailureError, WorkflowNotFoundError
from ..model import (
    CancelWorkflow,
    Command,
    CommandBody,
    Event,
    PauseWorkflow,
    ReopenWorkflow,
    Payload,
    QueryWorkflow,
    ResumeWorkflow,
    Reply,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
)
from ..model.limits import command_problem
from ._async_activity import AsyncActivityHandle
from ._errors import QueryTimeoutError, WorkflowResultTimeoutError, error_from_reply
from ._history import WorkflowDescription, describe
from ._names import handler_name, start_body, workflow_name
from ._updates import (
    WithStartWorkflowOperation,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
    send_update,
    update_body,
    update_with_start,
)

H = TypeVar("H", bound="WorkflowHandleBase[Any, Any]")
C = TypeVar("C", bound="ClientBase[Any]")
R = TypeVar("R")  # a workflow's result type
A = TypeVar("A")  # the type of a workflow's one argument


class StartOptions(TypedDict, total=False):
    """The options of ``start_workflow`` after ``id`` (for the typed overloads; see there)."""

    task_queue: str
    id_reuse_policy: str
    execution_timeout: timedelta | float | None
    run_timeout: timedelta | float | None
    search_attributes: Any
    request_id: str | None
    result_type: Any
    retry_policy: Any
    cron_schedule: str
    memo: dict[str, Any] | None


class ExecuteOptions(StartOptions, total=False):
    """The options of ``execute_workflow`` after ``id``."""

    result_timeout: float | None



class ClientBase(ABC, Generic[H]):
    """Starts, signals and hands out handles; subclasses supply the transport.

    A subclass sets ``converter`` and ``rpc_timeout`` and implements :meth:`_command`,
    :meth:`_ask`, :meth:`_forget`, :meth:`_no_answer`, :meth:`_new_handle` and :meth:`close`.
    """

    converter: Any
    #: How long a start/signal/cancel/terminate waits for its answer (seconds).
    rpc_timeout: float
    #: Whether the result of a started workflow comes back to the start command's own
    #: registration (the Kafka engine sends the RESULT to the start's ``reply_to``), so the new
    #: handle keeps it; otherwise ``result()`` asks with GetResult.
    _result_follows_start: bool = False
    #: Appended to a query's timeout message: what the user may do about it.
    _query_timeout_hint: str = ""

    # ------------------------------------------------------------------ transport
    @abstractmethod
    def _command(self, workflow_id: str, body: CommandBody, *, reply: bool = True) -> Command:
        """A new command for ``workflow_id`` whose replies come back to this client."""

    @abstractmethod
    async def _ask(self, cmd: Command, payloads: Sequence[Payload], timeout: float) -> tuple[Reply, Any]:
        """Send ``cmd`` and wait up to ``timeout`` seconds for its first answer.

        Returns the answer and what further replies to ``cmd`` arrive on (they keep arriving
        until :meth:`_forget`); raises :class:`asyncio.TimeoutError` when none came in time.
        """

    @abstractmethod
    def _forget(self, command_id: str) -> None:
        """Stop routing replies to ``command_id`` here."""

    @abstractmethod
    def _no_answer(self, cmd: Command, what: str, timeout: float) -> BaseException:
        """The error for ``cmd`` getting no answer within ``timeout`` seconds."""

    @abstractmethod
    def _new_handle(self, workflow_id: str, *, run_id: str | None, result_type: Any,
                    follow_latest: bool, result_waiter: Any = None) -> H:
        """This client's handle (``result_waiter``: what :meth:`_ask` returned for its start)."""

    @abstractmethod
    async def close(self) -> None:
        """Release what the client holds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests
    async def _call(self, cmd: Command, payloads: Sequence[Payload] = (), *, what: str,
                    timeout: float | None = None, keep: bool = False) -> tuple[Reply, Any]:
        """Send ``cmd``, wait for its first answer and raise the matching error for an ERROR.

        With ``keep`` the command stays registered and its replies' channel is returned too.
        A command outside the limits of ``aion.model.limits`` raises
        :class:`~aion.exceptions.InvalidArgumentError` here, before it is sent.
        """
        problem = command_problem(cmd)
        if problem is not None:
            raise InvalidArgumentError(f"{what} for workflow {cmd.workflow_id[:200]!r}: {problem}")
        limit = self.rpc_timeout if timeout is None else timeout
        try:
            reply, channel = await self._ask(cmd, payloads, limit)
        except asyncio.TimeoutError:
            self._forget(cmd.command_id)
            raise self._no_answer(cmd, what, limit) from None
        except BaseException:
            self._forget(cmd.command_id)
            raise
        if reply.kind == "ERROR" or not keep:
            self._forget(cmd.command_id)
        if reply.kind == "ERROR":
            raise error_from_reply(reply, what)
        return reply, channel if keep else None

    async def request(self, cmd: Command, payloads: Sequence[Payload] = (), *, what: str,
                      timeout: float | None = None) -> Reply:
        """Send ``cmd`` and wait for its first answer; an ERROR answer raises the matching error."""
        reply, _ = await self._call(cmd, payloads, what=what, timeout=timeout)
        return reply

    # ------------------------------------------------------------------ workflows
    def _start_body(
        self,
        workflow: Any,
        args: Sequence[Any],
        *,
        task_queue: str,
        id_reuse_policy: str,
        execution_timeout: timedelta | float | None,
        run_timeout: timedelta | float | None,
        search_attributes: Any,
        request_id: str | None,
        retry_policy: Any = None,
        cron_schedule: str = "",
        memo: dict[str, Any] | None = None,
    ) -> tuple[StartWorkflow, Any]:
        return start_body(
            self.converter, workflow, args, task_queue=task_queue, id_reuse_policy=id_reuse_policy,
            execution_timeout=execution_timeout, run_timeout=run_timeout,
            search_attributes=search_attributes, request_id=request_id, wait_result=True,
            retry_policy=retry_policy, cron_schedule=cron_schedule, memo=memo,
        )

    async def _started(self, cmd: Command, payloads: Sequence[Payload], what: str, *,
                     result_type: Any, hint: Any) -> H:
        reply, waiter = await self._call(cmd, payloads, what=what, keep=self._result_follows_start)
        return self._new_handle(
            cmd.workflow_id, run_id=reply.run_id, result_type=result_type if result_type is not None else hint,
            follow_latest=True, result_waiter=waiter,
        )

    async def start_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        task_queue: str = "default",
        id_reuse_policy: str = "ALLOW_DUPLICATE",
        execution_timeout: timedelta | float | None = None,
        run_timeout: timedelta | float | None = None,
        search_attributes: Any = None,
        request_id: str | None = None,
        result_type: Any = None,
        retry_policy: Any = None,
        cron_schedule: str = "",
        memo: dict[str, Any] | None = None,
    ) -> H:
        """Start a workflow (``Order.run``, ``Order`` or ``"Order"``) and return its handle once
        the start is recorded.

        Raises :class:`~aion.exceptions.WorkflowAlreadyStartedError` when the id is taken and the
        policy refuses; the Kafka client raises :class:`~aion.exceptions.PayloadTooLargeError`
        before sending an oversized input. Retrying with the same ``request_id`` is idempotent.

        As in Temporal: ``retry_policy`` (an ``aion.RetryPolicy``) retries a failed run as a new
        run of the same id (``handle.result()`` waits for the last one); ``cron_schedule`` (5
        cron fields or ``@daily``..., UTC unless prefixed ``CRON_TZ=<zone>``) runs the workflow
        at each fire time, the first run included, until it is cancelled or terminated;
        ``memo`` is returned by ``describe().memo`` and ``workflow.memo()``.
        """
        body, hint = self._start_body(
            workflow, args, task_queue=task_queue, id_reuse_policy=id_reuse_policy,
            execution_timeout=execution_timeout, run_timeout=run_timeout,
            search_attributes=search_attributes, request_id=request_id,
            retry_policy=retry_policy, cron_schedule=cron_schedule, memo=memo,
        )
        return await self._started(self._command(id, body), body.input, "start_workflow",
                                 result_type=result_type, hint=hint)

    # Typed as Temporal's: ``execute_workflow(Order.run, order, id=...)`` returns what
    # ``Order.run`` returns (with none or one argument, the call is checked against the run
    # method's parameters; two or more are not checked).
    @overload
    async def execute_workflow(self, workflow: Callable[[Any], Awaitable[R]], /, *, id: str,
                               **options: Unpack[ExecuteOptions]) -> R: ...
    @overload
    async def execute_workflow(self, workflow: Callable[[Any, A], Awaitable[R]], arg: A, /, *, id: str,
                               **options: Unpack[ExecuteOptions]) -> R: ...
    @overload
    async def execute_workflow(self, workflow: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, id: str,
                               **options: Unpack[ExecuteOptions]) -> R: ...
    @overload
    async def execute_workflow(self, workflow: str | type, /, *args: Any, id: str,
                               **options: Unpack[ExecuteOptions]) -> Any: ...
    async def execute_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        result_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start a workflow and wait for its result (see :meth:`start_workflow`,
        ``handle.result``; in the test environment time skips while it waits)."""
        handle = await self.start_workflow(workflow, *args, id=id, **kwargs)
        return await handle.result(timeout=result_timeout)

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None, result_type: Any = None) -> H:
        """A handle to an existing workflow. With ``run_id``, commands target that run only."""
        return self._new_handle(workflow_id, run_id=run_id, result_type=result_type,
                                follow_latest=run_id is None)

    def get_workflow_handle_for(self, workflow: Any, workflow_id: str, *, run_id: str | None = None) -> H:
        """Like :meth:`get_workflow_handle`, typed by the workflow (its result decodes with the
        run method's return hint)."""
        _name, hint = workflow_name(workflow)
        return self.get_workflow_handle(workflow_id, run_id=run_id, result_type=hint)

    async def signal_with_start(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        signal: Any,
        signal_args: Sequence[Any] = (),
        task_queue: str = "default",
        id_reuse_policy: str = "ALLOW_DUPLICATE",
        execution_timeout: timedelta | float | None = None,
        run_timeout: timedelta | float | None = None,
        search_attributes: Any = None,
        request_id: str | None = None,
        result_type: Any = None,
    ) -> H:
        """Signal the workflow, starting it first when no run is open (one atomic command)."""
        start, hint = self._start_body(
            workflow, args, task_queue=task_queue, id_reuse_policy=id_reuse_policy,
            execution_timeout=execution_timeout, run_timeout=run_timeout,
            search_attributes=search_attributes, request_id=request_id,
        )
        sname, _ = handler_name(signal, "signal")
        sargs = self.converter.to_payloads(list(signal_args))
        cmd = self._command(id, SignalWithStart(start=start, signal_name=sname, args=sargs))
        return await self._started(cmd, [*start.input, *sargs], "signal_with_start",
                                 result_type=result_type, hint=hint)

    def get_async_activity_handle(self, *, task_token: bytes | None = None, **ids: Any) -> AsyncActivityHandle:
        """A handle that reports the outcome of an attempt that called
        ``activity.raise_complete_async()``; ``task_token`` is its ``activity.info().task_token``."""
        if task_token is None:
            raise TypeError(
                f"get_async_activity_handle needs task_token= (activity.info().task_token); "
                f"naming the activity by {', '.join(sorted(ids)) or 'its ids'} is not supported: an "
                f"activity's ids do not say which attempt runs")
        return AsyncActivityHandle(self, task_token)

    async def _tell(self, cmd: Command, payloads: Sequence[Payload], *, what: str) -> None:
        """Send ``cmd``, which gets no answer (an activity attempt's news); returns once sent."""
        raise NotImplementedError

    async def signal_workflow(self, workflow_id: str, signal: Any, *args: Any, run_id: str | None = None) -> None:
        """Send a signal (also ``handle.signal``); returns once it is recorded."""
        name, _ = handler_name(signal, "signal")
        payloads = self.converter.to_payloads(list(args))
        cmd = self._command(workflow_id, SignalWorkflow(name, payloads, signal_id=str(uuid.uuid4()), run_id=run_id))
        await self.request(cmd, payloads, what=f"signal {name!r}")

    # ------------------------------------------------------------------ updates
    def _waiting(self) -> AbstractContextManager[Any]:
        """Entered while a request waits for a workflow's code (an update's completion): the
        test environment skips time meanwhile; the Kafka client just waits."""
        return nullcontext()

    async def _update_outcome(self, channel: Any, timeout: float | None) -> Reply:
        """The UPDATE COMPLETED (or ERROR) reply that arrives on ``channel`` (what :meth:`_ask`
        returned); raises :class:`asyncio.TimeoutError` after ``timeout`` seconds."""
        raise NotImplementedError

    async def execute_update_with_start_workflow(
        self, update: Any, *args: Any, start_workflow_operation: WithStartWorkflowOperation[Any],
        id: str | None = None, result_type: Any = None, rpc_timeout: float | None = None,
    ) -> Any:
        """Start the workflow of ``start_workflow_operation`` unless a run is open, update it,
        and return the update's result (Temporal's name; one command, so the update cannot miss
        the run). ``id`` is the update id (default: a new uuid). Raises
        :class:`~aion.exceptions.WorkflowUpdateFailedError` when the update is rejected or its
        handler raises (a workflow it started stays started)."""
        uh = await self.start_update_with_start_workflow(
            update, *args, start_workflow_operation=start_workflow_operation, id=id,
            wait_for_stage=WorkflowUpdateStage.COMPLETED, result_type=result_type, rpc_timeout=rpc_timeout)
        return await uh.result()

    async def start_update_with_start_workflow(
        self, update: Any, *args: Any, start_workflow_operation: WithStartWorkflowOperation[Any],
        wait_for_stage: WorkflowUpdateStage | str = WorkflowUpdateStage.ACCEPTED, id: str | None = None,
        result_type: Any = None, rpc_timeout: float | None = None,
    ) -> WorkflowUpdateHandle:
        """Like :meth:`execute_update_with_start_workflow`, returning a
        :class:`~aion.client.WorkflowUpdateHandle` once the update reaches ``wait_for_stage``."""
        return await update_with_start(self, update, args, op=start_workflow_operation, id=id, stage=wait_for_stage,
                                       result_type=result_type, rpc_timeout=rpc_timeout)



class WorkflowHandleBase(ABC, Generic[C, R]):
    """Talks to one workflow id.

    ``run_id``: the run this handle knows of (the one it started, or the one asked for). Commands
    go to the latest run unless the handle was made for a specific run
    (``client.get_workflow_handle(id, run_id=...)``).

    A subclass implements :meth:`_result_replies`, :meth:`_no_history`, :meth:`history` and
    :meth:`events`. ``R`` is the workflow's result type, what :meth:`result` returns (``Any``
    for a handle made from an id alone).
    """

    def __init__(
        self,
        client: C,
        workflow_id: str,
        *,
        run_id: str | None = None,
        result_type: Any = None,
        follow_latest: bool = True,
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        self.result_type = result_type
        self._target_run = None if follow_latest else run_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------------ result
    async def result(self, timeout: float | None = None, *, follow_runs: bool = True) -> R:
        """Wait for the workflow to close and return its result.

        Raises :class:`~aion.exceptions.WorkflowFailureError` (``status`` FAILED, CANCELLED,
        TERMINATED or TIMED_OUT, ``cause`` the rebuilt failure chain) when it did not complete,
        :class:`~aion.client.WorkflowResultTimeoutError` when ``timeout`` (wall) seconds pass
        first, :class:`~aion.exceptions.WorkflowNotFoundError` for an unknown id. With
        ``follow_runs`` a continue-as-new is followed to the final run.

        In the test environment time skips meanwhile, and
        :class:`~aion.testing.WorkflowTaskFailedError` is raised when the workflow is held by a
        failed workflow task (``fail_fast``).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with aclosing(self._result_replies(deadline, timeout)) as replies:
            async for reply in replies:
                if reply.kind == "ERROR":
                    raise error_from_reply(reply, "result")
                if reply.status == "CONTINUED_AS_NEW" and follow_runs and self._target_run is None:
                    continue  # the run continued as new: wait for the next one
                return self._decode_result(reply)
        raise AssertionError("the result replies ended without a result")  # pragma: no cover

    @abstractmethod
    def _result_replies(self, deadline: float | None, timeout: float | None) -> AsyncGenerator[Reply, None]:
        """The workflow's closing replies (RESULT or ERROR), one per run asked for.

        Yields the first run's (the latest's, or ``_target_run``'s); asking for the next one
        means that run continued as new and the then latest run is wanted. Raises
        :meth:`_result_timeout` when ``deadline`` (the loop's clock) passes first.
        """

    def _result_timeout(self, timeout: float | None) -> WorkflowResultTimeoutError:
        return WorkflowResultTimeoutError(
            f"workflow {self.id!r} did not close within {timeout:.1f}s; it may "
            f"still be running (handle.describe() tells)"
        )

    def _decode_result(self, reply: Reply) -> Any:
        if reply.run_id:
            self.run_id = reply.run_id
        status = reply.status or "COMPLETED"
        if status == "COMPLETED":
            if reply.result is None:
                return None
            return self.client.converter.from_payload(reply.result, self.result_type)
        failure = reply.failure
        message = f"workflow {self.id!r} (run {reply.run_id}) ended {status}"
        if failure is not None:  # as Python prints it: "KeyError: 'cents'"
            message += f": {failure.type}: {failure.message}" if failure.message else f": {failure.type}"
        raise WorkflowFailureError(message, workflow_id=self.id, run_id=reply.run_id, status=status, failure=failure)

    # ------------------------------------------------------------------ commands
    async def signal(self, signal: Any, *args: Any) -> None:
        """Send a signal (``Order.decide`` or ``"decide"``); returns once it is recorded."""
        await self.client.signal_workflow(self.id, signal, *args, run_id=self._target_run)

    async def query(self, query: Any, *args: Any, timeout: float = 5.0, result_type: Any = None) -> Any:
        """Ask the workflow's live state (answered by the runtime that holds it, never recorded).

        Raises :class:`~aion.exceptions.QueryError` (unknown query, handler failed, workflow
        not running), :class:`~aion.exceptions.WorkflowNotFoundError`, or
        :class:`~aion.client.QueryTimeoutError` after ``timeout`` seconds.
        """
        name, hint = handler_name(query, "query")
        client = self.client
        payloads = client.converter.to_payloads(list(args))
        cmd = client._command(self.id, QueryWorkflow(name, payloads))
        try:
            reply, _ = await client._ask(cmd, payloads, timeout)
        except asyncio.TimeoutError:
            raise QueryTimeoutError(
                f"query {name!r} of workflow {self.id!r}: no answer within {timeout:.1f}s"
                f"{client._query_timeout_hint}"
            ) from None
        finally:
            client._forget(cmd.command_id)
        if reply.kind == "ERROR":
            raise error_from_reply(reply, f"query {name!r}")
        if reply.result is None:
            return None
        return client.converter.from_payload(reply.result, result_type if result_type is not None else hint)

    async def cancel(self, reason: str = "") -> None:
        """Request cancellation: the workflow sees CancelledError and may compensate."""
        cmd = self.client._command(self.id, CancelWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="cancel")

    async def terminate(self, reason: str = "") -> None:
        """End the workflow at once; no workflow code runs after it."""
        cmd = self.client._command(self.id, TerminateWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="terminate")

    async def execute_update(self, update: Any, *args: Any, id: str | None = None, result_type: Any = None,
                             rpc_timeout: float | None = None) -> Any:
        """Run an update (``Order.add`` or ``"add"``) and return what its handler returns.

        ``id`` is the update id (default: a new uuid): an update id is run once per run, and the
        same id again gets the recorded outcome. Raises
        :class:`~aion.exceptions.WorkflowUpdateFailedError` when the validator rejects it or the
        handler raises (``cause`` is what was raised), :class:`~aion.exceptions.UpdateNotFoundError`
        for an unknown name, :class:`~aion.exceptions.WorkflowNotFoundError` when no run is open,
        :class:`~aion.exceptions.TooManyUpdatesError` past the limits. Waits as long as the
        handler takes unless ``rpc_timeout`` (seconds) is given.
        """
        uh = await self.start_update(update, *args, id=id, wait_for_stage=WorkflowUpdateStage.COMPLETED,
                                     result_type=result_type, rpc_timeout=rpc_timeout)
        return await uh.result()

    async def start_update(self, update: Any, *args: Any, wait_for_stage: WorkflowUpdateStage | str = WorkflowUpdateStage.ACCEPTED,
                           id: str | None = None, result_type: Any = None,
                           rpc_timeout: float | None = None) -> WorkflowUpdateHandle:
        """Send an update and return a :class:`~aion.client.WorkflowUpdateHandle` once it is
        accepted (``wait_for_stage=ACCEPTED``, within the client's rpc timeout) or completed;
        ``await update_handle.result()`` waits for the handler's outcome."""
        client = self.client
        b, hint = update_body(client, update, args, id=id, run_id=self._target_run, stage=wait_for_stage)
        cmd = client._command(self.id, b)
        return await send_update(client, cmd, b.args, b, hint, result_type, rpc_timeout)

    async def pause(self, reason: str = "") -> None:
        """Pause the running run: no activity attempt or child start is dispatched until
        :meth:`resume` (timers, signals and results are still recorded). Raises
        :class:`~aion.exceptions.WorkflowStateError` when it is paused already."""
        cmd = self.client._command(self.id, PauseWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="pause")

    async def resume(self, reason: str = "") -> None:
        """Resume a paused run: what it held is dispatched. Raises
        :class:`~aion.exceptions.WorkflowStateError` when it is not paused."""
        cmd = self.client._command(self.id, ResumeWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="resume")

    async def reopen(self, reason: str = "") -> None:
        """Reopen the latest run if it ended FAILED or CANCELLED: the same run goes on from
        before what closed it (activities that failed for good get another attempt, timers
        the cancel tore down are armed again); see the README's "Reopen". Raises
        :class:`~aion.exceptions.WorkflowStateError` naming the status for any other run."""
        cmd = self.client._command(self.id, ReopenWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="reopen")

    # ------------------------------------------------------------------ history
    @abstractmethod
    async def history(self) -> list[Event]:
        """The events recorded so far (every run of this workflow id), in seq order."""

    @abstractmethod
    def _no_history(self) -> str:
        """Why ``describe()`` found no history (the message of its WorkflowNotFoundError)."""

    async def describe(self) -> WorkflowDescription:
        """Status, type, run id, start/close time and history length, from the events."""
        events = await self.history()
        if not events:
            raise WorkflowNotFoundError(self._no_history())
        return describe(self.id, events, converter=self.client.converter)

    @abstractmethod
    def events(self, from_seq: int = 1, *, follow: bool = True, poll_timeout: float = 0.2) -> AsyncIterator[Event]:
        """The workflow's events from ``from_seq`` on, in seq order (see the subclasses)."""
