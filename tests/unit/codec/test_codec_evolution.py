"""Records written with an older schema version decode with the current reader schema."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from aion import model as m
from aion.codec import Codec, CodecError, SchemaLoadError

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
V1 = Path(__file__).resolve().parent / "schemas_v1"


@pytest.fixture(scope="module")
def v1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete, flat copy of the v1 schemas (current files overlaid with schemas_v1/)."""
    d = tmp_path_factory.mktemp("v1-flat")
    for f in SCHEMAS.glob("*.avsc"):
        shutil.copy(f, d)
    for f in V1.glob("*.avsc"):
        shutil.copy(f, d)
    return d


def old_writer(v1_dir: Path, name: str, record: dict) -> bytes:
    """Bytes as a v1 producer wrote them: C3 01 + v1 fingerprint + v1 body (plain fastavro)."""
    schema = load_schema(str(v1_dir / f"{name}.avsc"))
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    schemaless_writer(buf, schema, record)
    return buf.getvalue()


def v1_event(body_name: str, body: dict) -> dict:
    return {
        "workflow_id": "order-1", "seq": 4, "run_id": "run-1", "recorded_at_ms": 1_700_000_000_000,
        "body": (body_name, body), "command_id": "cmd-4",
    }


V1_FAILURE = {"type": "Boom", "message": "m", "details": None, "non_retryable": True,
              "cause": {"type": "Inner", "message": "i", "details": None, "non_retryable": False, "cause": None}}


def test_v1_schemas_really_differ_from_current(v1_dir: Path) -> None:
    for name in ("aion.events.Event", "aion.commands.Command"):
        old = to_parsing_canonical_form(load_schema(str(v1_dir / f"{name}.avsc")))
        new = to_parsing_canonical_form(load_schema(str(SCHEMAS / f"{name}.avsc")))
        assert old != new


def test_old_event_decodes_with_new_field_defaults(v1_dir: Path) -> None:
    data = old_writer(v1_dir, "aion.events.Event", v1_event("aion.events.ActivityStarted", {"activity_id": "act-1", "attempt": 2}))
    ev = Codec(extra_schemas_dirs=[V1]).decode_event(data)
    assert ev == m.Event("order-1", 4, "run-1", 1_700_000_000_000, m.ActivityStarted("act-1", 2, worker=""), "cmd-4")


def test_old_nested_failure_gets_default_stack(v1_dir: Path) -> None:
    data = old_writer(v1_dir, "aion.events.Event", v1_event("aion.events.WorkflowFailed", {"failure": V1_FAILURE}))
    failure = Codec(extra_schemas_dirs=[V1]).decode_event(data).body.failure
    assert failure == m.Failure("Boom", "m", non_retryable=True, stack="", cause=m.Failure("Inner", "i"))


def test_old_union_branch_resolves_by_name(v1_dir: Path) -> None:
    # MarkerRecorded is the last branch of the v1 union but not of the current one.
    data = old_writer(v1_dir, "aion.events.Event", v1_event(
        "aion.events.MarkerRecorded",
        {"marker_name": "patch", "marker_id": "p1", "value": {"content_type": "c", "data": b"1"}},
    ))
    ev = Codec(extra_schemas_dirs=[V1]).decode_event(data)
    assert ev.body == m.MarkerRecorded("patch", "p1", m.Payload("c", b"1"))


def test_old_command_decodes_with_new_map_default(v1_dir: Path) -> None:
    start = {
        "workflow_type": "Order", "input": [], "task_queue": "q", "id_reuse_policy": "REJECT_DUPLICATE",
        "request_id": "r", "execution_timeout_ms": 5, "run_timeout_ms": None, "parent_workflow_id": None,
        "parent_run_id": None, "parent_close_policy": "TERMINATE", "wait_result": True,
    }
    cmd = {"command_id": "c1", "workflow_id": "order-1", "sent_at_ms": 12, "body": ("aion.commands.StartWorkflow", start), "reply_to": None}
    got = Codec(extra_schemas_dirs=[V1]).decode_command(old_writer(v1_dir, "aion.commands.Command", cmd))
    assert got.body == m.StartWorkflow(
        "Order", [], task_queue="q", id_reuse_policy="REJECT_DUPLICATE", request_id="r",
        execution_timeout_ms=5, search_attributes={}, wait_result=True,
    )


def test_without_the_old_schema_the_error_names_its_fingerprint(v1_dir: Path) -> None:
    data = old_writer(v1_dir, "aion.events.Event", v1_event("aion.events.TimerFired", {"timer_id": "t"}))
    with pytest.raises(CodecError) as err:
        Codec().decode_event(data)
    assert err.value.fingerprint == data[2:10].hex()
    assert data[2:10].hex() in str(err.value)


def test_history_dir_under_schemas_is_loaded_automatically(tmp_path: Path, v1_dir: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "schemas")
    shutil.copytree(V1, tmp_path / "schemas" / "history" / "test-old")
    data = old_writer(v1_dir, "aion.events.Event", v1_event("aion.events.TimerFired", {"timer_id": "t"}))
    assert Codec(schemas_dir=tmp_path / "schemas").decode_event(data).body == m.TimerFired("t")


