"""Versioned deploys on the real broker, with real engine worker processes: a run stays on
the build its WorkflowStarted names while another build is routed, across a kill -9 of the
engine worker; several builds run in one worker; unload is refused while a run is pinned or a
type routes to the build; rollback = route back; hostile records on the deployments topic
are ignored with a reason and break nothing else."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from deploy_pkgs import write_version

from aion.cli._main import cli
from aion.client import Deployments
from aion.codec import Codec
from aion.deploy import build_package
from aion.engine.topics import TopicNames
from aion.exceptions import BuildInUseError, BuildNotFoundError, InvalidArgumentError
from aion.model import DeploymentRecord, PackageDeployed, TypeRouted, now_ms, route_key

#: The engine follows the deployments topic with polls of 0.5 s: a route is in force well within this.
ROUTE_SETTLE_S = 3.0


def _aion(settings, *args: str):  # type: ignore[no-untyped-def]
    env = {"AION_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "AION_TOPIC_PREFIX": settings.topic_prefix,
           "AION_PARTITIONS": str(settings.partitions)}
    return CliRunner().invoke(cli, list(args), env=env, obj={})


@pytest.fixture
def dcluster(make_cluster):  # type: ignore[no-untyped-def]
    """Topics made (before the client connects); the tests start the workers."""
    return make_cluster()


async def _started(handle, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """The WorkflowStarted bodies of the workflow's history, once it has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        starts = [e.body for e in await handle.history() if e.type == "WorkflowStarted"]
        if starts:
            return starts
        await asyncio.sleep(0.2)
    raise AssertionError(f"{handle.id} never started")


