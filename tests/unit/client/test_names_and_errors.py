"""What users pass is turned into wire names; ERROR replies become typed exceptions."""

import asyncio

import pytest

from aion.client._errors import CommandRejectedError, error_from_reply
from aion.client._names import NotAWorkflowError, handler_name, workflow_name
from aion.client._replies import ReplyWaiter
from aion.examples.approval import Approval, ApprovalResult
from aion.examples.hello import Hello
from aion.exceptions import QueryError, WorkflowAlreadyStartedError, WorkflowNotFoundError
from aion.model import Failure, Reply


def test_workflow_names_and_result_hints() -> None:
    assert workflow_name(Hello.run) == ("Hello", str)
    assert workflow_name(Approval) == ("Approval", ApprovalResult)
    assert workflow_name("Anything") == ("Anything", None)
    with pytest.raises(NotAWorkflowError, match="not a workflow"):
        workflow_name(len)


def test_signal_and_query_names() -> None:
    assert handler_name(Approval.approve, "signal") == ("approve", None)
    assert handler_name(Approval.status, "query") == ("status", str)
    assert handler_name("decide", "signal") == ("decide", None)
    with pytest.raises(TypeError, match="not a signal handler"):
        handler_name(Approval.status, "signal")


def _error(kind: str, message: str = "boom") -> Reply:
    return Reply(command_id="c", workflow_id="wf-1", kind="ERROR", failure=Failure(type=kind, message=message))


def test_error_replies_map_to_the_named_aion_errors() -> None:
    exc = error_from_reply(_error("WorkflowAlreadyStartedError", "wf-1 is running"), "start_workflow")
    assert isinstance(exc, WorkflowAlreadyStartedError) and "wf-1 is running" in str(exc)
    assert isinstance(error_from_reply(_error("WorkflowNotFoundError"), "signal"), WorkflowNotFoundError)
    assert isinstance(error_from_reply(_error("QueryError"), "query"), QueryError)


def test_unknown_error_types_become_command_rejected_with_the_failure() -> None:
    exc = error_from_reply(_error("EngineError", "could not process"), "cancel")
    assert isinstance(exc, CommandRejectedError)
    assert "wf-1" in str(exc) and "EngineError" in str(exc) and exc.failure is not None


async def test_waiter_routes_acks_results_and_errors() -> None:
    loop = asyncio.get_running_loop()
    w = ReplyWaiter(loop)
    w.deliver(Reply("c", "wf", "ACCEPTED", run_id="r1"))
    assert w.ack.result().kind == "ACCEPTED" and not w.result.done()
    w.deliver(Reply("c", "wf", "RESULT", run_id="r1", status="COMPLETED"))
    assert w.result.result().status == "COMPLETED"

    e = ReplyWaiter(loop)
    e.deliver(_error("WorkflowNotFoundError"))
    assert e.ack.result().kind == "ERROR" and e.result.result().kind == "ERROR"
