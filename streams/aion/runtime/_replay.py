"""Replay a recorded history against the current code and report the first divergence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..exceptions import NondeterminismError
from ..model import Event

__all__ = ["ReplayResult", "replay_history"]


@dataclass
class ReplayResult:
    """The outcome of :func:`replay_history`. ``ok`` is False when the code diverged."""

    workflow_id: str
    events: int
    status: str | None
    divergence: NondeterminismError | None = None
    error: BaseException | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.error is None


def replay_history(registry: Any, events: Sequence[Event] | str) -> ReplayResult:
    """Replay ``events`` (or a JSON history file path) with the registry's current code."""
    raise NotImplementedError
