"""The registry: which workflow and activity types this process runs, and how."""

from __future__ import annotations

import dataclasses
import uuid

from typing import Any, Iterable, Protocol

from ..activity._definition import ActivityDefinition
from ..converter import DataConverter, default_converter
from ..model.limits import HISTORY_FAIL_BYTES, HISTORY_FAIL_EVENTS, HISTORY_WARN_BYTES, HISTORY_WARN_EVENTS
from ..workflow._definition import WorkflowDefinition
from ..workflow._types import FailurePolicy

__all__ = ["Registry", "WorkflowCode"]


class WorkflowCode(Protocol):
    """What the runtime and the engine ask of the code they run: a :class:`Registry`, or an
    engine worker's :class:`~aion.runtime._versions.VersionedRegistry` (its own code plus the
    deployed builds). ``code_for``/``route`` pick the registry of one run's build; every other
    member is the registry's own."""

    @property
    def converter(self) -> DataConverter: ...
    @property
    def workflows(self) -> dict[str, WorkflowDefinition]: ...
    @property
    def activities(self) -> dict[str, ActivityDefinition]: ...
    @property
    def code_id(self) -> str: ...
    @property
    def history_limits(self) -> "HistoryLimits": ...
    @property
    def continue_as_new_suggested_after(self) -> int: ...

    def workflow(self, name: str) -> WorkflowDefinition | None: ...
    def activity(self, name: str) -> ActivityDefinition | None: ...
    def policy_for(self, workflow_type: str) -> FailurePolicy: ...
    def code_for(self, code_version: str) -> "WorkflowCode | None": ...
    def route(self, workflow_type: str) -> "tuple[str, WorkflowCode | None]": ...
    def why_not_loaded(self, build_id: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class HistoryLimits:
    """How long one run's history may grow (defaults like Temporal's).

    Past ``warn_events`` events or ``warn_bytes`` of payload, ``workflow.info()
    .continue_as_new_suggested`` turns true; past ``fail_events`` or ``fail_bytes`` the run is
    terminated (``WorkflowTerminated`` with the reason), so one runaway workflow cannot grow a
    partition's history without bound. Payload bytes approximate the encoded history size.
    """

    warn_events: int = HISTORY_WARN_EVENTS
    fail_events: int = HISTORY_FAIL_EVENTS
    warn_bytes: int = HISTORY_WARN_BYTES
    fail_bytes: int = HISTORY_FAIL_BYTES


class Registry:
    """Workflow and activity types by name, plus the runtime settings that apply to them.

    ``Registry(workflows=[Order, ...], activities=[charge, ...])`` takes ``@workflow.defn``
    classes and ``@activity.defn`` functions.

    - ``data_converter``: payload codec (default: the process default JSON converter).
    - ``failure_policy``: supervision for types whose ``@workflow.defn`` sets none.
    - ``history_limits``: per-run history thresholds (:class:`HistoryLimits`): past the
      warning ``workflow.info().continue_as_new_suggested`` turns true; past the limit the
      run is terminated. ``continue_as_new_suggested_after`` overrides the warning count.
    - ``code_id``: identifies the code this registry runs (default: a fresh random id, so every
      engine worker process — a restart, a deploy — counts as other code). A deadlocked
      workflow task records it and is not retried on the same code: see
      :class:`~aion.workflow.FailurePolicy` (``deadlock_timeout``).
    """

    def __init__(
        self,
        workflows: Iterable[Any] = (),
        activities: Iterable[Any] = (),
        *,
        data_converter: DataConverter | None = None,
        failure_policy: FailurePolicy | None = None,
        continue_as_new_suggested_after: int | None = None,
        history_limits: "HistoryLimits | None" = None,
        code_id: str | None = None,
    ) -> None:
        self._workflows: dict[str, WorkflowDefinition] = {}
        self._activities: dict[str, ActivityDefinition] = {}
        self._converter = data_converter
        self.failure_policy = failure_policy or FailurePolicy()
        self.code_id = code_id or uuid.uuid4().hex
        limits = history_limits or HistoryLimits()
        if continue_as_new_suggested_after is not None:
            limits = dataclasses.replace(limits, warn_events=continue_as_new_suggested_after)
        self.history_limits = limits
        self.continue_as_new_suggested_after = limits.warn_events
        for w in workflows:
            self.add_workflow(w)
        for a in activities:
            self.add_activity(a)

    @property
    def converter(self) -> DataConverter:
        return self._converter or default_converter()

    def add_workflow(self, cls: Any) -> WorkflowDefinition:
        d = cls if isinstance(cls, WorkflowDefinition) else WorkflowDefinition.of(cls)
        prev = self._workflows.get(d.name)
        if prev is not None and prev.cls is not d.cls:
            raise ValueError(
                f"two workflow classes are registered under the name {d.name!r} "
                f"({prev.cls.__qualname__} and {d.cls.__qualname__}): give one @workflow.defn(name=...)"
            )
        self._workflows[d.name] = d
        if prev is None:
            from ._determinism import warn_non_deterministic

            warn_non_deterministic(d.cls, d.name)  # random.random(), datetime.now() ... named
        return d

    def add_activity(self, fn: Any) -> ActivityDefinition:
        d = fn if isinstance(fn, ActivityDefinition) else ActivityDefinition.of(fn)
        if d.needs_instance():
            raise ValueError(
                f"activity {d.name!r} is a method taken from its class ({d.fn.__qualname__}): "
                f"register the method of an instance, e.g. activities=[obj.{d.fn.__name__}]"
            )
        prev = self._activities.get(d.name)
        # != rather than `is not`: each `obj.method` access makes a new (equal) bound method.
        if prev is not None and prev.fn != d.fn:
            raise ValueError(
                f"two activities are registered under the name {d.name!r}: give one @activity.defn(name=...)"
            )
        self._activities[d.name] = d
        return d

    def workflow(self, name: str) -> WorkflowDefinition | None:
        """The workflow type registered under ``name``, or None."""
        return self._workflows.get(name)

    def activity(self, name: str) -> ActivityDefinition | None:
        """The activity type registered under ``name``, or None."""
        return self._activities.get(name)

    @property
    def workflows(self) -> dict[str, WorkflowDefinition]:
        return dict(self._workflows)

    @property
    def activities(self) -> dict[str, ActivityDefinition]:
        return dict(self._activities)

    def code_for(self, code_version: str) -> "Registry | None":
        """The code of runs pinned to ``code_version``: a plain registry runs every version
        itself (an engine worker with deploys holds a ``VersionedRegistry``: ``_versions.py``)."""
        return self

    def route(self, workflow_type: str) -> "tuple[str, Registry | None]":
        """(build id, registry) new runs of ``workflow_type`` take: ("", self) here."""
        return "", self

    def why_not_loaded(self, build_id: str) -> str:
        """Why the build ``build_id`` is not loaded: a plain registry loads none."""
        return "not deployed"

    def policy_for(self, workflow_type: str) -> FailurePolicy:
        d = self._workflows.get(workflow_type)
        if d is not None and d.failure_policy is not None:
            return d.failure_policy
        return self.failure_policy
