"""Updates from the client: ``handle.execute_update``, ``handle.start_update`` and
update-with-start, shared by the Kafka client and the test environment's client.

The names follow Temporal's Python SDK: ``execute_update`` / ``start_update`` on a workflow
handle (``id=`` is the update id, ``wait_for_stage`` a :class:`WorkflowUpdateStage`), a
:class:`WorkflowUpdateHandle` whose ``result()`` waits for the handler's outcome, and
``client.execute_update_with_start_workflow`` / ``client.start_update_with_start_workflow``
with a :class:`WithStartWorkflowOperation` describing the start (``await
op.workflow_handle()`` afterwards). What the engine does with them: ``aion/runtime/_updates.py``.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Sequence, TypeVar

from ..exceptions import InvalidArgumentError, WorkflowUpdateFailedError, failure_to_exception
from ..model import Command, Payload, Reply, StartWorkflow, UpdateWithStart, UpdateWorkflow
from ..model.limits import command_problem
from ._errors import error_from_reply
from ._names import handler_name

if TYPE_CHECKING:
    from ._base import ClientBase

__all__ = ["WorkflowUpdateStage", "WorkflowUpdateHandle", "WithStartWorkflowOperation"]

H = TypeVar("H")


class WorkflowUpdateStage(str, enum.Enum):
    """When ``start_update`` returns: once the update is ``ACCEPTED`` (its validator passed and
    ``WorkflowUpdateAccepted`` is recorded) or once it is ``COMPLETED`` (its handler finished)."""

    ACCEPTED = "ACCEPTED"
    COMPLETED = "COMPLETED"


class WorkflowUpdateHandle:
    """An update that was accepted: ``await handle.result()`` is what its handler returned
    (``WorkflowUpdateFailedError`` for what it raised)."""

    def __init__(self, client: "ClientBase[Any]", workflow_id: str, update_id: str, name: str, *,
                 run_id: str | None, result_type: Any, command_id: str, channel: Any,
                 outcome: Reply | None) -> None:
        self._client = client
        self.workflow_id = workflow_id
        self.workflow_run_id = run_id
        self.id = update_id
        self.name = name
        self.result_type = result_type
        self._command_id = command_id
        self._channel = channel
        self._outcome = outcome

    def __repr__(self) -> str:
        return f"WorkflowUpdateHandle(workflow_id={self.workflow_id!r}, id={self.id!r}, name={self.name!r})"

    async def result(self, *, timeout: float | None = None) -> Any:
        """Wait for the handler's outcome (``timeout`` in seconds; None waits as long as it
        takes, in the test environment with time skipping)."""
        if self._outcome is None:
            try:
                self._outcome = await self._client._update_outcome(self._channel, timeout)
            except asyncio.TimeoutError:
                from ._errors import RPCTimeoutError

                raise RPCTimeoutError(
                    f"update {self.name!r} (id {self.id}) of workflow {self.workflow_id!r} did not complete within "
                    f"{timeout:.1f}s; it may still be running (its result comes with WorkflowUpdateCompleted in "
                    f"the history)") from None
            finally:
                self._client._forget(self._command_id)
        return decode_outcome(self._client, self._outcome, self.name, self.id, self.result_type)


def decode_outcome(client: "ClientBase[Any]", reply: Reply, name: str, update_id: str, result_type: Any) -> Any:
    """The value (or the raised WorkflowUpdateFailedError) of an UPDATE COMPLETED or ERROR reply."""
    if reply.kind == "ERROR":
        raise error_from_reply(reply, f"update {name!r}")
    if reply.failure is not None:
        f = reply.failure
        raise WorkflowUpdateFailedError(
            f"update {name!r} (id {update_id}) of workflow {reply.workflow_id!r} failed: {f.type}: {f.message}",
            update_id=update_id, update_name=name, cause=failure_to_exception(f, client.converter))
    if reply.result is None:
        return None
    return client.converter.from_payload(reply.result, result_type)


def update_body(client: "ClientBase[Any]", update: Any, args: Sequence[Any], *, id: str | None,
                run_id: str | None, stage: WorkflowUpdateStage | str) -> tuple[UpdateWorkflow, Any]:
    """The ``UpdateWorkflow`` for ``update`` (an ``@workflow.update`` method or its name) and the
    handler's return hint."""
    name, hint = handler_name(update, "update")
    stage = WorkflowUpdateStage(stage)
    payloads = client.converter.to_payloads(list(args))
    update_id = str(uuid.uuid4()) if id is None else id  # "" is refused by the limits, not replaced
    return UpdateWorkflow(update_id, name, payloads, run_id=run_id, wait_for_stage=stage.value), hint


