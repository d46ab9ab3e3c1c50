"""Activities that are methods of an object: registered bound, named by their class in workflows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.activity import ActivityDefinition
from aion.activity._context import ActivityContext, make_info
from aion.converter import default_converter
from aion.engine.settings import Settings
from aion.model import ActivityTask, ActivityTaskCompleted
from aion.runtime import Registry
from aion.testing import WorkflowEnvironment
from aion.worker import ActivityRegistrationError, ActivityWorker
from aion.worker._activities import registry_of
from aion.worker._heartbeat import HeartbeatThrottle
from aion.worker._worker import _Attempt

conv = default_converter()


class Greeter:
    """Holds what the activities need (a client, a pool, settings): here a greeting word."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls = 0

    @activity.defn
    async def greet(self, name: str) -> str:
        self.calls += 1
        return f"{self.word}, {name}!"

    @activity.defn(name="shout")
    def shout(self, text: str, times: int) -> str:  # sync: runs in a thread
        self.calls += 1
        return (text.upper() + " ") * times


@workflow.defn
class Greeting:
    @workflow.run
    async def run(self, name: str) -> list[str]:
        opts = {"start_to_close_timeout": timedelta(seconds=5)}
        shouting = workflow.start_activity_method(Greeter.shout, name, 2, **opts)
        greeting = await workflow.execute_activity_method(Greeter.greet, name, **opts)
        by_name = await workflow.execute_activity("greet", name, **opts)
        return [greeting, await shouting, by_name]


async def test_bound_methods_run_with_their_object_in_the_environment() -> None:
    g = Greeter("Hej")
    async with WorkflowEnvironment.start_time_skipping(workflows=[Greeting], activities=[g.greet, g.shout]) as env:
        out = await env.client.execute_workflow(Greeting.run, "Ada", id="greeting-1")
    assert out == ["Hej, Ada!", "ADA ADA ", "Hej, Ada!"]
    assert g.calls == 3


def test_the_definition_of_a_bound_method_calls_the_bound_method() -> None:
    g = Greeter("Hi")
    d = ActivityDefinition.of(g.greet)
    assert d.name == "greet" and d.is_async and d.fn == g.greet and not d.needs_instance()
    assert ActivityDefinition.of(Greeter.greet).needs_instance()
    assert ActivityDefinition.of(g.shout).name == "shout"


def test_a_method_taken_from_its_class_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match=r"activities=\[obj.greet\]"):
        Registry(activities=[Greeter.greet])
    with pytest.raises(ActivityRegistrationError, match=r"miss `self`.*activities=\[obj.shout\]"):
        registry_of([Greeter.shout])


def test_the_same_bound_method_twice_is_one_activity_two_objects_are_a_conflict() -> None:
    g, h = Greeter("a"), Greeter("b")
    assert set(registry_of([g.greet, g.greet])) == {"greet"}
    assert set(Registry(activities=[g.greet, g.greet]).activities) == {"greet"}
    with pytest.raises(ActivityRegistrationError, match="two different activities"):
        registry_of([g.greet, h.greet])
    with pytest.raises(ValueError, match="two activities"):
        Registry(activities=[g.greet, h.greet])


def test_the_worker_decodes_arguments_with_the_method_hints_without_self() -> None:
    reg = registry_of([Greeter("x").shout])["shout"]
    assert reg.arg_types == (str, int) and not reg.is_async


@pytest.mark.parametrize("name,args,expected", [("greet", ["Bo"], "Yo, Bo!"), ("shout", ["hi", 3], "HI HI HI ")])
async def test_the_worker_runs_a_bound_method_attempt(name: str, args: list, expected: str) -> None:
    g = Greeter("Yo")
    worker = ActivityWorker(Settings(), activities=[g.greet, g.shout], concurrency=2, ensure_topics=False)
    t = ActivityTask("wf-1", "run-1", "1", 1, name, conv.to_payloads(args), "default", "W", 0)
    info = make_info(workflow_id="wf-1", run_id="run-1", activity_id="1", activity_type=name, attempt=1)
    attempt = _Attempt(task=t, tp=("topic", 0), offset=0, ctx=ActivityContext(info), throttle=HeartbeatThrottle(1))
    body, outcome = await worker._execute(worker.activities[name], attempt)
    assert outcome == "completed", body
    assert isinstance(body, ActivityTaskCompleted) and conv.from_payload(body.result) == expected
    assert g.calls == 1
