"""``env.client``: the API of :class:`aion.client.Client`, talking to the in-process environment.

Same method names, arguments, return values and exceptions as the Kafka client: both are built on
:class:`aion.client._base.ClientBase` and :class:`~aion.client._base.WorkflowHandleBase` (name
resolution, commands, error mapping, result decoding, :class:`~aion.client.WorkflowDescription`),
so a test written against ``env.client`` reads like production code. What differs is the
transport (commands go to the environment's queue, replies come back from the runtime's
``SendReply`` effects) and that waiting for a result lets the environment skip time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence, Unpack, overload

from ..client._base import A, ClientBase, R, StartOptions, WorkflowHandleBase
from ..client._errors import RPCTimeoutError
from ..client._history import closes_workflow
from ..model import (ActivityTaskCancelled, ActivityTaskCompleted, ActivityTaskFailed, Command, CommandBody, Event,
                     GetResult, Payload, Reply)
from ._environment import RUN_CLOSED, Mailbox

if TYPE_CHECKING:
    from ..client._schedules import ScheduleHandle
    from ._environment import WorkflowEnvironment


class TestClient(ClientBase["TestWorkflowHandle[Any]"]):
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

    # ------------------------------------------------------------------ transport
    def _command(self, workflow_id: str, body: CommandBody, *, reply: bool = True) -> Command:
        return self.env.new_command(workflow_id, body, reply=reply)

    async def _ask(self, cmd: Command, payloads: Sequence[Payload], timeout: float) -> tuple[Reply, Mailbox]:
        box = Mailbox()
        self.env.send(cmd, box)
        return await asyncio.wait_for(box.get(), timeout), box

    def _forget(self, command_id: str) -> None:
        self.env.forget(command_id)

    async def _tell(self, cmd: Command, payloads: Sequence[Payload], *, what: str) -> None:
        body = cmd.body
        if isinstance(body, (ActivityTaskCompleted, ActivityTaskFailed, ActivityTaskCancelled)):
            self.env.settle_async_activity(cmd.workflow_id, body.run_id, body.activity_id, body.attempt)
        self.env.send(cmd)
        await asyncio.sleep(0)

    def _waiting(self) -> Any:
        return self.env.hold_skipping()

    async def _update_outcome(self, channel: Any, timeout: float | None) -> Reply:
        async def completed() -> Reply:
            while True:
                reply = await channel.get()
                if reply.kind == "ERROR" or (reply.kind == "UPDATE" and reply.status == "COMPLETED"):
                    return reply

        with self.env.hold_skipping():
            return await asyncio.wait_for(completed(), timeout)

    def _no_answer(self, cmd: Command, what: str, timeout: float) -> BaseException:
        return RPCTimeoutError(
            f"{what} for workflow {cmd.workflow_id!r}: no answer from the runtime within {timeout:.1f}s "
            f"(command {cmd.command_id}): the runtime did not reply to it"
        )

    def _new_handle(self, workflow_id: str, *, run_id: str | None, result_type: Any,
                    follow_latest: bool, result_waiter: Any = None) -> "TestWorkflowHandle":
        return TestWorkflowHandle(self, workflow_id, run_id=run_id, result_type=result_type,
                                  follow_latest=follow_latest)

    # Typed as Temporal's: ``start_workflow(Order.run, order, id=...)`` returns a
    # ``TestWorkflowHandle[R]`` whose ``result()`` is what ``Order.run`` returns (the implementation is
    # ClientBase's; a call with none or one argument is checked against the run method, one
    # with more is not).
    @overload
    async def start_workflow(self, workflow: Callable[[Any], Awaitable[R]], /, *, id: str,
                             **options: Unpack[StartOptions]) -> TestWorkflowHandle[R]: ...
    @overload
    async def start_workflow(self, workflow: Callable[[Any, A], Awaitable[R]], arg: A, /, *, id: str,
                             **options: Unpack[StartOptions]) -> TestWorkflowHandle[R]: ...
    @overload
    async def start_workflow(self, workflow: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, id: str,
                             **options: Unpack[StartOptions]) -> TestWorkflowHandle[R]: ...
    @overload
    async def start_workflow(self, workflow: str | type, /, *args: Any, id: str,
                             **options: Unpack[StartOptions]) -> TestWorkflowHandle[Any]: ...
    async def start_workflow(self, workflow: Any, *args: Any, **options: Any) -> TestWorkflowHandle[Any]:
        return await super().start_workflow(workflow, *args, **options)


    # ------------------------------------------------------------------ schedules
    async def create_schedule(self, schedule_id: str, **kwargs: Any) -> "ScheduleHandle":
        """As :meth:`aion.client.Client.create_schedule`: the schedule runs in the environment on
        its clock (``env.sleep(timedelta(hours=3))`` fires an hourly schedule three times)."""
        from ..client._schedules import create_schedule

        return await create_schedule(self, schedule_id, **kwargs)  # type: ignore[arg-type]

    def get_schedule_handle(self, schedule_id: str) -> "ScheduleHandle":
        """A handle to schedule ``schedule_id`` (pause, resume, update, trigger, delete, describe)."""
        from ..client._schedules import ScheduleHandle

        return ScheduleHandle(self, schedule_id)  # type: ignore[arg-type]


class TestWorkflowHandle(WorkflowHandleBase[TestClient, R]):
    """A handle to one workflow id in the environment; see :class:`aion.client.WorkflowHandle`."""

    __test__ = False

    # ------------------------------------------------------------------ result
    async def _result_replies(self, deadline: float | None, timeout: float | None) -> AsyncGenerator[Reply, None]:
        env = self.client.env
        box = Mailbox()
        env.watch_result(self.id, box)
        sent: list[str] = []
        try:
            with env.hold_skipping():
                while True:
                    self._send_get_result(box, sent)
                    reply = await self._next(box, deadline, timeout)
                    while reply.kind not in ("RESULT", "ERROR"):
                        if reply is RUN_CLOSED:
                            # Ask again: the runtime answers a closed run at once.
                            self._send_get_result(box, sent)
                        reply = await self._next(box, deadline, timeout)
                    yield reply  # asked again: ask again, the latest run now is the next one
        finally:
            env.unwatch_result(self.id, box)
            for cid in sent:
                env.forget(cid)

    def _send_get_result(self, box: Mailbox, sent: list[str]) -> None:
        cmd = self.client._command(self.id, GetResult(run_id=self._target_run))
        sent.append(cmd.command_id)
        self.client.env.send(cmd, box)

    async def _next(self, box: Mailbox, deadline: float | None, timeout: float | None) -> Reply:
        if deadline is None:
            return await box.get()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(box.get(), max(remaining, 0))
        except asyncio.TimeoutError:
            raise self._result_timeout(timeout) from None

    # ------------------------------------------------------------------ history
    async def history(self) -> list[Event]:
        """The events recorded so far (every run of this workflow id), in seq order."""
        await asyncio.sleep(0)
        return self.client.env.history(self.id)

    def _no_history(self) -> str:
        return f"workflow {self.id!r} has no history in the test environment: it was never started"

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
