"""``env.client``: the API of :class:`aion.client.Client`, talking to the in-process environment.

Same method names, arguments, return values and exceptions as the Kafka client (it shares its
name resolution, error mapping and :class:`~aion.client.WorkflowDescription`), so a test written
against ``env.client`` reads like production code. The differences are the transport (commands
go to the environment's queue, replies come back from the runtime's ``SendReply`` effects) and
that waiting for a result lets the environment skip time.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

from ..client._errors import QueryTimeoutError, WorkflowResultTimeoutError, error_from_reply
from ..client._history import WorkflowDescription, closes_workflow, describe
from ..client._names import handler_name, start_body, workflow_name
from ..exceptions import WorkflowFailureError, WorkflowNotFoundError
from ..model import (
    CancelWorkflow,
    Command,
    CommandBody,
    Event,
    GetResult,
    QueryWorkflow,
    Reply,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
)
from ._environment import RUN_CLOSED, Mailbox

if TYPE_CHECKING:
    from ._environment import WorkflowEnvironment

class TestClient:
    """The environment's client (``env.client``); see :class:`aion.client.Client` for the API."""

    __test__ = False  # not a pytest test class

    def __init__(self, env: "WorkflowEnvironment", *, rpc_timeout: float = 30.0) -> None:
        self.env = env
        self.converter = env.converter
        #: How long a start/signal/cancel/terminate waits for the runtime's answer (wall seconds).
        self.rpc_timeout = rpc_timeout

    @property
    def reply_to(self) -> str:
        from ._environment import REPLY_TO

        return REPLY_TO

    async def close(self) -> None:
        """Nothing to close (the environment owns the transport); here for API parity."""

    async def __aenter__(self) -> "TestClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests
    def _command(self, workflow_id: str, body: CommandBody, *, reply: bool = True) -> Command:
        return self.env.new_command(workflow_id, body, reply=reply)

    async def request(self, cmd: Command, *, what: str, timeout: float | None = None) -> Reply:
        """Send ``cmd`` and wait for its first answer; an ERROR answer raises the matching error."""
        box = Mailbox()
        self.env.send(cmd, box)
        try:
            reply = await asyncio.wait_for(box.get(), timeout if timeout is not None else self.rpc_timeout)
        except asyncio.TimeoutError:
            raise _no_answer(cmd, what, timeout if timeout is not None else self.rpc_timeout) from None
        finally:
            self.env.forget(cmd.command_id)
        if reply.kind == "ERROR":
            raise error_from_reply(reply, what)
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
        search_attributes: dict[str, str] | None,
        request_id: str | None,
    ) -> tuple[StartWorkflow, Any]:
        return start_body(
            self.converter, workflow, args, task_queue=task_queue, id_reuse_policy=id_reuse_policy,
            execution_timeout=execution_timeout, run_timeout=run_timeout,
            search_attributes=search_attributes, request_id=request_id, wait_result=True,
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
        search_attributes: dict[str, str] | None = None,
        request_id: str | None = None,
        result_type: Any = None,
    ) -> "TestWorkflowHandle":
        """Start a workflow (``Order.run``, ``Order`` or ``"Order"``); returns its handle once the
        start is recorded. Raises :class:`~aion.exceptions.WorkflowAlreadyStartedError` when the
        id is taken and the policy refuses."""
        body, hint = self._start_body(
            workflow, args, task_queue=task_queue, id_reuse_policy=id_reuse_policy,
            execution_timeout=execution_timeout, run_timeout=run_timeout,
            search_attributes=search_attributes, request_id=request_id,
        )
        reply = await self.request(self._command(id, body), what="start_workflow")
        return TestWorkflowHandle(self, id, run_id=reply.run_id,
                                  result_type=result_type if result_type is not None else hint)

    async def execute_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        result_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start a workflow and wait for its result (time skips while it waits)."""
        handle = await self.start_workflow(workflow, *args, id=id, **kwargs)
        return await handle.result(timeout=result_timeout)

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None,
                            result_type: Any = None) -> "TestWorkflowHandle":
        """A handle to an existing workflow. With ``run_id``, commands target that run only."""
        return TestWorkflowHandle(self, workflow_id, run_id=run_id, result_type=result_type,
                                  follow_latest=run_id is None)

    def get_workflow_handle_for(self, workflow: Any, workflow_id: str, *,
                                run_id: str | None = None) -> "TestWorkflowHandle":
        """Like :meth:`get_workflow_handle`, typed by the workflow's run method return hint."""
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
        search_attributes: dict[str, str] | None = None,
        request_id: str | None = None,
        result_type: Any = None,
    ) -> "TestWorkflowHandle":
        """Signal the workflow, starting it first when no run is open (one command)."""
        start, hint = self._start_body(
            workflow, args, task_queue=task_queue, id_reuse_policy=id_reuse_policy,
            execution_timeout=execution_timeout, run_timeout=run_timeout,
            search_attributes=search_attributes, request_id=request_id,
        )
        sname, _ = handler_name(signal, "signal")
        sargs = self.converter.to_payloads(list(signal_args))
        reply = await self.request(
            self._command(id, SignalWithStart(start=start, signal_name=sname, args=sargs)),
            what="signal_with_start")
        return TestWorkflowHandle(self, id, run_id=reply.run_id,
                                  result_type=result_type if result_type is not None else hint)

    async def signal_workflow(self, workflow_id: str, signal: Any, *args: Any, run_id: str | None = None) -> None:
        """Send a signal (also ``handle.signal``); returns once the runtime recorded it."""
        name, _ = handler_name(signal, "signal")
        payloads = self.converter.to_payloads(list(args))
        cmd = self._command(workflow_id, SignalWorkflow(name, payloads, signal_id=str(uuid.uuid4()), run_id=run_id))
        await self.request(cmd, what=f"signal {name!r}")


