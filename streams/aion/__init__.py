"""Aion Streams: a durable workflow engine on Kafka.

```python
from aion import workflow, activity, RetryPolicy
```
"""

from . import activity, workflow
from .workflow import RetryPolicy

__all__ = ["workflow", "activity", "RetryPolicy"]
