"""The deployments table: what the compacted ``<prefix>.deployments`` topic says, folded from
its records in offset order (the same fold in every engine worker and in the client).

- a :class:`~aion.model.PackageDeployed` under its build id's key deploys (or re-deploys the
  same) build; another package under a build id already taken is refused;
- a :class:`~aion.model.TypeRouted` under ``route/<type>`` routes the type's new starts (and
  continue-as-new successors) to a build, ``""`` back to the engine workers' own code;
- a tombstone under a build id unloads it; under a route key it routes back to ``""``.

A record that says something else (undecodable bytes, a key that does not match its body, a
bad build id, a hash that does not match its package) changes nothing: it is kept in
``refused`` with the reason, for the log and ``aion deploy list``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from ..model import DeploymentRecord, PackageDeployed, TypeRouted, route_key
from ..model._deployments import ROUTE_KEY_PREFIX
from ._package import check_build_id

__all__ = ["DeploymentTable", "Change"]


@dataclass(frozen=True)
class Change:
    """What one accepted record changed: ``kind`` is ``deploy``, ``unload`` or ``route``."""

    kind: str
    build_id: str
    workflow_type: str = ""
    package: PackageDeployed | None = None


@dataclass
class DeploymentTable:
    builds: dict[str, PackageDeployed] = field(default_factory=dict)
    routes: dict[str, TypeRouted] = field(default_factory=dict)
    #: (where, reason) of every record that changed nothing; where = "partition@offset".
    refused: list[tuple[str, str]] = field(default_factory=list)

    def route_of(self, workflow_type: str) -> str:
        """The build new starts of ``workflow_type`` take ("" = the workers' own code)."""
        r = self.routes.get(workflow_type)
        return r.build_id if r is not None else ""

    def routed_to(self, build_id: str) -> list[str]:
        """The workflow types routed to ``build_id``."""
        return sorted(t for t, r in self.routes.items() if r.build_id == build_id)

    def apply_bytes(self, key: bytes | None, value: bytes | None, decode: Callable[[bytes], DeploymentRecord],
                    where: str = "") -> Change | None:
        """Fold one raw record; None when it changed nothing (refused ones are in ``refused``)."""
        try:
            k = (key or b"").decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(where, f"the key {bytes(key or b'')[:40]!r} is not UTF-8")
        if value is None:
            return self.apply(k, None, where)
        try:
            record = decode(value)
        except Exception as exc:
            return self._refuse(where, f"undecodable record under key {k[:100]!r}: {type(exc).__name__}: {exc}")
        return self.apply(k, record, where)

    def apply(self, key: str, record: DeploymentRecord | None, where: str = "") -> Change | None:
        """Fold one decoded record (None: a tombstone)."""
        if key.startswith(ROUTE_KEY_PREFIX):
            wf_type = key[len(ROUTE_KEY_PREFIX):]
            if not wf_type:
                return self._refuse(where, "a route key names no workflow type")
            if record is None:
                if self.routes.pop(wf_type, None) is None:
                    return None
                return Change("route", "", wf_type)
            body = record.body
            if not isinstance(body, TypeRouted) or route_key(body.workflow_type) != key:
                return self._refuse(where, f"the record under key {key[:100]!r} is not the route of that type")
            if body.build_id and (problem := check_build_id(body.build_id)) is not None:
                return self._refuse(where, f"route of {wf_type!r}: {problem}")
            if body.build_id:
                self.routes[wf_type] = body
            else:
                self.routes.pop(wf_type, None)
            return Change("route", body.build_id, wf_type)
        if (problem := check_build_id(key)) is not None:
            return self._refuse(where, f"key {key[:100]!r} is neither a build id nor route/<type>: {problem}")
        if record is None:
            if self.builds.pop(key, None) is None:
                return self._refuse(where, f"unload of build {key!r}, which is not deployed: nothing to unload")
            return Change("unload", key)
        body = record.body
        if not isinstance(body, PackageDeployed) or body.build_id != key:
            return self._refuse(where, f"the record under key {key!r} is not the package of build {key!r}")
        if hashlib.sha256(body.package).hexdigest() != body.sha256:
            return self._refuse(where, f"build {key!r}: its package does not have the SHA-256 its record names")
        old = self.builds.get(key)
        if old is not None:
            if old.sha256 == body.sha256:
                return None  # the same package again
            return self._refuse(where, f"build {key!r} is already deployed with other code (SHA-256 {old.sha256[:16]}..."
                                       f"): a build id names one package; unload it first or use another build id")
        self.builds[key] = body
        return Change("deploy", key, package=body)

    def _refuse(self, where: str, reason: str) -> Change | None:  # None: nothing changed
        self.refused.append((where, reason))
        return None
