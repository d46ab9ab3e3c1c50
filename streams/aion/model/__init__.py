"""Event, command and id types: dataclasses mirroring the Avro schemas in ``schemas/``.

No Kafka here; ``aion.codec`` turns these into bytes and back.
"""

from ._commands import *  # noqa: F401,F403
from ._commands import COMMAND_TYPES, Command, CommandBody, Reply
from ._common import ActivityTimeouts, Failure, Payload, RetryPolicy, now_ms, payload_size
from ._events import *  # noqa: F401,F403
from ._events import (
    EVENT_TYPES, RUN_CLOSING_EVENTS, STATUS_OF_CLOSE, Event, EventBody, EventKey, reopen_ranges, taken_back,
    without_taken_back,
)
from ._tasks import TASK_TYPES, ActivityTask, CancelActivityTask, TaskBody
from ._deployments import DeploymentBody, DeploymentRecord, PackageDeployed, TypeRouted, route_key

__all__ = [
    "ActivityTimeouts", "Failure", "Payload", "RetryPolicy", "payload_size", "now_ms",
    "Event", "EventBody", "EventKey", "EVENT_TYPES", "RUN_CLOSING_EVENTS", "STATUS_OF_CLOSE",
    "reopen_ranges", "taken_back", "without_taken_back",
    "Command", "CommandBody", "Reply", "COMMAND_TYPES",
    "ActivityTask", "CancelActivityTask", "TaskBody", "TASK_TYPES",
    "DeploymentRecord", "DeploymentBody", "PackageDeployed", "TypeRouted", "route_key",
] + [t.__name__ for t in EVENT_TYPES] + [t.__name__ for t in COMMAND_TYPES]
