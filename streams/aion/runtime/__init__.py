"""The deterministic runtime: workflow history + a new command -> new events + effects.

No Kafka here; the engine (``aion.engine``) and the test environment (``aion.testing``) both
drive it through this contract::

    registry = Registry(workflows=[Order], activities=[charge])
    ex = WorkflowExecution.new(registry, "order-1")
    step = ex.handle(Command(...StartWorkflow...), now_ms)   # step.events, step.effects
    ex = WorkflowExecution.from_history(registry, "order-1", events)   # rebuild by replay
    reply = ex.query(Command(...QueryWorkflow...))           # never appends

See ``_execution.py`` for the step semantics, ``_instance.py`` for replay matching and
``_loop.py`` for the deterministic event loop.
"""

from . import effects
from ._execution import Step, WorkflowExecution
from ._registry import Registry
from ._replay import ReplayResult, replay_history

__all__ = ["Registry", "WorkflowExecution", "Step", "effects", "ReplayResult", "replay_history"]