async def send_update(client: "ClientBase[Any]", cmd: Command, payloads: Sequence[Payload], b: UpdateWorkflow,
                      hint: Any, result_type: Any, rpc_timeout: float | None) -> WorkflowUpdateHandle:
    """Send an update command; returns once its stage is reached (an ERROR raises)."""
    what = f"update {b.update_name!r}"
    problem = command_problem(cmd)
    if problem is not None:
        raise InvalidArgumentError(f"{what} for workflow {cmd.workflow_id[:200]!r}: {problem}")
    # The ACCEPTED stage answers within a step: the client's rpc timeout. COMPLETED waits for
    # the handler, as long as it takes unless told otherwise.
    timeout = rpc_timeout if rpc_timeout is not None or b.wait_for_stage == "COMPLETED" else client.rpc_timeout
    try:
        with client._waiting():
            reply, channel = await client._ask(cmd, payloads, timeout)  # type: ignore[arg-type]
    except asyncio.TimeoutError:
        client._forget(cmd.command_id)
        raise client._no_answer(cmd, what, timeout or 0.0) from None
    except BaseException:
        client._forget(cmd.command_id)
        raise
    if reply.kind == "ERROR":
        client._forget(cmd.command_id)
        raise error_from_reply(reply, what)
    done = reply if reply.status == "COMPLETED" else None
    if done is not None:
        client._forget(cmd.command_id)
    return WorkflowUpdateHandle(client, cmd.workflow_id, b.update_id, b.update_name, run_id=reply.run_id,
                                result_type=result_type if result_type is not None else hint,
                                command_id=cmd.command_id, channel=channel, outcome=done)


class WithStartWorkflowOperation(Generic[H]):
    """The start half of update-with-start (Temporal's name): the workflow and how to start it.

    ```python
    op = WithStartWorkflowOperation(Cart.run, id="cart-7", task_queue="default")
    count = await client.execute_update_with_start_workflow(Cart.add, "tea", start_workflow_operation=op)
    handle = await op.workflow_handle()
    ```

    A run that is open is updated (Temporal's ``id_conflict_policy=USE_EXISTING``); otherwise the
    workflow is started under ``id_reuse_policy``, then updated, in one command.
    """

    def __init__(self, workflow: Any, *args: Any, id: str, task_queue: str = "default",
                 id_reuse_policy: str = "ALLOW_DUPLICATE", execution_timeout: timedelta | float | None = None,
                 run_timeout: timedelta | float | None = None, search_attributes: Any = None,
                 request_id: str | None = None, result_type: Any = None) -> None:
        self.workflow = workflow
        self.args = args
        self.id = id
        self.task_queue = task_queue
        self.id_reuse_policy = id_reuse_policy
        self.execution_timeout = execution_timeout
        self.run_timeout = run_timeout
        self.search_attributes = search_attributes
        self.request_id = request_id or str(uuid.uuid4())
        self.result_type = result_type
        self._handle: Any = None
        self._done = asyncio.Event()
        self._error: BaseException | None = None

    def _start_body(self, client: "ClientBase[Any]") -> tuple[StartWorkflow, Any]:
        return client._start_body(
            self.workflow, self.args, task_queue=self.task_queue, id_reuse_policy=self.id_reuse_policy,
            execution_timeout=self.execution_timeout, run_timeout=self.run_timeout,
            search_attributes=self.search_attributes, request_id=self.request_id)

    async def workflow_handle(self) -> Any:
        """The workflow's handle, once the update-with-start was answered (raises what the start
        raised, when it was refused)."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._handle


async def update_with_start(client: "ClientBase[Any]", update: Any, args: Sequence[Any], *,
                            op: WithStartWorkflowOperation[Any], id: str | None, stage: WorkflowUpdateStage | str,
                            result_type: Any, rpc_timeout: float | None) -> WorkflowUpdateHandle:
    start, start_hint = op._start_body(client)
    b, hint = update_body(client, update, args, id=id, run_id=None, stage=stage)
    cmd = client._command(op.id, UpdateWithStart(start=start, update=b))
    try:
        uh = await send_update(client, cmd, [*start.input, *b.args], b, hint, result_type, rpc_timeout)
    except BaseException as e:
        if isinstance(e, WorkflowUpdateFailedError):  # the start stands; only the update was rejected
            op._handle = client._new_handle(op.id, run_id=None, follow_latest=True,
                                            result_type=op.result_type if op.result_type is not None else start_hint)
        else:
            op._error = e
        op._done.set()
        raise
    op._handle = client._new_handle(op.id, run_id=uh.workflow_run_id, follow_latest=True,
                                    result_type=op.result_type if op.result_type is not None else start_hint)
    op._done.set()
    return uh
