"""Versioned deploys, the parts without Kafka: packages of workflow code, loading a version
under its own module namespace, and the deployments table folded from the topic's records.

- :func:`build_package` zips a module file or a package directory deterministically and
  names it (the user's build id, or a content hash); :func:`extract_package` unpacks one
  safely.
- :func:`load_build` imports a build's modules so that several versions of the same module
  names live in one process, and returns a :class:`~aion.runtime.Registry` of its workflows.
- :class:`DeploymentTable` is the state of the ``<prefix>.deployments`` topic: builds and
  routes, refused records with their reasons.

The engine follows the topic (``aion.engine._deployments``); the client writes it
(``aion.client.Deployments``); ``aion deploy`` is the command line.
"""

from ._loader import BuildLoadError, load_build, load_package_path
from ._package import (
    BUILD_ID_MAX, Package, PackageError, build_package, check_build_id, extract_package, package_problem,
)
from ._table import DeploymentTable

__all__ = [
    "Package", "PackageError", "BuildLoadError", "build_package", "extract_package", "check_build_id",
    "package_problem", "load_build", "load_package_path", "DeploymentTable", "BUILD_ID_MAX",
]