async def _until(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_pinned_runs_route_unload_rollback_and_restart(dcluster, client, settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Deployments(settings)
    c = dcluster
    v1 = await d.create(write_version(tmp_path / "src", "v1"), build_id="v1", description="first")
    assert v1.workflow_types == ["Greeter", "Looper"]
    await d.route("Greeter", "v1")
    engine = c.engine("engine-a")  # reads the deployments topic to its end before taking partitions

    a = await client.start_workflow("Greeter", "a", id="wf-a")
    assert [s.code_version for s in await _started(a)] == ["v1"]
    assert await a.query("version") == "v1"

    # v2 deployed and routed (with the CLI): new starts take it, wf-a stays on v1
    src2 = write_version(tmp_path / "src", "v2")
    res = await asyncio.to_thread(_aion, settings, "deploy", "create", str(src2), "--build-id", "v2",
                                  "--route", "Greeter", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["workflow_types"] == ["Greeter", "Looper"]
    await asyncio.sleep(ROUTE_SETTLE_S)
    b = await client.start_workflow("Greeter", "b", id="wf-b")
    assert [s.code_version for s in await _started(b)] == ["v2"]
    # several builds in the same engine worker (the only one), each run on its own
    assert await a.query("version") == "v1" and await b.query("version") == "v2"

    # unload refused: a run is pinned to v1; a type routes to v2
    with pytest.raises(BuildInUseError) as info:
        await d.unload("v1")
    assert info.value.open_runs == 1 and info.value.example == "wf-a"
    assert "1 open run(s) are pinned to it (e.g. workflow 'wf-a')" in str(info.value)
    res = await asyncio.to_thread(_aion, settings, "deploy", "unload", "v2")
    assert res.exit_code == 1 and "new runs of Greeter are routed to it" in res.output, res.output
    with pytest.raises(BuildNotFoundError, match="no build 'v7' is deployed"):
        await d.unload("v7")
    with pytest.raises(InvalidArgumentError, match="build 'v1' has no workflow type 'Nope'"):
        await d.route("Nope", "v1")

    view = await d.list()
    assert [(x.build_id, x.routed_types, x.open_runs) for x in view.builds] == [("v1", [], 1), ("v2", ["Greeter"], 1)]
    res = await asyncio.to_thread(_aion, settings, "deploy", "list")
    assert res.exit_code == 0 and "v1" in res.output and "v2" in res.output, res.output

    # kill -9 of the engine worker, restarted on the same data folder: v1's run replays on v1
    engine.kill9()
    c.engine("engine-a")
    c2 = await client.start_workflow("Greeter", "c", id="wf-c")
    assert [s.code_version for s in await _started(c2)] == ["v2"]
    for h in (a, b, c2):
        await h.signal("release")
    assert await a.result(timeout=60) == "v1: hello a"
    assert await b.result(timeout=60) == "v2: hello b"
    assert await c2.result(timeout=60) == "v2: hello c"

    # rollback = route back to v1; a continue-as-new successor takes the routed build
    res = await asyncio.to_thread(_aion, settings, "deploy", "route", "Greeter", "v1")
    assert res.exit_code == 0, res.output
    await d.route("Looper", "v1")
    await asyncio.sleep(ROUTE_SETTLE_S)
    e = await client.start_workflow("Greeter", "e", id="wf-e")
    loop = await client.start_workflow("Looper", 1, 8, id="wf-loop")  # sleeps 8 s, then continues as new
    assert [s.code_version for s in await _started(e)] == ["v1"]
    assert [s.code_version for s in await _started(loop)] == ["v1"]
    await d.route("Looper", "v2")  # read by the engine before wf-loop's first run wakes up
    await e.signal("release")
    assert await e.result(timeout=60) == "v1: hello e"
    assert await loop.result(timeout=60) == "v2"
    assert [s.code_version for s in await _started(loop)] == ["v1", "v2"]

    # nothing pinned to v2 and nothing routed to it any more: unload goes through
    await d.route("Looper", "v1")
    await d.unload("v2")
    assert [x.build_id for x in (await d.list()).builds] == ["v1"]


def _produce(settings, key: bytes, value: bytes | None) -> None:  # type: ignore[no-untyped-def]
    p = Producer(settings.confluent_config())
    p.produce(TopicNames(settings.topic_prefix).deployments, key=key, value=value)
    assert p.flush(10) == 0


async def test_hostile_deployment_records_break_nothing_else(dcluster, client, settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Deployments(settings)
    c = dcluster
    codec = Codec()
    engine = c.engine()
    c.activities()  # for the worker's own Hello
    good = await d.create(write_version(tmp_path / "src", "good"), build_id="good")
    # garbage bytes; an unload of a build nobody deployed; a package that does not import
    _produce(settings, b"junk", b"\x00garbage bytes")
    _produce(settings, b"ghost", None)
    broken = build_package(write_version(tmp_path / "src", "broken", broken=True))
    _produce(settings, b"broken", codec.encode_deployment(DeploymentRecord(PackageDeployed(
        "broken", broken.root, [], ["Greeter"], broken.sha256, broken.data, now_ms()))))
    # a route to a build that is not deployed (yet)
    _produce(settings, route_key("Greeter").encode(), codec.encode_deployment(DeploymentRecord(
        TypeRouted("Greeter", "later", now_ms()))))
    await asyncio.sleep(ROUTE_SETTLE_S)

    # a start routed to the missing build is recorded pinned to it and held, with the reason
    h = await client.start_workflow("Greeter", "x", id="wf-later")
    assert [s.code_version for s in await _started(h)] == ["later"]

    async def held() -> bool:
        return any(e.type == "WorkflowTaskFailed" for e in await h.history())
    await _until(held, "wf-later to be held")
    failure = next(e.body.failure for e in await h.history() if e.type == "WorkflowTaskFailed")
    assert failure.type == "VersionNotLoadedError" and "pinned to build 'later'" in failure.message

    # the engine worker goes on: other builds and its own code work
    await d.route("Looper", "good")
    await asyncio.sleep(ROUTE_SETTLE_S)
    assert await client.execute_workflow("Looper", 0, id="wf-good") == "good"
    assert await client.execute_workflow("Hello", "still", id="wf-own") == "Hello, still!"

    # a run pinned to the build that does not import is held with the import error
    await d.route("Greeter", "broken")
    await asyncio.sleep(ROUTE_SETTLE_S)
    hb = await client.start_workflow("Greeter", "y", id="wf-broken")

    async def broken_held() -> bool:
        return any(e.type == "WorkflowTaskFailed" for e in await hb.history())
    await _until(broken_held, "wf-broken to be held")
    failure = next(e.body.failure for e in await hb.history() if e.type == "WorkflowTaskFailed")
    assert "pinned to build 'broken'" in failure.message and "no_such_module_anywhere" in failure.message
    await hb.terminate("test done")

    # the missing build is deployed: the held run goes on, on that build's code
    await d.create(write_version(tmp_path / "src", "later"), build_id="later")
    await h.signal("release")
    assert await h.result(timeout=60) == "later: hello x"
    assert "WorkflowFailed" not in [e.type for e in await h.history()]

    # the records that changed nothing are listed with their reasons, and logged by the worker
    view = await d.list()
    reasons = " | ".join(r for _, r in view.refused)
    assert "undecodable record under key 'junk'" in reasons and "unload of build 'ghost'" in reasons, reasons
    log = engine.log.read_text(errors="replace")
    assert "undecodable record under key 'junk'" in log and "build 'broken'" in log and "no_such_module_anywhere" in log
    assert engine.alive()
    assert good.build_id in [b.build_id for b in view.builds]


async def test_a_package_too_large_or_broken_is_refused_before_anything_is_written(settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    from aion.deploy import PackageError
    from aion.engine.topics import ensure_topics

    ensure_topics(settings)
    small = settings.replace(max_payload_bytes=1024)  # records of 1 MiB + 1 KiB
    big = write_version(tmp_path / "src", "big")
    import os

    (big / "data.bin").write_bytes(os.urandom(1200 * 1024))  # does not compress
    with pytest.raises(PackageError, match="more than the .* bytes a record of .*deployments may carry"):
        await Deployments(small).create(big, build_id="big")
    with pytest.raises(PackageError, match="cannot be deployed: build 'bad': importing 'verapp' raised"):
        await Deployments(settings).create(write_version(tmp_path / "src", "bad", broken=True), build_id="bad")
    assert (await Deployments(settings).list()).builds == []


async def test_replay_check_against_a_candidate_build_is_the_gate_before_routing(dcluster, client, settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Deployments(settings)
    await d.create(write_version(tmp_path / "src", "v1"), build_id="v1")
    await d.route("Greeter", "v1")
    dcluster.engine()
    h = await client.start_workflow("Greeter", "z", id="wf-z")
    await _started(h)
    await h.signal("release")
    assert await h.result(timeout=60) == "v1: hello z"

    await d.create(write_version(tmp_path / "src", "v2"), build_id="v2")
    await d.create(write_version(tmp_path / "src", "v3", incompatible=True), build_id="v3")
    ok = await asyncio.to_thread(_aion, settings, "replay", "check", "--from-topic", "--build-id", "v2")
    assert ok.exit_code == 0 and "checked 1 workflow(s)" in ok.output and "0 diverged" in ok.output, ok.output
    bad = await asyncio.to_thread(_aion, settings, "replay", "check", "--from-topic", "--build-id", "v3")
    assert bad.exit_code == 1 and "1 diverged" in bad.output and "wf-z" in bad.output, bad.output
    local = await asyncio.to_thread(_aion, settings, "replay", "check", "--from-topic", "--package",
                                    str(tmp_path / "src" / "v3" / "verapp"))
    assert local.exit_code == 1 and "1 diverged" in local.output, local.output
    missing = await asyncio.to_thread(_aion, settings, "replay", "check", "--from-topic", "--build-id", "v9")
    assert missing.exit_code == 5 and "no build 'v9' is deployed" in missing.output, missing.output


async def test_an_engine_worker_without_workflow_modules_runs_deployed_builds(dcluster, client, settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    from _procs import Proc

    d = Deployments(settings)
    await d.create(write_version(tmp_path / "src", "only"), build_id="only")
    await d.route("Looper", "only")
    env = dict(dcluster.env, AION_DATA_DIR=str(tmp_path / "bare"))
    p = Proc(["worker", "--loglevel", "warning"], env, tmp_path / "bare.log").start()  # no --workflows
    dcluster.procs.append(p)
    assert await client.execute_workflow("Looper", 0, id="wf-bare") == "only"


async def test_pinned_runs_survive_a_hand_over_to_another_engine_worker(dcluster, client, settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = client.deployments  # the same operations from a connected client
    await d.create(write_version(tmp_path / "src", "v1"), build_id="v1")
    await d.create(write_version(tmp_path / "src", "v2"), build_id="v2")
    await d.route("Greeter", "v1")
    first = dcluster.engine()
    v1_runs = [await client.start_workflow("Greeter", f"a{i}", id=f"h-v1-{i}") for i in range(6)]
    for h in v1_runs:
        assert [s.code_version for s in await _started(h)] == ["v1"]
    await d.route("Greeter", "v2")
    await asyncio.sleep(ROUTE_SETTLE_S)
    v2_runs = [await client.start_workflow("Greeter", f"b{i}", id=f"h-v2-{i}") for i in range(6)]
    for h in v2_runs:
        assert [s.code_version for s in await _started(h)] == ["v2"]
    # a second engine worker joins (it reads the deployments topic first), the first one dies:
    # every partition, with runs of both builds, is handed over
    dcluster.engine()
    await asyncio.sleep(5)
    first.kill9()
    for h in v1_runs + v2_runs:
        await h.signal("release")
    for i, h in enumerate(v1_runs):
        assert await h.result(timeout=90) == f"v1: hello a{i}"
    for i, h in enumerate(v2_runs):
        assert await h.result(timeout=90) == f"v2: hello b{i}"
