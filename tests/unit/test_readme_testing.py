"""The README's testing section, followed verbatim: its workflow saved as ``order.py``, its test
as ``test_order.py``, run by pytest in a folder of their own (no Kafka)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_workflow_test_passes(tmp_path: Path) -> None:
    blocks = python_blocks()
    workflow = next(b for b in blocks if "@workflow.defn\nclass Order" in b)
    test = next(b for b in blocks if b.startswith("# test_order.py"))
    (tmp_path / "order.py").write_text(workflow)
    (tmp_path / "test_order.py").write_text(test)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_order.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout
