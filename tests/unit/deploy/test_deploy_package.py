"""Deploy packages without Kafka: deterministic zips and build ids, safe unpacking, two
versions of one package loaded side by side, and the deployments table folded from records."""

from __future__ import annotations

import io
import sys
import zipfile

import pytest
from deploy_pkgs import write_version

from aion.codec import Codec
from aion.deploy import BuildLoadError, DeploymentTable, PackageError, build_package, check_build_id, load_build
from aion.deploy._package import extract_package, package_problem
from aion.model import DeploymentRecord, PackageDeployed, TypeRouted, route_key
from aion.runtime import Registry


def test_the_same_code_gives_the_same_package_and_build_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = build_package(write_version(tmp_path / "a", "v1"))
    pkg_b = write_version(tmp_path / "b", "v1")
    (pkg_b / "__pycache__").mkdir()
    (pkg_b / "__pycache__" / "flows.cpython-311.pyc").write_bytes(b"junk")  # left out
    (pkg_b / ".editor.swp").write_bytes(b"junk")  # left out
    b = build_package(pkg_b)
    assert (a.root, a.files) == ("verapp", 3)
    assert a.data == b.data and a.default_build_id == b.default_build_id and len(a.default_build_id) == 16
    c = build_package(write_version(tmp_path / "c", "v2"))
    assert c.default_build_id != a.default_build_id
    assert sorted(zipfile.ZipFile(io.BytesIO(a.data)).namelist()) == [
        "verapp/__init__.py", "verapp/flows.py", "verapp/helpers.py"]


def test_a_module_file_is_a_package_too_and_bad_paths_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "single.py"
    f.write_text("X = 1\n")
    assert build_package(f).root == "single"
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(PackageError, match="not a Python module file"):
        build_package(tmp_path / "notes.txt")
    (tmp_path / "nopkg").mkdir()
    with pytest.raises(PackageError, match="not a Python package"):
        build_package(tmp_path / "nopkg")
    with pytest.raises(PackageError, match="does not exist"):
        build_package(tmp_path / "missing")


@pytest.mark.parametrize("build_id,ok", [("v1", True), ("2026-12-03.a_b", True), ("", False), ("../x", False),
                                         ("a b", False), ("x" * 65, False), ("-x", False)])
