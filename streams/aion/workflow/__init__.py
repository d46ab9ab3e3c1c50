"""The workflow authoring API.

```python
from aion import workflow

@workflow.defn
class Order:
    @workflow.run
    async def run(self, order: dict) -> dict:
        charge_id = await workflow.execute_activity(charge, order["id"], start_to_close_timeout=timedelta(seconds=30))
        ...
```

Workflow code is plain ``async`` Python run by a deterministic event loop (``aion.runtime``):
``asyncio.gather``/``wait``/``as_completed``/task cancellation work and are deterministic;
``asyncio.sleep`` becomes a durable timer. Everything non-deterministic (I/O, clocks, random)
goes through activities or the helpers here (``now``, ``random``, ``uuid4``, ``side_effect``).
Log with ``workflow.logger``: it adds the run's ids and is silent while history is replayed.
"""

from ..exceptions import CancelledError
from ._api import (
    ActivityOptions,
    ChildOptions,
    ContinueAsNewError,
    NotInWorkflowError,
    all_handlers_finished,
    continue_as_new,
    deprecate_patch,
    execute_activity,
    execute_activity_method,
    execute_local_activity,
    execute_local_activity_method,
    execute_child_workflow,
    in_workflow,
    info,
    memo,
    memo_value,
    has_last_completion_result,
    get_last_completion_result,
    get_last_failure,
    is_replaying,
    now,
    patched,
    random,
    side_effect,
    signal_external,
    sleep,
    start_activity,
    start_activity_method,
    start_local_activity,
    start_local_activity_method,
    start_child_workflow,
    start_timer,
    time,
    timeout,
    get_external_workflow_handle,
    get_external_workflow_handle_for,
    upsert_search_attributes,
    uuid4,
    wait_condition,
)
from ._definition import WorkflowDefinition, defn, init, query, run, signal, update
from ._logger import WorkflowLoggerAdapter, logger
from ._unsafe import unsafe
from ._handles import ActivityHandle, ChildWorkflowHandle, ExternalWorkflowHandle, TimerHandle
from ._types import (
    ActivityCancellationType,
    FailurePolicy,
    IdReusePolicy,
    Info,
    ParentClosePolicy,
    ParentInfo,
    RetryPolicy,
)

__all__ = [
    "defn", "init", "run", "signal", "query", "update", "WorkflowDefinition", "all_handlers_finished",
    "execute_activity", "start_activity", "execute_activity_method", "start_activity_method",
    "execute_local_activity", "start_local_activity", "execute_local_activity_method",
    "start_local_activity_method", "sleep", "start_timer", "wait_condition", "timeout",
    "execute_child_workflow", "start_child_workflow", "continue_as_new", "info", "now", "time",
    "random", "uuid4", "side_effect", "patched", "deprecate_patch", "signal_external",
    "upsert_search_attributes", "memo", "memo_value", "has_last_completion_result",
    "get_last_completion_result", "get_last_failure", "in_workflow", "is_replaying", "logger", "WorkflowLoggerAdapter",
    "unsafe",
    "ActivityHandle", "TimerHandle", "ChildWorkflowHandle", "ExternalWorkflowHandle",
    "get_external_workflow_handle", "get_external_workflow_handle_for",
    "RetryPolicy", "ParentClosePolicy", "ActivityCancellationType", "IdReusePolicy",
    "FailurePolicy", "Info", "ParentInfo", "CancelledError",
    "ActivityOptions", "ChildOptions", "ContinueAsNewError", "NotInWorkflowError",
]
