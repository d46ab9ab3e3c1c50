"""Hello world: a workflow that runs one activity and returns its result.

Run it in the time-skipping test environment::

    from aion.testing import WorkflowEnvironment
    from aion.examples.hello import Hello, ACTIVITIES, WORKFLOWS

    async with WorkflowEnvironment.start_time_skipping(
        workflows=WORKFLOWS, activities=ACTIVITIES
    ) as env:
        greeting = await env.client.execute_workflow(Hello.run, "World", id="hello-1")
        assert greeting == "Hello, World!"
"""

from __future__ import annotations

from datetime import timedelta

from aion import activity, workflow


@activity.defn
async def compose_greeting(name: str) -> str:
    """The activity: anything with side effects (I/O, clocks, randomness) belongs here."""
    return f"Hello, {name}!"


@workflow.defn
class Hello:
    """Greets ``name`` through one activity call."""

    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose_greeting,
            name,
            start_to_close_timeout=timedelta(seconds=10),
        )


#: What a worker registers to run this example.
WORKFLOWS = [Hello]
ACTIVITIES = [compose_greeting]

__all__ = ["ACTIVITIES", "WORKFLOWS", "Hello", "compose_greeting"]
