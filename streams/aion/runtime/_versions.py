"""Which code runs a run: the build its ``WorkflowStarted.code_version`` names.

A plain :class:`~aion.runtime.Registry` runs every run itself (``code_for`` returns it,
whatever the version: a test environment, ``aion replay check`` against one candidate). An
engine worker with deploys holds a :class:`VersionedRegistry`: its own ``--workflows`` code for
runs recorded without a version (``code_version == ""``), and one Registry per loaded build.

- A new start (and a continue-as-new successor) takes the build routed for its type
  (:meth:`VersionedRegistry.route`) and records it in ``WorkflowStarted.code_version``.
- Every later step of that run — replay after a restart or a hand-over included — runs that
  build's code (:func:`code_of`); when this worker has not loaded it, the run is held with
  :class:`~aion.exceptions.VersionNotLoadedError` and never runs on other code.

No Kafka here: the engine feeds the builds and routes from the deployments topic
(``aion.engine._deployments``).
"""

from __future__ import annotations

from ..activity._definition import ActivityDefinition
from ..converter import DataConverter
from ..exceptions import VersionNotLoadedError
from ..model import WorkflowStarted
from ..workflow._definition import WorkflowDefinition
from ..workflow._types import FailurePolicy
from ._registry import HistoryLimits, WorkflowCode

__all__ = ["VersionedRegistry", "code_of", "route_of", "version_not_loaded"]


def code_of(registry: WorkflowCode, started: WorkflowStarted) -> WorkflowCode | None:
    """The registry whose code runs the run ``started`` began; None when it is not loaded."""
    return registry.code_for(started.code_version)


def route_of(registry: WorkflowCode, workflow_type: str) -> tuple[str, WorkflowCode | None]:
    """(build id, its registry or None) that a new run of ``workflow_type`` takes."""
    return registry.route(workflow_type)


def version_not_loaded(registry: WorkflowCode, workflow_id: str, run_id: str,
                       started: WorkflowStarted) -> VersionNotLoadedError:
    why = registry.why_not_loaded(started.code_version)
    return VersionNotLoadedError(
        f"run {run_id} of workflow {workflow_id!r} ({started.workflow_type}) is pinned to build "
        f"{started.code_version!r}, which this engine worker has not loaded ({why}); it is held, never run on "
        f"other code, and goes on once the build is loaded (aion deploy list / aion deploy create)")


class VersionedRegistry:
    """An engine worker's code: its own registry (``base``, the ``--workflows`` modules) plus
    the loaded builds and the routes. Everything but the version lookups is ``base``'s (a
    :class:`~aion.runtime._registry.WorkflowCode`, member by member, so the type checker sees it)."""

    def __init__(self, base: WorkflowCode) -> None:
        self.base = base
        self._builds: dict[str, WorkflowCode] = {}
        self._why: dict[str, str] = {}  # build id -> why it is not loaded
        self._routes: dict[str, str] = {}  # workflow type -> build id

    # ------------------------------------------------------------------ the base registry's own
    @property
    def converter(self) -> DataConverter:
        return self.base.converter

    @property
    def workflows(self) -> dict[str, WorkflowDefinition]:
        return self.base.workflows

    @property
    def activities(self) -> dict[str, ActivityDefinition]:
        return self.base.activities

    @property
    def code_id(self) -> str:
        return self.base.code_id

    @property
    def history_limits(self) -> HistoryLimits:
        return self.base.history_limits

    @property
    def continue_as_new_suggested_after(self) -> int:
        return self.base.continue_as_new_suggested_after

    def workflow(self, name: str) -> WorkflowDefinition | None:
        return self.base.workflow(name)

    def activity(self, name: str) -> ActivityDefinition | None:
        return self.base.activity(name)

    def policy_for(self, workflow_type: str) -> FailurePolicy:
        return self.base.policy_for(workflow_type)

    # ------------------------------------------------------------------ lookups
    def code_for(self, code_version: str) -> WorkflowCode | None:
        if not code_version:
            return self.base
        return self._builds.get(code_version)

    def route(self, workflow_type: str) -> tuple[str, WorkflowCode | None]:
        build = self._routes.get(workflow_type, "")
        if not build:
            return "", self.base
        return build, self._builds.get(build)

    def why_not_loaded(self, build_id: str) -> str:
        return self._why.get(build_id, "not deployed, or unloaded")

    @property
    def builds(self) -> dict[str, WorkflowCode]:
        return dict(self._builds)

    @property
    def routes(self) -> dict[str, str]:
        return dict(self._routes)

    # ------------------------------------------------------------------ changes (from the deployments topic)
    def add_build(self, build_id: str, registry: WorkflowCode) -> None:
        self._builds[build_id] = registry
        self._why.pop(build_id, None)

    def build_failed(self, build_id: str, reason: str) -> None:
        self._builds.pop(build_id, None)
        self._why[build_id] = reason

    def drop_build(self, build_id: str) -> None:
        self._builds.pop(build_id, None)
        self._why[build_id] = "unloaded"

    def set_route(self, workflow_type: str, build_id: str) -> None:
        if build_id:
            self._routes[workflow_type] = build_id
        else:
            self._routes.pop(workflow_type, None)
