"""Testing workflows in-process, with a clock that skips to the next timer.

```python
from aion.testing import WorkflowEnvironment

async def test_order() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Order], activities=[charge]) as env:
        handle = await env.client.start_workflow(Order.run, order, id="order-1")
        await handle.signal(Order.decide, "approve")
        assert await handle.query(Order.status) == "approved"
        assert (await handle.result())["status"] == "shipped"   # a week of timers: milliseconds
```

The environment drives the same runtime as the Kafka engine (:mod:`aion.runtime`); only the
transport (an in-memory log, a timer heap, in-process activities) and the clock differ.
"""

from ._activities import WORKER_IDENTITY
from ._activity_env import ActivityEnvironment
from ._checker import (
    CheckReport,
    EventLog,
    Expectation,
    InvariantViolationError,
    Violation,
    check_event_log,
    check_events_topic,
    read_event_log,
)
from ._client import TestClient, TestWorkflowHandle
from ._environment import EngineBugError, WorkflowEnvironment, WorkflowTaskFailedError

__all__ = [
    "WorkflowEnvironment",
    "ActivityEnvironment",
    "TestClient",
    "TestWorkflowHandle",
    "WorkflowTaskFailedError",
    "EngineBugError",
    "WORKER_IDENTITY",
    # invariants of a deployment's events topic (read from offset 0, independent of the engine)
    "check_events_topic",
    "check_event_log",
    "read_event_log",
    "EventLog",
    "Expectation",
    "CheckReport",
    "Violation",
    "InvariantViolationError",
]
