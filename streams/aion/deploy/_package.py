"""A deploy package: a module file or a package directory, zipped the same way every time.

The zip holds the files under their top-level name (``myapp.py``, or ``myapp/...``), sorted,
with fixed times and modes and without ``__pycache__``/``*.pyc``/hidden files, so the same
source gives the same bytes. Its default build id is the first 16 hex digits of the SHA-256 of
the files' names and contents (not of the zip's bytes, which could change with the zlib
version): the same code deployed from two machines is one build.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..exceptions import AionError

__all__ = ["Package", "PackageError", "build_package", "extract_package", "check_build_id", "package_problem",
           "BUILD_ID_MAX"]

#: Longest build id (it names a folder and a module namespace).
BUILD_ID_MAX = 64
_BUILD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Most bytes a package may unpack to (a zip bomb on the topic is refused, not extracted).
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
MAX_FILES = 5_000
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(AionError, ValueError):
    """A package cannot be built, read or loaded: the message says which file or build and why."""


@dataclass(frozen=True)
class Package:
    """A built package: ``data`` is the zip, ``root`` the top-level module or package name."""

    root: str
    data: bytes
    content_hash: str  # hex SHA-256 of the files' names and contents
    files: int

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the zip's bytes (checked by every engine worker before loading)."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def default_build_id(self) -> str:
        return self.content_hash[:16]


def check_build_id(build_id: str) -> str | None:
    """Why ``build_id`` cannot name a build, or None."""
    if not isinstance(build_id, str) or not build_id:
        return "a build id must be a non-empty string"
    if len(build_id) > BUILD_ID_MAX:
        return f"build id {build_id[:80]!r} is longer than {BUILD_ID_MAX} characters"
    if not _BUILD_ID.match(build_id):
        return (f"build id {build_id[:80]!r} may hold only letters, digits, '.', '_' and '-', and starts with a "
                "letter or digit")
    return None


def _skip(rel: PurePosixPath) -> bool:
    return any(part == "__pycache__" or part.startswith(".") for part in rel.parts) or rel.suffix in (".pyc", ".pyo")


def build_package(path: str | Path) -> Package:
    """Zip the module file (``app.py``) or package directory (``app/`` with ``__init__.py``)
    at ``path``. Raises :class:`PackageError` saying what is wrong with it."""
    p = Path(path)
    if p.is_file():
        if p.suffix != ".py" or not _IDENT.match(p.stem):
            raise PackageError(f"{p} is not a Python module file (NAME.py, NAME an identifier): deploy a module file "
                               "or a package directory")
        root, files = p.stem, [(PurePosixPath(p.name), p)]
    elif p.is_dir():
        if not (p / "__init__.py").is_file() or not _IDENT.match(p.name):
            raise PackageError(f"{p} is not a Python package (a directory named as an identifier, with an "
                               "__init__.py): deploy a module file or a package directory")
        root = p.name
        files = []
        for f in sorted(p.rglob("*")):
            rel = PurePosixPath(p.name) / f.relative_to(p).as_posix()
            if f.is_file() and not f.is_symlink() and not _skip(rel.relative_to(p.name)):
                files.append((rel, f))
    else:
        raise PackageError(f"{p} does not exist: give the path of a module file or a package directory")
    files.sort(key=lambda t: str(t[0]))
    content = hashlib.sha256()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, f in files:
            data = f.read_bytes()
            content.update(str(rel).encode() + b"\0" + hashlib.sha256(data).digest())
            info = zipfile.ZipInfo(str(rel), date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return Package(root=root, data=buf.getvalue(), content_hash=content.hexdigest(), files=len(files))


def package_problem(root: str, data: bytes) -> str | None:
    """Why the zip ``data`` is not a package of ``root`` that may be extracted, or None: every
    entry under ``root/`` (or ``root.py`` alone), no absolute or ``..`` path, a bounded size."""
    if not _IDENT.match(root or ""):
        return f"root {root[:80]!r} is not a module name"
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        return f"the package is not a zip file ({type(exc).__name__}: {exc})"
    if not infos:
        return "the package is an empty zip"
    if len(infos) > MAX_FILES:
        return f"the package has {len(infos)} files, more than {MAX_FILES}"
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or not parts:
            return f"the package holds the unsafe path {name[:200]!r}"
        if not (name == f"{root}.py" or parts[0] == root and len(parts) > 1):
            return f"the package holds {name[:200]!r}, outside its root {root!r}"
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            return f"the package unpacks to more than {MAX_UNPACKED_BYTES} bytes"
    return None


def extract_package(root: str, data: bytes, dest: Path) -> None:
    """Unpack the package into ``dest`` (created; written to a temporary folder first, then
    renamed, so a half-written folder is never used). Raises :class:`PackageError`."""
    problem = package_problem(root, data)
    if problem is not None:
        raise PackageError(problem)
    if dest.is_dir():
        return  # content-addressed (the folder name holds the zip's hash): already there
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = tmp.joinpath(*PurePosixPath(info.filename).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                body = src.read(MAX_UNPACKED_BYTES + 1)
            if len(body) > info.file_size:  # a lying header
                raise PackageError(f"the package's entry {info.filename!r} is larger than its header says")
            target.write_bytes(body)
    tmp.rename(dest)
