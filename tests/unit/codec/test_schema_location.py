"""Where the codec finds the Avro schemas: an installed wheel's copy first, else the source tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aion.codec import SchemaLoadError, locate_schemas_dir
from aion.codec import _schemas

SOURCE = Path(__file__).resolve().parents[3] / "schemas"


def test_source_tree_schemas_when_no_packaged_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AION_SCHEMAS_DIR", raising=False)
    assert not _schemas.packaged_schemas_dir().exists()  # a source tree has no copy
    assert locate_schemas_dir() == SOURCE


def test_packaged_copy_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AION_SCHEMAS_DIR", raising=False)
    shutil.copytree(SOURCE, tmp_path / "_schemas")
    monkeypatch.setattr(_schemas, "packaged_schemas_dir", lambda: tmp_path / "_schemas")
    assert locate_schemas_dir() == tmp_path / "_schemas"


def test_no_schemas_anywhere_names_every_place_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AION_SCHEMAS_DIR", raising=False)
    monkeypatch.setattr(_schemas, "packaged_schemas_dir", lambda: tmp_path / "pkg")
    monkeypatch.setattr(_schemas, "source_schemas_dir", lambda: tmp_path / "src")
    with pytest.raises(SchemaLoadError) as err:
        locate_schemas_dir()
    assert str(tmp_path / "pkg") in str(err.value) and str(tmp_path / "src") in str(err.value)
    assert "AION_SCHEMAS_DIR" in str(err.value)