def test_schemas_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "elsewhere")
    monkeypatch.setenv("AION_SCHEMAS_DIR", str(tmp_path / "elsewhere"))
    codec = Codec()
    assert codec.decode_event_key(codec.encode_event_key(m.EventKey("w", 1))) == m.EventKey("w", 1)
    monkeypatch.setenv("AION_SCHEMAS_DIR", str(tmp_path / "missing"))
    with pytest.raises(SchemaLoadError, match="AION_SCHEMAS_DIR"):
        Codec()


def test_missing_referenced_schema_file_is_a_clear_error(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "s")
    (tmp_path / "s" / "aion.events.TimerFired.avsc").unlink()
    with pytest.raises(SchemaLoadError, match="aion.events.Event"):
        Codec(schemas_dir=tmp_path / "s")


def test_a_schema_that_does_not_mirror_the_model_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "s")
    path = tmp_path / "s" / "aion.events.TimerFired.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][0]["name"] = "timer"
    path.write_text(json.dumps(schema))
    with pytest.raises(CodecError, match="aion.events.TimerFired does not mirror TimerFired"):
        Codec(schemas_dir=tmp_path / "s")


def test_a_field_type_that_does_not_mirror_the_model_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "s")
    path = tmp_path / "s" / "aion.events.TimerStarted.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][1]["type"] = "string"
    path.write_text(json.dumps(schema))
    with pytest.raises(CodecError, match="aion.events.TimerStarted.fire_at_ms has type string"):
        Codec(schemas_dir=tmp_path / "s")


def test_an_invalid_schema_file_is_a_schema_load_error(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "s")
    path = tmp_path / "s" / "aion.events.TimerStarted.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][1]["default"] = "not a number"
    path.write_text(json.dumps(schema))
    with pytest.raises(SchemaLoadError, match="aion.events.Event"):
        Codec(schemas_dir=tmp_path / "s")


def test_a_missing_extra_schemas_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(SchemaLoadError, match="nowhere"):
        Codec(extra_schemas_dirs=[tmp_path / "nowhere"])


SHIPPED_HISTORY = sorted(p.name for p in (SCHEMAS / "history").iterdir() if p.is_dir())


def test_every_schema_change_left_its_predecessor_in_the_history() -> None:
    """v1 is before pause/resume, v2 before reopen and updates, v3 before workflow retry
    policies, cron schedules and memos; each differs from the next."""
    assert SHIPPED_HISTORY[:3] == ["v1", "v2", "v3"]
    forms = [to_parsing_canonical_form(load_schema(str(SCHEMAS / "history" / v / "aion.events.Event.avsc")))
             for v in SHIPPED_HISTORY]
    forms.append(to_parsing_canonical_form(load_schema(str(SCHEMAS / "aion.events.Event.avsc"))))
    assert len(set(forms)) == len(forms), "two versions share one Event schema: a snapshot was taken twice"


@pytest.mark.parametrize("version", SHIPPED_HISTORY)
def test_records_written_by_an_older_release_decode_with_the_shipped_history(version: str) -> None:
    """schemas/history/<version> holds the schemas of an older release (v1: before
    WorkflowPaused/WorkflowResumed joined the unions; v2: before reopen and updates): records an
    older engine or client wrote decode with the current codec."""
    old = SCHEMAS / "history" / version
    data = old_writer(old, "aion.events.Event", v1_event("aion.events.SearchAttributesUpserted", {"attributes": {"a": "b"}}))
    assert Codec().decode_event(data).body == m.SearchAttributesUpserted({"a": "b"})
    cmd = old_writer(old, "aion.commands.Command", {
        "command_id": "c", "workflow_id": "w", "sent_at_ms": 5,
        "body": ("aion.commands.FireTimer", {"run_id": "r", "timer_id": "t", "fire_at_ms": 9}), "reply_to": None})
    assert Codec().decode_command(cmd).body == m.FireTimer("r", "t", 9)


def test_a_v3_start_decodes_without_retry_cron_or_memo() -> None:
    """A WorkflowStarted and a StartWorkflow written before retry policies, cron schedules and
    memos (schemas/history/v3) decode with their defaults: no retry, no cron, no memo, the
    code starts at once."""
    old = SCHEMAS / "history" / "v3"
    started = {
        "workflow_type": "Order", "input": [], "task_queue": "q", "previous_run_id": None,
        "parent_workflow_id": None, "parent_run_id": None, "parent_close_policy": "TERMINATE",
        "execution_timeout_ms": None, "run_timeout_ms": None, "search_attributes": {"a": "b"},
        "code_version": "", "attempt": 2, "request_id": "r", "reply_to": None,
    }
    ev = Codec().decode_event(old_writer(old, "aion.events.Event", v1_event("aion.events.WorkflowStarted", started)))
    assert ev.body == m.WorkflowStarted("Order", [], task_queue="q", search_attributes={"a": "b"}, attempt=2,
                                        request_id="r")
    assert ev.body.retry_policy is None and ev.body.cron_schedule == "" and ev.body.memo == {}
    assert ev.body.first_task_backoff_ms == 0 and ev.body.initiator == ""
