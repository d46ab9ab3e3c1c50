"""WorkflowExecution: the per-workflow state machine (stub; being filled in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..model import Command, Event, Reply
from .effects import Effect

__all__ = ["Step", "WorkflowExecution"]


@dataclass
class Step:
    """What one command produced: new events (gapless seqs) and the effects to perform after
    those events are durable."""

    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)


class WorkflowExecution:
    @classmethod
    def new(cls, registry: Any, workflow_id: str) -> "WorkflowExecution":
        raise NotImplementedError

    @classmethod
    def from_history(cls, registry: Any, workflow_id: str, events: Sequence[Event]) -> "WorkflowExecution":
        raise NotImplementedError

    def handle(self, command: Command, now_ms: int) -> Step:
        raise NotImplementedError

    def query(self, command: Command) -> Reply:
        raise NotImplementedError
