"""The Aion client (confluent-kafka): start, signal, query, cancel and follow workflows.

```python
from aion.client import Client

async with await Client.connect("127.0.0.1:9092", topic_prefix="aion") as client:
    handle = await client.start_workflow(Order.run, order, id="order-1")
    await handle.signal(Order.decide, "approve")
    print(await handle.query(Order.status))
    print(await handle.execute_update(Order.add_item, "tea"))
    result = await handle.result(timeout=60)
    for event in await handle.history():
        print(event.seq, event.type)
```
"""

from ..common.access import KafkaAccessError, KafkaAuthenticationError, KafkaAuthorizationError, KafkaTLSError
from ..exceptions import (
    PayloadTooLargeError,
    QueryError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
)
from ._async_activity import AsyncActivityHandle
from ._client import Client
from ._errors import (
    CommandRejectedError,
    ConsumerGroupActiveError,
    ListFilterError,
    QueryTimeoutError,
    RPCTimeoutError,
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
    TopicMissingError,
    VisibilityTimeoutError,
    WorkflowResultTimeoutError,
)
from ._deployments import BuildInfo, Deployments, DeploymentsView
from ._events import EventConsumer, EventRecord
from ._handle import WorkflowHandle
from ._history import WorkflowDescription
from ._schedules import (
    ScheduleCatchUpPolicy,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    ScheduleSummary,
)

from ._updates import WithStartWorkflowOperation, WorkflowUpdateHandle, WorkflowUpdateStage
from ._visibility import WorkflowSummary

__all__ = [
    "Client",
    "AsyncActivityHandle",
    "Deployments",
    "BuildInfo",
    "DeploymentsView",
    "WorkflowHandle",
    "WorkflowUpdateHandle",
    "WorkflowUpdateStage",
    "WithStartWorkflowOperation",
    "WorkflowDescription",
    "WorkflowSummary",
    "ScheduleHandle",
    "ScheduleDescription",
    "ScheduleSummary",
    "ScheduleOverlapPolicy",
    "ScheduleCatchUpPolicy",
    "ScheduleAlreadyExistsError",
    "ScheduleNotFoundError",
    "EventConsumer",
    "EventRecord",
    "ConsumerGroupActiveError",
    "CommandRejectedError",
    "QueryTimeoutError",
    "RPCTimeoutError",
    "WorkflowResultTimeoutError",
    "VisibilityTimeoutError",
    "ListFilterError",
    "TopicMissingError",
    "KafkaAccessError",
    "KafkaAuthenticationError",
    "KafkaAuthorizationError",
    "KafkaTLSError",
    "PayloadTooLargeError",
    "QueryError",
    "WorkflowAlreadyStartedError",
    "WorkflowFailureError",
    "WorkflowNotFoundError",
]
