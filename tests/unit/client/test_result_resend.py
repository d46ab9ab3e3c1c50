"""``handle.result()`` re-sends one GetResult with one command id (one waiter in the engine)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aion.client._handle import WorkflowHandle
from aion.client._replies import ReplyWaiter
from aion.converter import default_converter
from aion.model import Command, CommandBody, GetResult, Reply

conv = default_converter()


class FakeClient:
    """The transport a WorkflowHandle waits through; the RESULT comes after ``answer_after`` sends."""

    def __init__(self, answer_after: int) -> None:
        self.result_resend_interval = 0.01
        self.answer_after = answer_after
        self.sent: list[Command] = []
        self.forgotten: list[str] = []
        self.converter = conv

    def _command(self, workflow_id: str, body: CommandBody, *, reply: bool = True) -> Command:
        return Command(str(uuid.uuid4()), workflow_id, 0, body, reply_to="aion.replies:0")

    def new_waiter(self) -> ReplyWaiter:
        return ReplyWaiter(asyncio.get_running_loop())

    async def send(self, cmd: Command, waiter: ReplyWaiter | None = None, payloads: Any = ()) -> None:
        self.sent.append(cmd)
        if len(self.sent) == self.answer_after and waiter is not None:
            waiter.deliver(Reply(cmd.command_id, cmd.workflow_id, "RESULT", run_id="r1", status="COMPLETED",
                                 result=conv.to_payload(7)))

    def forget(self, command_id: str) -> None:
        self.forgotten.append(command_id)


async def test_result_resends_get_result_with_the_same_command_id() -> None:
    client = FakeClient(answer_after=4)
    handle = WorkflowHandle(client, "wf-1")  # type: ignore[arg-type]
    assert await handle.result(timeout=10) == 7
    assert len(client.sent) == 4 and all(isinstance(c.body, GetResult) for c in client.sent)
    assert len({c.command_id for c in client.sent}) == 1  # re-sends, not new waiters
    assert client.forgotten == [client.sent[0].command_id]
