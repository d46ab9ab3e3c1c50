"""aion.examples.hello in the time-skipping environment."""

from __future__ import annotations

from aion.examples import hello
from aion.examples.hello import Hello


async def test_hello_returns_the_greeting(make_env) -> None:
    async with make_env(hello.WORKFLOWS, hello.ACTIVITIES) as env:
        result = await env.client.execute_workflow(Hello.run, "World", id="hello-1")
        assert result == "Hello, World!"

        handle = env.client.get_workflow_handle("hello-1")
        history = await handle.history()
        types = [e.type for e in history]
        assert types[0] == "WorkflowStarted" and types[-1] == "WorkflowCompleted"
        scheduled = [e.body for e in history if e.type == "ActivityScheduled"]
        assert [s.activity_type for s in scheduled] == ["compose_greeting"]
        assert types.index("ActivityScheduled") < types.index("ActivityCompleted") < types.index("WorkflowCompleted")
        assert [e.seq for e in history] == list(range(1, len(history) + 1))

        desc = await handle.describe()
        assert desc.status == "COMPLETED" and desc.workflow_type == "Hello" and desc.runs == 1
        assert env.replay("hello-1").ok


async def test_hello_module_exports_what_a_worker_registers() -> None:
    assert hello.WORKFLOWS == [Hello]
    assert hello.ACTIVITIES == [hello.compose_greeting]
    # An activity stays a plain function: callable directly in a unit test.
    assert await hello.compose_greeting("Ada") == "Hello, Ada!"
