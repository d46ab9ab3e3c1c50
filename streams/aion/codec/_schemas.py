"""Loading the Avro schemas (``schemas/*.avsc``) by name, their fingerprints and runtime forms.

Layout on disk: one named type per file, ``<namespace>.<Name>.avsc``; references between files
use full names and are resolved by fastavro's ``load_schema`` from the same directory. Older
schema versions live in overlay directories (``schemas/history/<version>/`` and any
``extra_schemas_dirs``): a file there replaces the current file of the same name, every other
name comes from the current ``schemas/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from fastavro import parse_schema
from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import load_schema, to_parsing_canonical_form

from ._errors import CodecError, SchemaLoadError

#: The top-level schema of each kind of message the codec writes.
ROOT_SCHEMAS: dict[str, str] = {
    "event": "aion.events.Event",
    "event_key": "aion.events.EventKey",
    "command": "aion.commands.Command",
    "reply": "aion.commands.Reply",
    "task": "aion.tasks.TaskMessage",
    "deployment": "aion.deployments.DeploymentRecord",
}

SCHEMAS_DIR_ENV = "AION_SCHEMAS_DIR"
HISTORY_SUBDIR = "history"


def packaged_schemas_dir() -> Path:
    """Where an installed wheel keeps its copy of ``schemas/``: ``aion/_schemas/``.

    The build (``setup.py``) copies the top-level ``schemas/`` there; a source tree or an
    editable install has no such folder and reads ``schemas/`` itself.
    """
    return Path(__file__).resolve().parents[1] / "_schemas"


def source_schemas_dir() -> Path:
    """The top-level ``schemas/`` of a source tree (``streams/aion/codec`` -> ``../../../schemas``)."""
    return Path(__file__).resolve().parents[3] / "schemas"


def locate_schemas_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the current ``.avsc`` files.

    Order: ``explicit``, then ``$AION_SCHEMAS_DIR``, then the copy an installed wheel ships
    (``aion/_schemas``), then the source tree's top-level ``schemas/``.
    """
    marker_name = f"{ROOT_SCHEMAS['event']}.avsc"
    if explicit is not None:
        candidates = [(Path(explicit), "the schemas_dir argument")]
    elif os.environ.get(SCHEMAS_DIR_ENV):
        candidates = [(Path(os.environ[SCHEMAS_DIR_ENV]), f"${SCHEMAS_DIR_ENV}")]
    else:
        candidates = [(packaged_schemas_dir(), "the installed package"),
                      (source_schemas_dir(), "the source tree's schemas/")]
    for candidate, _ in candidates:
        if (candidate / marker_name).is_file():
            return candidate
    tried = "; ".join(f"{c} (from {origin})" for c, origin in candidates)
    raise SchemaLoadError(
        f"Avro schemas not found: no {marker_name} in {tried}. "
        f"Reinstall aion-streams from a wheel or the project folder, or set {SCHEMAS_DIR_ENV} "
        "to the project's schemas/ directory (or pass Codec(schemas_dir=...))."
    )


class _LayeredRepository(AbstractSchemaRepository):
    """Finds ``<full name>.avsc`` in the first directory that has it."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    def load(self, name: str) -> Any:
        for d in self.dirs:
            path = d / f"{name}.avsc"
            if path.is_file():
                try:
                    return json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as exc:
                    raise SchemaRepositoryError(f"{path} is not valid JSON: {exc}") from exc
        raise SchemaRepositoryError(
            f"no {name}.avsc in {', '.join(str(d) for d in self.dirs)}"
        )


def _clean(schema: Any) -> Any:
    """A parsed fastavro schema without fastavro's private bookkeeping keys."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_clean(s) for s in schema]
    return schema