def test_build_ids(build_id: str, ok: bool) -> None:
    assert (check_build_id(build_id) is None) == ok


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("entries,problem", [
    ({"../evil.py": b""}, "unsafe path"),
    ({"/etc/evil.py": b""}, "unsafe path"),
    ({"other/x.py": b""}, "outside its root"),
    ({}, "empty zip"),
])
def test_unsafe_packages_are_refused_before_unpacking(tmp_path, entries, problem) -> None:  # type: ignore[no-untyped-def]
    data = _zip(entries)
    assert problem in (package_problem("app", data) or "")
    with pytest.raises(PackageError, match=problem):
        extract_package("app", data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert "not a zip" in (package_problem("app", b"garbage") or "")


def test_two_versions_of_one_package_run_side_by_side(tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = {k for k in sys.modules if k == "verapp" or k.startswith("verapp.")}
    regs = {}
    for v in ("v1", "v2"):
        pkg = build_package(write_version(tmp_path / "src", v))
        regs[v] = load_build(v, pkg.root, [], pkg.data, pkg.sha256, tmp_path / "deploys", base=Registry())
    assert sorted(regs["v1"].workflows) == ["Greeter", "Looper"]
    g1, g2 = regs["v1"].workflow("Greeter").cls, regs["v2"].workflow("Greeter").cls
    assert g1 is not g2
    assert g1.run.__globals__["PREFIX"] == "v1" and g2.run.__globals__["PREFIX"] == "v2"
    # the process's own verapp (none here) is untouched: the builds live under their namespaces
    assert {k for k in sys.modules if k == "verapp" or k.startswith("verapp.")} == before
    assert regs["v2"].code_id.endswith(":v2")


def test_a_build_that_does_not_import_is_a_load_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pkg = build_package(write_version(tmp_path / "src", "bad", broken=True))
    with pytest.raises(BuildLoadError, match="build 'bad': importing 'verapp' raised ModuleNotFoundError"):
        load_build("bad", pkg.root, [], pkg.data, pkg.sha256, tmp_path / "deploys")
    with pytest.raises(BuildLoadError, match="SHA-256"):
        load_build("bad", pkg.root, [], pkg.data, "0" * 64, tmp_path / "deploys")
    assert "verapp" not in sys.modules


def _deployed(build_id: str, data: bytes = b"PK-ish", **kw) -> DeploymentRecord:  # type: ignore[no-untyped-def]
    import hashlib

    return DeploymentRecord(PackageDeployed(build_id, "app", [], ["Greeter"], hashlib.sha256(data).hexdigest(), data,
                                            1, **kw))


def test_the_table_folds_deploys_routes_and_unloads() -> None:
    t = DeploymentTable()
    assert t.apply("v1", _deployed("v1")).kind == "deploy"
    assert t.apply("v1", _deployed("v1")) is None  # the same package again: nothing changes
    assert t.apply("v2", _deployed("v2", b"other")).kind == "deploy"
    ch = t.apply(route_key("Greeter"), DeploymentRecord(TypeRouted("Greeter", "v2", 2)))
    assert (ch.kind, ch.build_id, ch.workflow_type) == ("route", "v2", "Greeter")
    assert t.route_of("Greeter") == "v2" and t.routed_to("v2") == ["Greeter"]
    t.apply(route_key("Greeter"), DeploymentRecord(TypeRouted("Greeter", "v1", 3)))  # rollback = route back
    assert t.route_of("Greeter") == "v1"
    assert t.apply("v2", None).kind == "unload" and sorted(t.builds) == ["v1"]
    t.apply(route_key("Greeter"), DeploymentRecord(TypeRouted("Greeter", "", 4)))  # back to the workers' own code
    assert t.route_of("Greeter") == "" and t.refused == []


def test_the_table_refuses_what_does_not_fit_and_changes_nothing() -> None:
    codec = Codec()
    t = DeploymentTable()
    t.apply("v1", _deployed("v1"))
    before = (dict(t.builds), dict(t.routes))
    assert t.apply_bytes(b"v9", b"garbage bytes", codec.decode_deployment, "p0@1") is None
    assert t.apply("v9", _deployed("v8")) is None  # key and body disagree
    assert t.apply("v1", _deployed("v1", b"other code")) is None  # a taken build id
    bad = _deployed("v3")
    bad = DeploymentRecord(PackageDeployed("v3", "app", [], [], "0" * 64, b"x", 1))
    assert t.apply("v3", bad) is None  # hash mismatch
    assert t.apply("nope", None) is None  # unload of an unknown build
    assert t.apply("../x", _deployed("../x")) is None  # not a build id
    assert t.apply(route_key("T"), DeploymentRecord(TypeRouted("Other", "v1", 1))) is None
    assert (dict(t.builds), dict(t.routes)) == before
    reasons = [r for _, r in t.refused]
    assert len(reasons) == 7
    assert "undecodable record under key 'v9'" in reasons[0] and t.refused[0][0] == "p0@1"
    assert "not the package of build 'v9'" in reasons[1]
    assert "already deployed with other code" in reasons[2]
    assert "SHA-256" in reasons[3]
    assert "not deployed: nothing to unload" in reasons[4]
    assert "neither a build id nor route/<type>" in reasons[5]
    assert "not the route of that type" in reasons[6]


def test_deployment_records_roundtrip_through_the_codec() -> None:
    codec = Codec()
    for rec in (_deployed("v1", description="git 1a2b"), DeploymentRecord(TypeRouted("Greeter", "v1", 7))):
        assert codec.decode_deployment(codec.encode_deployment(rec)) == rec


def test_an_unloaded_build_leaves_sys_modules(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aion.deploy._loader import forget_build, namespace_of

    pkg = build_package(write_version(tmp_path / "src", "gone"))
    load_build("gone", pkg.root, [], pkg.data, pkg.sha256, tmp_path / "deploys")
    ns = namespace_of("gone") + "."
    assert sorted(k[len(ns):] for k in sys.modules if k.startswith(ns)) == ["verapp", "verapp.flows", "verapp.helpers"]
    forget_build("gone")
    assert not [k for k in sys.modules if k.startswith(ns)]
