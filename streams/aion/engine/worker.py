"""Run an engine worker: ``aion worker --workflows MODULE``."""

from __future__ import annotations

import asyncio
import importlib
import logging
from types import ModuleType
from typing import Any, Iterable

from ..common.settings import Settings
from ..common.topics import ensure_topics, validate_topics


def import_modules(names: Iterable[str]) -> list[ModuleType]:
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError as exc:
            raise SystemExit(
                f"aion: cannot import workflow module {name!r}: {exc}. "
                "Give a module importable from this directory (e.g. aion.examples.order_saga)."
            ) from exc
    return mods


def discover(modules: Iterable[ModuleType]) -> tuple[list[object], list[object]]:
    """Every ``@workflow.defn`` class and ``@activity.defn`` function in ``modules``."""
    from ..activity import _definition as adef
    from ..workflow import _definition as wdef

    workflows: list[object] = []
    activities: list[object] = []
    for mod in modules:
        for value in vars(mod).values():
            if isinstance(value, type) and getattr(value, wdef._ATTR, None) is not None and vars(value).get(wdef._ATTR) is not None and value not in workflows:
                workflows.append(value)
            elif callable(value) and adef.ActivityDefinition.maybe_of(value) is not None and value not in activities:
                activities.append(value)
    return workflows, activities


def build_engine(settings: Settings, workflow_modules: Iterable[str]):  # type: ignore[no-untyped-def]
    from ..runtime import Registry
    from ._engine import Engine

    workflow_modules = list(workflow_modules)
    workflows, _ = discover(import_modules(workflow_modules))
    if workflow_modules and not workflows:  # without modules: only deployed builds (aion deploy)
        raise SystemExit(
            f"aion: no @workflow.defn class found in {list(workflow_modules)!r}; "
            "point --workflows at the modules that define your workflows."
        )
    from ._schedules import ScheduleWorkflow

    # Every engine runs schedules (the aion.Schedule system workflow) beside the user's workflows.
    from ..runtime import HistoryLimits

    limits = HistoryLimits(
        warn_events=settings.history_warn_events, fail_events=settings.history_fail_events,
        warn_bytes=settings.history_warn_bytes, fail_bytes=settings.history_fail_bytes)
    from ..runtime._versions import VersionedRegistry

    # Its own code runs runs recorded without a version; deployed builds the others (_deployments.py).
    versions = VersionedRegistry(Registry(workflows=[*workflows, ScheduleWorkflow], history_limits=limits))
    # The engine asks only what a WorkflowCode offers, which a VersionedRegistry serves (per run).
    return Engine(settings, versions)


def follow_deployments(engine) -> Any:  # type: ignore[no-untyped-def]
    """Read the deployments topic to its end (every build loaded) before the worker takes any
    partition, then follow it while the worker runs (an ``app.task``)."""
    from ._deployments import DeploymentFeed

    feed = DeploymentFeed(engine.settings, engine.codec, engine.registry)
    feed.catch_up()
    engine.app.task(feed.follow)
    return feed


#: The engine worker's garbage-collector thresholds (Python's default: 700, 10, 10). See :func:`tune_gc`.
GC_THRESHOLD = (10_000, 10, 10)


def tune_gc(threshold: tuple[int, int, int] = GC_THRESHOLD) -> None:
    """Fewer, cheaper garbage collections for an engine worker, once it is built.

    Every resident workflow is a few dozen long-lived objects (``AION_CACHE_SIZE``, 10,000 by
    default) and each batch allocates thousands that live for one step; with Python's default
    thresholds a young collection ran every 700 allocations and promoted the batch in flight,
    and the full collections that followed walked every resident workflow: ~30 % of the
    engine's CPU on its batch path once the cache was full, and a full collection under load
    once outlasted a workflow step's 2 s deadlock timeout (``aion.bench.step``, issue 19).
    ``gc.freeze()`` moves what the start-up built (modules, the app, the tables) out of every
    later collection; the higher first threshold lets a batch's garbage die young. Cycles of
    evicted workflows are collected later, so memory grows by a few thousand workflows' worth
    at most."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)


def raise_open_files_limit(want: int = 65536) -> int:
    """Raise this process's soft open-files limit to ``want`` (at most its hard limit), as
    Kafka's and RocksDB's own guides advise: an engine worker keeps a RocksDB database of each
    table open per partition (a dozen files each) and a socket per broker per owned partition.
    Returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # not allowed here: the warm-up says what it could open
            pass
    return soft


def run_worker(settings: Settings, workflow_modules: list[str], loglevel: str = "info") -> None:
    """Create/validate the topics, then run the Faust engine worker until stopped."""

    raise_open_files_limit()
    ensure_topics(settings)
    validate_topics(settings)
    from ..ops._tracing import configure

    configure(settings.tracing, "aion-engine")  # AION_TRACING: spans of this worker (before the engine is built)
    engine = build_engine(settings, workflow_modules)
    # The tables' changelogs exist before the worker joins its group (see _app.changelog_topics).
    from ._app import changelog_topics

    ensure_topics(settings, extra=changelog_topics(settings, engine.tables))
    logging.getLogger("aion").setLevel(loglevel.upper())
    follow_deployments(engine)
    if engine.metrics.enabled:  # /metrics, /healthz, /readyz (see _metrics.py)
        from ..ops import serve

        serve(engine.metrics.registry, engine.metrics.health, host=settings.metrics_host,
              port=settings.metrics_port, what="engine worker")
    worker = _worker_class(engine)(engine.app, loglevel=loglevel, quiet=True)
    tune_gc()
    worker.execute_from_commandline()


def _worker_class(engine: Any = None) -> type:
    """The worker class, made when a worker runs (faust is imported there, not with this module)."""
    import faust

    class Worker(faust.Worker):
        """Faust's worker, whose log says what Aion does: Faust's, mode's and aiokafka's own lines
        only from WARNING (all of them with --loglevel debug), a repeated error a few times a
        minute (ops/_logs.py); the engine says when it is ready (Engine._on_restored).

        Stopped (SIGTERM, SIGINT), the engine first hands its partitions back and leaves the
        group (``Engine.leave``), then Faust's services stop: a planned stop is a prompt
        hand-over, not a session timeout."""

        async def on_first_start(self) -> None:
            await super().on_first_start()  # logging set up: the warm-up's line is seen
            if engine is not None:
                # Before the app starts (and joins the group): the local copies of a restarted
                # worker catch up on its downtime here, not while the partitions it takes over
                # wait (_store.warm_up).
                from ._store import warm_up

                tables = list(engine.tables.by_name().values())
                # Each table's store is made here, on the worker's loop (``table.data`` makes it
                # at first use): made in the thread below, Faust's service would be bound to that
                # thread's loop and the worker's stop would wait for it forever.
                stores = [table.data for table in tables]
                logging.getLogger("aion.engine").debug("table stores made before the warm-up: %d", len(stores))
                read = await asyncio.get_running_loop().run_in_executor(
                    None, warm_up, tables, engine.settings, engine.settings.partitions)
                engine.stats["warm_up_records"] = sum(read.values())
                from ._faust import OPENED_FROM_DISK

                engine.stats["databases_opened_before_joining"] = OPENED_FROM_DISK[0]

        async def on_stop(self) -> None:
            if engine is not None:
                try:
                    await engine.leave()
                except Exception:  # the stop goes on: the session timeout then hands the partitions over
                    logging.getLogger("aion.engine").exception("stopping: leaving the group failed")
            await super().on_stop()

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            from ..ops._logs import limit_repeats, quiet_libraries

            quiet_libraries(level, logger)
            limit_repeats(logger)

    return Worker
