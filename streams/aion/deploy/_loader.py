"""Loading a build: its modules imported under their own names, kept apart from every other
version of the same modules in this process.

A build of ``myapp`` is imported as ``myapp`` — so the package's absolute imports
(``from myapp.activities import charge``) and relative ones both work — from its extracted
folder, with every ``myapp*`` module of the process set aside for the time of the import (under
the import lock). Once imported, the build's modules are moved to
``sys.modules["_aion_builds.<build>.<name>"]`` and the process's own ``myapp*`` modules are put
back. Its classes and functions keep their module globals, so two versions of
``myapp.workflows`` run side by side in one engine worker, each on its own code.

What a build cannot do: import one of its own modules *lazily*, inside a function that runs
later (``import myapp.x`` in a workflow's ``run``) — that finds the process's ``myapp``, or
none. Import at module level, as workflow code should anyway.
"""

from __future__ import annotations

import _imp
import hashlib
import importlib
import pkgutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

from ..exceptions import AionError
from ._package import extract_package

__all__ = ["BuildLoadError", "load_build", "load_package_path", "namespace_of", "discover_workflows", "forget_build"]

#: sys.modules prefix under which loaded builds live.
NAMESPACE = "_aion_builds"


class BuildLoadError(AionError):
    """A build's code could not be imported, or defines no workflow: the message says which
    build, which module and why."""


def namespace_of(build_id: str) -> str:
    """The ``sys.modules`` prefix of a build's modules (a hash: build ids may hold '.' and '-')."""
    return f"{NAMESPACE}.b{hashlib.sha1(build_id.encode()).hexdigest()[:16]}"


def _of_root(root: str) -> dict[str, ModuleType]:
    return {k: v for k, v in list(sys.modules.items()) if k == root or k.startswith(root + ".")}


@contextmanager
def _isolated(root: str, src: Path, namespace: str) -> Iterator[None]:
    """Import ``root``'s modules from ``src`` as themselves; afterwards they move under
    ``namespace`` and the process's own ``root*`` modules come back."""
    _imp.acquire_lock()  # re-entrant: this thread's imports go on, other threads' wait
    saved = _of_root(root)
    try:
        for k in saved:
            del sys.modules[k]
        sys.path.insert(0, str(src))
        importlib.invalidate_caches()
        try:
            yield
        finally:
            try:
                sys.path.remove(str(src))
            except ValueError:
                pass
            sys.path_importer_cache.pop(str(src), None)
            for k, mod in _of_root(root).items():
                del sys.modules[k]
                sys.modules[f"{namespace}.{k}"] = mod
            sys.modules.update(saved)
    finally:
        _imp.release_lock()


def forget_build(build_id: str) -> None:
    """Drop an unloaded build's modules from ``sys.modules`` (its code goes once nothing holds it)."""
    prefix = namespace_of(build_id) + "."
    for k in [k for k in sys.modules if k.startswith(prefix)]:
        del sys.modules[k]


def discover_workflows(modules: Sequence[ModuleType]) -> list[Any]:
    """The ``@workflow.defn`` classes defined (or imported) at the top of ``modules``."""
    from ..workflow import _definition as wdef

    found: list[Any] = []
    for mod in modules:
        for value in vars(mod).values():
            if isinstance(value, type) and vars(value).get(wdef._ATTR) is not None and value not in found:
                found.append(value)
    return found


def _import_all(build_id: str, root: str, modules: Sequence[str], src: Path) -> list[ModuleType]:
    names = list(modules)
    out: list[ModuleType] = []
    with _isolated(root, src, namespace_of(build_id)):
        try:
            top = importlib.import_module(root)
            if not names:
                names = [root]
                if hasattr(top, "__path__"):  # a package: every module of it
                    names += [m.name for m in pkgutil.walk_packages(top.__path__, root + ".")]
            for name in names:
                if name != root and not name.startswith(root + "."):
                    raise BuildLoadError(f"build {build_id!r}: module {name!r} is not part of its package {root!r}")
                out.append(importlib.import_module(name))
        except BuildLoadError:
            raise
        except BaseException as exc:  # SystemExit from user code too: nothing of it may stop the worker
            where = ""
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None:
                where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
            raise BuildLoadError(f"build {build_id!r}: importing {root!r} raised {type(exc).__name__}: {exc}{where}") from None
    return out


def load_build(build_id: str, root: str, modules: Sequence[str], package: bytes, sha256: str, deploys_dir: Path,
               *, base: Any = None) -> Any:
    """Extract (once: the folder is content-addressed) and import a build; return a
    :class:`~aion.runtime.Registry` of its workflows with ``base``'s settings (converter,
    failure policy, history limits). Raises :class:`BuildLoadError`."""
    from ..runtime import Registry

    if hashlib.sha256(package).hexdigest() != sha256:
        raise BuildLoadError(f"build {build_id!r}: the package's SHA-256 is not the one its record names "
                             f"({sha256[:16]}...): the record is corrupt; deploy the build again")
    dest = deploys_dir / f"{namespace_of(build_id).rsplit('.', 1)[1]}-{sha256[:16]}"
    try:
        deploys_dir.mkdir(parents=True, exist_ok=True)
        extract_package(root, package, dest)
    except Exception as exc:
        raise BuildLoadError(f"build {build_id!r}: cannot unpack its package: {exc}") from None
    mods = _import_all(build_id, root, modules, dest)
    workflows = discover_workflows(mods)
    if not workflows:
        raise BuildLoadError(f"build {build_id!r}: no @workflow.defn class in {', '.join(m.__name__ for m in mods)}")
    kw: dict[str, Any] = {}
    if base is not None:
        kw = dict(data_converter=getattr(base, "_converter", None), failure_policy=base.failure_policy,
                  history_limits=base.history_limits, code_id=f"{base.code_id}:{build_id}")
    try:
        return Registry(workflows=workflows, **kw)
    except ValueError as exc:
        raise BuildLoadError(f"build {build_id!r}: {exc}") from None


def load_package_path(build_id: str, root: str, modules: Sequence[str], package: bytes) -> Any:
    """Load a package as an engine worker would, from a temporary folder, and return its
    Registry: what ``aion deploy create`` checks before publishing, and what ``aion replay
    check --package`` replays against."""
    with tempfile.TemporaryDirectory(prefix="aion-deploy-") as tmp:
        return load_build(build_id, root, modules, package, hashlib.sha256(package).hexdigest(), Path(tmp))
