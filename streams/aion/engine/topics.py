"""The deployment's Kafka topics — kept for code that imports them from here; they live in
:mod:`aion.common.topics` (names, idempotent creation, validation before running).

```python
from aion.common.topics import TopicNames, ensure_topics, validate_topics, TopicConfigError
names = TopicNames("aion")   # .commands .events .replies .dlq .activity_tasks("default")
ensure_topics(settings, task_queues=("default",))   # creates what is missing, returns created names
validate_topics(settings)    # raises TopicConfigError: events not compacted, partition mismatch, ...
```

``<prefix>.events`` is compacted (its key is ``{workflow_id, seq}``, so compaction only collapses
re-writes of the same event) and has as many partitions as ``<prefix>.commands``.
"""

from ..common.topics import (
    TopicAdminError,
    TopicAuthorizationError,
    TopicConfigError,
    TopicNames,
    ensure_topics,
    validate_topics,
)

__all__ = ["TopicNames", "TopicConfigError", "TopicAdminError", "TopicAuthorizationError", "ensure_topics",
           "validate_topics"]
