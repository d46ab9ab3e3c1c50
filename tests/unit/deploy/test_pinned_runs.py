"""Pinned runs in the runtime (no Kafka): a run executes the build its WorkflowStarted names
for its whole life, replays included; new starts and continue-as-new successors take the
routed build; a run whose build is not loaded is held, never failed nor run on other code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from deploy_pkgs import write_version

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_sim import CONV, Sim  # noqa: E402

from aion import workflow  # noqa: E402
from aion.deploy import build_package, load_build  # noqa: E402
from aion.runtime import Registry  # noqa: E402
from aion.runtime._versions import VersionedRegistry  # noqa: E402


@workflow.defn(name="Greeter")
class OwnGreeter:
    """The engine worker's own (--workflows) Greeter: runs recorded without a version."""

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def release(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.go)
        return f"own: hello {name}"


@pytest.fixture
def versions(tmp_path: Path) -> VersionedRegistry:
    v = VersionedRegistry(Registry([OwnGreeter]))
    for b in ("v1", "v2"):
        pkg = build_package(write_version(tmp_path / "src", b))
        v.add_build(b, load_build(b, pkg.root, [], pkg.data, pkg.sha256, tmp_path / "deploys", base=v.base))
    return v


def _code_version(sim: Sim, wf: str) -> list[str]:
    return [e.body.code_version for e in sim.history(wf) if e.type == "WorkflowStarted"]


@pytest.mark.parametrize("resident", [True, False])
def test_a_run_stays_on_its_build_while_another_is_routed(versions: VersionedRegistry, resident: bool) -> None:
    sim = Sim([], registry=versions, resident=resident)
    sim.start("Greeter", "a", id="own")  # before any route: the worker's own code, no version
    sim.settle()
    versions.set_route("Greeter", "v1")
    sim.start("Greeter", "b", id="pinned-v1")
    sim.settle()
    versions.set_route("Greeter", "v2")
    sim.start("Greeter", "c", id="pinned-v2")
    sim.settle()
    assert _code_version(sim, "own") == [""]
    assert _code_version(sim, "pinned-v1") == ["v1"]
    assert _code_version(sim, "pinned-v2") == ["v2"]
    assert sim.query("pinned-v1", "version") == "v1"
    for wf in ("own", "pinned-v1", "pinned-v2"):
        sim.signal(wf, "release")
    sim.run()
    assert sim.value("own") == "own: hello a"
    assert sim.value("pinned-v1") == "v1: hello b"  # routed to v2 meanwhile: still v1's code
    assert sim.value("pinned-v2") == "v2: hello c"


def test_continue_as_new_takes_the_routed_build(versions: VersionedRegistry) -> None:
    versions.set_route("Looper", "v1")
    sim = Sim([], registry=versions)
    sim.start("Looper", 1, id="loop")
    sim.settle()
    versions.set_route("Looper", "v2")  # while the first run sleeps: its successor takes v2
    sim.run()
    assert _code_version(sim, "loop") == ["v1", "v2"]
    assert sim.value("loop") == "v2"


def test_a_run_whose_build_is_missing_is_held_then_goes_on(versions: VersionedRegistry) -> None:
    versions.set_route("Greeter", "v1")
    sim = Sim([], registry=versions, resident=False)
    sim.start("Greeter", "x", id="wf")
    sim.settle()
    v1 = versions.builds["v1"]
    versions.build_failed("v1", "importing 'verapp' raised ImportError")
    sim.signal("wf", "release")
    sim.settle()
    failed = [e.body for e in sim.history("wf") if e.type == "WorkflowTaskFailed"]
    assert len(failed) == 1 and failed[0].failure.type == "VersionNotLoadedError"
    assert "pinned to build 'v1'" in failed[0].failure.message and "ImportError" in failed[0].failure.message
    # its task timer looks again and again: nothing recorded, never failed, never another build's code
    for _ in range(5):
        assert sim.fire_next_timer()
        sim.drain()
    assert sim.types("wf").count("WorkflowTaskFailed") == 1 and "WorkflowFailed" not in sim.types("wf")
    assert sim.ex("wf").status == "RUNNING"
    versions.add_build("v1", v1)  # deployed again: the next look resumes it on v1
    sim.run()
    assert sim.value("wf") == "v1: hello x"


def test_a_start_routed_to_a_build_not_loaded_is_recorded_and_held(versions: VersionedRegistry) -> None:
    versions.set_route("Greeter", "v9")
    sim = Sim([], registry=versions)
    sim.start("Greeter", "y", id="wf")
    sim.settle()
    assert _code_version(sim, "wf") == ["v9"]
    assert sim.types("wf") == ["WorkflowStarted", "WorkflowTaskFailed"]
    assert CONV is not None
