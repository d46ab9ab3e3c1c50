"""``client.deployments``: deploy versions of the workflow code, route types to them, unload.

Everything is a record of the compacted ``<prefix>.deployments`` topic, which every engine
worker reads at start and follows (``aion.engine._deployments``):

- :meth:`Deployments.create` zips a module file or package directory (``aion.deploy``),
  imports it here first (a package that does not import, or defines no workflow, is refused
  before anything is written), and writes it under its build id;
- :meth:`Deployments.route` makes a type's new starts and continue-as-new successors take a
  build (``""``: back to the workers' own ``--workflows`` code). Rollback = route back;
- :meth:`Deployments.unload` removes a build — refused (:class:`~aion.exceptions.BuildInUseError`)
  while a type routes to it or an open run is pinned to it;
- :meth:`Deployments.list` shows builds, routes and open runs per build.

Open runs per build are counted from the visibility index (the engine's ``workflows`` table
changelog, as ``list_workflows``): exact for every step the engine workers have committed. A
start the engine has not processed yet is not counted — but it cannot pin to a build no type
routes to, except on an engine worker that has not yet read a route change made just before
(milliseconds); such a run is held, never run on other code, until the build is deployed again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from confluent_kafka import KafkaError, Producer

from ..codec import Codec
from ..deploy import DeploymentTable, PackageError, build_package, check_build_id, load_package_path
from ..common.settings import Settings
from ..common.topics import TopicNames, ensure_topics
from ..exceptions import BuildInUseError, BuildNotFoundError, InvalidArgumentError
from ..model import DeploymentRecord, PackageDeployed, TypeRouted, now_ms, route_key

__all__ = ["Deployments", "BuildInfo", "DeploymentsView"]

#: Room the record's other fields (and Kafka's record overhead) take beside the zip.
_RECORD_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class BuildInfo:
    """One deployed build."""

    build_id: str
    root: str
    modules: list[str]
    workflow_types: list[str]
    sha256: str
    size: int  # bytes of the zip
    deployed_at_ms: int
    description: str = ""
    routed_types: list[str] = field(default_factory=list)
    open_runs: int = 0


@dataclass(frozen=True)
class DeploymentsView:
    """What ``aion deploy list`` shows."""

    builds: list[BuildInfo]
    routes: dict[str, str]  # workflow type -> build id
    #: Open (RUNNING) runs per build id; "" counts the runs on the workers' own code.
    open_runs: dict[str, int]
    #: (where, reason) of records on the topic that changed nothing.
    refused: list[tuple[str, str]]


def _info(p: PackageDeployed, table: DeploymentTable, open_runs: dict[str, int]) -> BuildInfo:
    return BuildInfo(p.build_id, p.root, list(p.modules), list(p.workflow_types), p.sha256, len(p.package),
                     p.deployed_at_ms, p.description, table.routed_to(p.build_id), open_runs.get(p.build_id, 0))


class Deployments:
    """Deploy, route, list and unload builds (see the module docs). ``client.deployments``, or
    ``Deployments(settings)`` without a connected client."""

    def __init__(self, settings: Settings, *, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec(registry_url=settings.schema_registry_url)
        self.topic = TopicNames(settings.topic_prefix).deployments

    # ------------------------------------------------------------------ reads
    def _table(self) -> DeploymentTable:
        from ..engine._deployments import read_deployments

        return read_deployments(self.settings, self.codec)

    def _open_runs(self) -> tuple[dict[str, int], dict[str, str]]:
        """Open runs per build id, and one example workflow id per build."""
        from ._visibility import read_workflow_rows

        counts: dict[str, int] = {}
        example: dict[str, str] = {}
        for row in read_workflow_rows(self.settings).values():
            if row.status == "RUNNING":
                counts[row.code_version] = counts.get(row.code_version, 0) + 1
                example.setdefault(row.code_version, row.workflow_id)
        return counts, example

    async def list(self) -> DeploymentsView:
        return await asyncio.to_thread(self._list)

    def _list(self) -> DeploymentsView:
        table = self._table()
        counts, _ = self._open_runs()
        builds = sorted((_info(p, table, counts) for p in table.builds.values()), key=lambda b: b.deployed_at_ms)
        return DeploymentsView(builds, {t: r.build_id for t, r in sorted(table.routes.items())}, counts,
                               list(table.refused))

    async def get(self, build_id: str) -> BuildInfo:
        """The build ``build_id``; :class:`BuildNotFoundError` when it is not deployed."""
        view = await self.list()
        for b in view.builds:
            if b.build_id == build_id:
                return b
        raise BuildNotFoundError(_not_found(build_id, [b.build_id for b in view.builds]))

    # ------------------------------------------------------------------ writes
    async def create(self, path: str | Path, *, build_id: str | None = None, modules: Sequence[str] = (),
                     description: str = "") -> BuildInfo:
        """Deploy the module file or package directory at ``path`` as build ``build_id``
        (default: a hash of its content). Deploying the same code under the same id again is a
        no-op; other code under a taken id is refused. Raises :class:`~aion.deploy.PackageError`
        (not a package, too large, does not import, no workflow)."""
        return await asyncio.to_thread(self._create, Path(path), build_id, list(modules), description)

    def _create(self, path: Path, build_id: str | None, modules: Sequence[str], description: str) -> BuildInfo:
        pkg = build_package(path)
        bid = build_id or pkg.default_build_id
        if (problem := check_build_id(bid)) is not None:
            raise InvalidArgumentError(f"{problem}; give another --build-id")
        limit = self.settings.max_record_bytes - _RECORD_OVERHEAD
        if len(pkg.data) > limit:
            raise PackageError(
                f"the package of {path} is {len(pkg.data)} bytes zipped ({pkg.files} files), more than the "
                f"{limit} bytes a record of {self.topic} may carry (AION_MAX_PAYLOAD_BYTES + 1 MiB, less room for "
                "the record): deploy only the workflow code (leave data, tests and virtualenvs out of it), or raise "
                "AION_MAX_PAYLOAD_BYTES on every process and the topic's max.message.bytes")
        try:
            registry = load_package_path(bid, pkg.root, modules, pkg.data)
        except Exception as exc:
            raise PackageError(f"{path} cannot be deployed: {exc}") from None
        types = sorted(registry.workflows)
        ensure_topics(self.settings)
        table = self._table()
        old = table.builds.get(bid)
        if old is not None:
            if old.sha256 == pkg.sha256:
                counts, _ = self._open_runs()
                return _info(old, table, counts)  # the same code again
            raise PackageError(f"build {bid!r} is already deployed with other code (SHA-256 {old.sha256[:16]}...): "
                               "a build id names one version; give another --build-id (or unload the old build)")
        record = PackageDeployed(build_id=bid, root=pkg.root, modules=list(modules), workflow_types=types,
                                 sha256=pkg.sha256, package=pkg.data, deployed_at_ms=now_ms(),
                                 description=description)
        self._write(bid, DeploymentRecord(record))
        return _info(record, table, {})

    async def route(self, workflow_type: str, build_id: str) -> None:
        """New starts (and continue-as-new successors) of ``workflow_type`` take ``build_id``
        from now on (``""``: the engine workers' own code). Runs already started keep theirs."""
        await asyncio.to_thread(self._route, workflow_type, build_id)

    def _route(self, workflow_type: str, build_id: str) -> None:
        if not workflow_type or len(workflow_type) > 1000:
            raise InvalidArgumentError("give the workflow type to route (its @workflow.defn name)")
        table = self._table()
        if build_id:
            b = table.builds.get(build_id)
            if b is None:
                raise BuildNotFoundError(_not_found(build_id, list(table.builds)))
            if workflow_type not in b.workflow_types:
                raise InvalidArgumentError(
                    f"build {build_id!r} has no workflow type {workflow_type!r} (it has: "
                    f"{', '.join(b.workflow_types) or 'none'}); check the type name")
        self._write(route_key(workflow_type), DeploymentRecord(TypeRouted(workflow_type, build_id, now_ms())))

    async def unload(self, build_id: str) -> None:
        """Remove ``build_id`` from every engine worker. Refused with
        :class:`~aion.exceptions.BuildInUseError` while a type routes to it or an open run is
        pinned to it (route the types elsewhere and let the runs finish first)."""
        await asyncio.to_thread(self._unload, build_id)

    def _unload(self, build_id: str) -> None:
        table = self._table()
        if build_id not in table.builds:
            raise BuildNotFoundError(_not_found(build_id, list(table.builds)))
        routes = tuple(table.routed_to(build_id))
        if routes:
            raise BuildInUseError(
                f"build {build_id!r} cannot be unloaded: new runs of {', '.join(routes)} are routed to it; route "
                f"them to another build first (aion deploy route TYPE BUILD_ID)", build_id=build_id, routes=routes)
        counts, example = self._open_runs()
        n = counts.get(build_id, 0)
        if n:
            raise BuildInUseError(
                f"build {build_id!r} cannot be unloaded: {n} open run(s) are pinned to it (e.g. workflow "
                f"{example[build_id]!r}); they run on it until they close. Wait for them, or cancel or terminate "
                "them, then unload", build_id=build_id, open_runs=n, example=example[build_id])
        self._write(build_id, None)

    def _write(self, key: str, record: DeploymentRecord | None) -> None:
        value = self.codec.encode_deployment(record) if record is not None else None
        producer = Producer({**self.settings.confluent_config(), "acks": "all", "enable.idempotence": True,
                             "client.id": f"{self.settings.topic_prefix}.deployments-writer",
                             "message.max.bytes": max(1_000_000, self.settings.max_record_bytes)})
        errors: list[Any] = []
        producer.produce(self.topic, key=key.encode(), value=value,
                         on_delivery=lambda err, _msg: errors.append(err) if err is not None else None)
        left = producer.flush(30)
        if left or errors:
            err = errors[0] if errors else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise PackageError(f"{self.topic} refused the record of {key!r} as too large ({err}): check the "
                                   "topic's max.message.bytes against AION_MAX_PAYLOAD_BYTES")
            raise RuntimeError(f"could not write {key!r} to {self.topic}: {err or 'not acknowledged within 30s'}")


def _not_found(build_id: str, known: Sequence[str]) -> str:
    return (f"no build {build_id!r} is deployed (deployed: {', '.join(sorted(known)) or 'none'}); see aion deploy "
            "list, or deploy it with aion deploy create PATH --build-id ID")
