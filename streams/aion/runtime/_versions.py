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

from typing import Any

from ..exceptions import VersionNotLoadedError
from ..model import WorkflowStarted

__all__ = ["VersionedRegistry", "code_of", "route_of", "version_not_loaded"]


def code_of(registry: Any, started: WorkflowStarted) -> Any | None:
    """The registry whose code runs the run ``started`` began; None when it is not loaded."""
    code_for = getattr(registry, "code_for", None)
    return registry if code_for is None else code_for(started.code_version)


def route_of(registry: Any, workflow_type: str) -> tuple[str, Any | None]:
    """(build id, its registry or None) that a new run of ``workflow_type`` takes."""
    route = getattr(registry, "route", None)
    return ("", registry) if route is None else route(workflow_type)


def version_not_loaded(registry: Any, workflow_id: str, run_id: str, started: WorkflowStarted) -> VersionNotLoadedError:
    why = getattr(registry, "why_not_loaded", lambda v: "not deployed")(started.code_version)
    return VersionNotLoadedError(
        f"run {run_id} of workflow {workflow_id!r} ({started.workflow_type}) is pinned to build "
        f"{started.code_version!r}, which this engine worker has not loaded ({why}); it is held, never run on "
        f"other code, and goes on once the build is loaded (aion deploy list / aion deploy create)")


class VersionedRegistry:
    """An engine worker's code: its own Registry (``base``, the ``--workflows`` modules) plus
    the loaded builds and the routes. Everything but the version lookups is ``base``'s."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self._builds: dict[str, Any] = {}
        self._why: dict[str, str] = {}  # build id -> why it is not loaded
        self._routes: dict[str, str] = {}  # workflow type -> build id

    def __getattr__(self, name: str) -> Any:  # converter, failure_policy, history_limits, code_id ...
        return getattr(self.base, name)

    # ------------------------------------------------------------------ lookups
    def code_for(self, code_version: str) -> Any | None:
        if not code_version:
            return self.base
        return self._builds.get(code_version)

    def route(self, workflow_type: str) -> tuple[str, Any | None]:
        build = self._routes.get(workflow_type, "")
        if not build:
            return "", self.base
        return build, self._builds.get(build)

    def why_not_loaded(self, build_id: str) -> str:
        return self._why.get(build_id, "not deployed, or unloaded")

    @property
    def builds(self) -> dict[str, Any]:
        return dict(self._builds)

    @property
    def routes(self) -> dict[str, str]:
        return dict(self._routes)

    # ------------------------------------------------------------------ changes (from the deployments topic)
    def add_build(self, build_id: str, registry: Any) -> None:
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
