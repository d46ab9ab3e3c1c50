"""Records of the deployments topic (mirror schemas/aion.deployments.*).

``<prefix>.deployments`` is compacted: the key of a :class:`PackageDeployed` is its build id,
the key of a :class:`TypeRouted` is ``route/<workflow type>``. A tombstone on a build id
unloads that build. Every engine worker reads the whole topic at start and follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(slots=True, frozen=True)
class PackageDeployed:
    build_id: str
    root: str
    modules: list[str]
    workflow_types: list[str]
    sha256: str
    package: bytes
    deployed_at_ms: int
    description: str = ""


@dataclass(slots=True, frozen=True)
class TypeRouted:
    workflow_type: str
    build_id: str
    routed_at_ms: int


DeploymentBody = Union[PackageDeployed, TypeRouted]


@dataclass(slots=True, frozen=True)
class DeploymentRecord:
    body: DeploymentBody = field()


#: The key of the routing record of ``workflow_type``.
ROUTE_KEY_PREFIX = "route/"


def route_key(workflow_type: str) -> str:
    return ROUTE_KEY_PREFIX + workflow_type
