"""The activity worker: runs ``@activity.defn`` functions for a task queue, at most N at a time.

```python
from aion.common.settings import Settings
from aion.worker import ActivityWorker

worker = ActivityWorker(Settings.from_env(), activities=[charge, ship], task_queue="default", concurrency=50)
await worker.run()          # until worker.stop()
```

Or ``aion activity-worker --activities MODULE --task-queue default --concurrency N``.
"""

from ._activities import ActivityRegistrationError
from ._worker import ActivityWorker

__all__ = ["ActivityWorker", "ActivityRegistrationError"]
