"""Build hook, nothing else: every setting of the distribution is in pyproject.toml.

The Avro schemas have one source, the top-level ``schemas/`` folder. A wheel (and so
``pip install .``) gets a copy of it as the package data folder ``aion/_schemas/``, made here
at build time, because an installed package cannot reach ``../schemas`` of a source tree.
Editable installs read ``schemas/`` in place and get no copy.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SCHEMAS = Path("schemas")  # setuptools runs with the project (or unpacked sdist) as cwd
PACKAGED = Path("aion", "_schemas")


class BuildPyWithSchemas(build_py):
    """``build_py`` that also copies ``schemas/**/*.avsc`` to ``aion/_schemas/`` in the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        files = sorted(SCHEMAS.rglob("*.avsc"))
        if not files:
            raise SystemExit(f"setup.py: no .avsc file under {SCHEMAS.resolve()}: the wheel would "
                             "have no Avro schemas (build from the project folder or its sdist)")
        for src in files:
            dest = Path(self.build_lib) / PACKAGED / src.relative_to(SCHEMAS)
            self.mkpath(str(dest.parent))
            self.copy_file(str(src), str(dest))


setup(cmdclass={"build_py": BuildPyWithSchemas})