def _strip_logical_types(schema: Any) -> Any:
    """The schema without ``logicalType`` annotations.

    The model keeps raw Avro values (timestamps are epoch milliseconds as ``int``), so the
    runtime reader must not turn them into ``datetime``. Logical types are not part of the
    Parsing Canonical Form: the fingerprint does not change.
    """
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(s) for s in schema]
    return schema


def rabin_fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO fingerprint as the 8 bytes of the single-object header (little-endian)."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form, "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """One complete (self-contained) version of a top-level schema."""

    name: str  # full name of the top-level record, e.g. aion.events.Event
    canonical_form: str
    fingerprint: bytes  # CRC-64-AVRO, 8 bytes little-endian as in the message header
    schema_json: str  # expanded, self-contained, with docs and logical types
    parsed: Any  # fastavro-parsed runtime form (logical types stripped)
    source: str  # where it came from (directory or registry id), for error messages

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @classmethod
    def from_json(cls, schema: Any, source: str) -> "WriterSchema":
        expanded = _clean(schema)
        if not isinstance(expanded, dict) or expanded.get("type") not in ("record", "error"):
            raise CodecError(f"schema from {source} is not an Avro record schema")
        runtime = parse_schema(_strip_logical_types(expanded))
        assert isinstance(runtime, dict)  # a record schema parses to a dict
        canonical = to_parsing_canonical_form(runtime)
        return cls(
            name=runtime["name"],
            canonical_form=canonical,
            fingerprint=rabin_fingerprint(canonical),
            schema_json=json.dumps(expanded),
            parsed=runtime,
            source=source,
        )


@dataclass(frozen=True, eq=False)  # hashed by identity: one per loaded directory set
class SchemaSet:
    """The current schema of each kind plus every known older writer schema, by fingerprint."""

    directory: Path
    current: dict[str, WriterSchema]  # kind -> schema
    by_fingerprint: dict[bytes, WriterSchema]


def _load_root(name: str, dirs: list[Path]) -> WriterSchema:
    try:
        loaded = load_schema(name, repo=_LayeredRepository(dirs))
        return WriterSchema.from_json(loaded, source=str(dirs[0]))
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaLoadError(
            f"cannot load Avro schema {name} from {', '.join(map(str, dirs))}: "
            f"{type(exc).__name__}: {exc}. Check that every referenced type has a valid "
            "<namespace>.<Name>.avsc file (full names in references, defaults matching types)."
        ) from exc


def _overlay_dirs(base: Path, extra: Iterable[Path]) -> list[Path]:
    history = base / HISTORY_SUBDIR
    dirs = sorted(p for p in history.iterdir() if p.is_dir()) if history.is_dir() else []
    return dirs + list(extra)


@lru_cache(maxsize=16)
def _load_schema_set(directory: Path, extra: tuple[Path, ...]) -> SchemaSet:
    current = {kind: _load_root(name, [directory]) for kind, name in ROOT_SCHEMAS.items()}
    by_fp: dict[bytes, WriterSchema] = {}
    for overlay in _overlay_dirs(directory, extra):
        if not overlay.is_dir():
            raise SchemaLoadError(
                f"older-schemas directory {overlay} does not exist; fix extra_schemas_dirs"
            )
        for name in ROOT_SCHEMAS.values():
            old = _load_root(name, [overlay, directory])
            by_fp.setdefault(old.fingerprint, old)
    # The current versions win over identical older copies (same fingerprint, same meaning).
    for ws in current.values():
        by_fp[ws.fingerprint] = ws
    return SchemaSet(directory=directory, current=current, by_fingerprint=by_fp)


def load_schema_set(
    schemas_dir: str | os.PathLike[str] | None = None,
    extra_schemas_dirs: Iterable[str | os.PathLike[str]] = (),
) -> SchemaSet:
    """Load (once per process and set of directories) the current and older schemas."""
    directory = locate_schemas_dir(schemas_dir).resolve()
    extra = tuple(Path(p).resolve() for p in extra_schemas_dirs)
    return _load_schema_set(directory, extra)