class TestWorkflowHandle:
    """A handle to one workflow id in the environment; see :class:`aion.client.WorkflowHandle`."""

    __test__ = False

    def __init__(
        self,
        client: TestClient,
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
        return f"TestWorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------------ result
    async def result(self, timeout: float | None = None, *, follow_runs: bool = True) -> Any:
        """Wait for the workflow to close and return its result; time skips meanwhile.

        Raises :class:`~aion.exceptions.WorkflowFailureError` (``status`` FAILED, CANCELLED,
        TERMINATED or TIMED_OUT, ``cause`` the failure chain) when it did not complete,
        :class:`~aion.client.WorkflowResultTimeoutError` after ``timeout`` wall seconds,
        :class:`~aion.testing.WorkflowTaskFailedError` when the workflow is held by a failed
        workflow task (``fail_fast``). With ``follow_runs`` a continue-as-new is followed.
        """
        env = self.client.env
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        box = Mailbox()
        env.watch_result(self.id, box)
        sent: list[str] = []
        try:
            with env.hold_skipping():
                while True:
                    cmd = self.client._command(self.id, GetResult(run_id=self._target_run))
                    sent.append(cmd.command_id)
                    env.send(cmd, box)
                    reply = await self._next(box, deadline, timeout)
                    while reply.kind not in ("RESULT", "ERROR"):
                        if reply is RUN_CLOSED:
                            # Ask again: the runtime answers a closed run at once.
                            cmd = self.client._command(self.id, GetResult(run_id=self._target_run))
                            sent.append(cmd.command_id)
                            env.send(cmd, box)
                        reply = await self._next(box, deadline, timeout)
                    if reply.kind == "ERROR":
                        raise error_from_reply(reply, "result")
                    if reply.status == "CONTINUED_AS_NEW" and follow_runs and self._target_run is None:
                        continue  # ask again: the latest run now is the next one
                    return self._decode_result(reply)
        finally:
            env.unwatch_result(self.id, box)
            for cid in sent:
                env.forget(cid)

    async def _next(self, box: Mailbox, deadline: float | None, timeout: float | None) -> Reply:
        if deadline is None:
            return await box.get()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(box.get(), max(remaining, 0))
        except asyncio.TimeoutError:
            raise WorkflowResultTimeoutError(
                f"workflow {self.id!r} did not close within {timeout:.1f}s; it may still be "
                f"running (handle.describe() tells)"
            ) from None

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
        if failure is not None and failure.message:
            message += f": {failure.message}"
        raise WorkflowFailureError(message, workflow_id=self.id, run_id=reply.run_id, status=status, failure=failure)

    # ------------------------------------------------------------------ commands
    async def signal(self, signal: Any, *args: Any) -> None:
        """Send a signal (``Order.decide`` or ``"decide"``); returns once it is recorded."""
        await self.client.signal_workflow(self.id, signal, *args, run_id=self._target_run)

    async def query(self, query: Any, *args: Any, timeout: float = 5.0, result_type: Any = None) -> Any:
        """Ask the workflow's live state; never recorded in the history."""
        name, hint = handler_name(query, "query")
        client = self.client
        payloads = client.converter.to_payloads(list(args))
        cmd = client._command(self.id, QueryWorkflow(name, payloads))
        box = Mailbox()
        client.env.send(cmd, box)
        try:
            reply = await asyncio.wait_for(box.get(), timeout)
        except asyncio.TimeoutError:
            raise QueryTimeoutError(
                f"query {name!r} of workflow {self.id!r}: no answer within {timeout:.1f}s"
            ) from None
        finally:
            client.env.forget(cmd.command_id)
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

    # ------------------------------------------------------------------ history
    async def history(self) -> list[Event]:
        """The events recorded so far (every run of this workflow id), in seq order."""
        await asyncio.sleep(0)
        return self.client.env.history(self.id)

    async def describe(self) -> WorkflowDescription:
        """Status, type, run id, start/close time and history length, from the events."""
        events = await self.history()
        if not events:
            raise WorkflowNotFoundError(
                f"workflow {self.id!r} has no history in the test environment: it was never started"
            )
        return describe(self.id, events)

    async def events(self, from_seq: int = 1, *, follow: bool = True, poll_timeout: float = 0.2) -> AsyncIterator[Event]:
        """The workflow's events from ``from_seq`` on. ``follow=True``: keeps yielding new events
        as they are recorded and ends after the event that closes the workflow."""
        env = self.client.env
        if not follow:
            for ev in env.history(self.id)[max(1, from_seq) - 1:]:
                yield ev
            return
        history = env.history(self.id)
        if history and closes_workflow(history[-1]) and len(history) < from_seq:
            return  # closed before from_seq: nothing more will come
        async for ev in env.follow(self.id, from_seq):
            yield ev
            if closes_workflow(ev):
                return


def _no_answer(cmd: Command, what: str, timeout: float) -> BaseException:
    from ..client._errors import RPCTimeoutError

    return RPCTimeoutError(
        f"{what} for workflow {cmd.workflow_id!r}: no answer from the runtime within {timeout:.1f}s "
        f"(command {cmd.command_id}): the runtime did not reply to it"
    )
