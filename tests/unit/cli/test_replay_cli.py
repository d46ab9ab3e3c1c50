"""`aion replay FILE --workflows MODULE`: a recorded history against current and changed code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

from aion.cli._main import cli

GOLDEN = Path(__file__).parents[2] / "golden" / "histories" / "one_activity.json"

CHANGED = '''
from datetime import timedelta
from aion import activity, workflow

@activity.defn
async def shout(name: str) -> str:
    return name.upper()

@workflow.defn
class OneActivity:
    @workflow.run
    async def run(self, name: str) -> str:
        # changed code: a different activity where the history recorded `greet`
        return await workflow.execute_activity(shout, name, start_to_close_timeout=timedelta(seconds=30))
'''


def test_replay_file_ok_and_divergence(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(GOLDEN.parents[1]))
    runner = CliRunner()
    res = runner.invoke(cli, ["replay", str(GOLDEN), "--workflows", "golden_workflows", "--json"], obj={})
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ok"] is True

    (tmp_path / "changed_wf.py").write_text(CHANGED)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("changed_wf", None)
    res = runner.invoke(cli, ["replay", str(GOLDEN), "--workflows", "changed_wf", "--json"], obj={})
    assert res.exit_code == 1
    report = json.loads(res.output.splitlines()[0])
    assert report["ok"] is False
    assert "seq 2" in report["divergence"] or "seq=2" in report["divergence"], report["divergence"]
    assert "shout" in report["divergence"] and "greet" in report["divergence"]
