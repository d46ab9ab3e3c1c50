"""OpenTelemetry traces across processes: the client (this process, the SDK's in-memory span
exporter), an engine worker and an activity worker (their own processes, AION_TRACING=file:...)
give one trace per workflow whose spans nest in the order the work happened; the span context
travels in the Kafka records' traceparent header."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from test_metrics import free_port, get, until


def _hex(n: int, width: int) -> str:
    return f"{n:0{width}x}"


def from_memory(spans: Any) -> list[dict[str, Any]]:
    return [{"name": s.name, "trace": _hex(s.context.trace_id, 32), "id": _hex(s.context.span_id, 16),
             "parent": _hex(s.parent.span_id, 16) if s.parent is not None else None,
             "attrs": dict(s.attributes or {}), "process": "client"} for s in spans]


def from_file(path: Path, process: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        s = json.loads(line)
        out.append({"name": s["name"], "trace": s["context"]["trace_id"][2:], "id": s["context"]["span_id"][2:],
                    "parent": s["parent_id"][2:] if s.get("parent_id") else None, "attrs": s.get("attributes") or {},
                    "process": process, "service": s["resource"]["attributes"].get("service.name")})
    return out


def one(spans: list[dict[str, Any]], name: str, **where: Any) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name and all(s.get(k) == v for k, v in where.items())]
    assert len(found) == 1, (name, where, [(s["name"], s["parent"]) for s in spans])
    return found[0]


async def test_one_trace_from_client_through_engine_and_activity_worker(cluster, client, tmp_path):  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aion.ops import set_tracer_provider

    engine_file, worker_file = tmp_path / "engine-spans.jsonl", tmp_path / "worker-spans.jsonl"
    eport = free_port()
    cluster.env["AION_TRACING"] = f"file:{engine_file}"
    cluster.engine(metrics_port=eport)
    cluster.env["AION_TRACING"] = f"file:{worker_file}"
    cluster.activities()
    await until(lambda: get(eport, "/readyz")[0] == 200, 90, "engine /readyz", cluster)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    set_tracer_provider(provider)
    tag = uuid.uuid4().hex[:8]
    try:
        hello = await client.start_workflow("Hello", "trace", id=f"trace-hello-{tag}")
        assert await hello.result(timeout=60) == "Hello, trace!"
        approval = await client.start_workflow("Approval", 1, id=f"trace-approval-{tag}")
        await approval.signal("decide", "yes")
        assert await approval.result(timeout=60) == ["yes"]
        assert await approval.query("status") == "decided:1"
    finally:
        set_tracer_provider(None)

    def collected() -> Any:
        spans = from_memory(exporter.get_finished_spans()) + from_file(engine_file, "engine") \
            + from_file(worker_file, "worker")
        names = [s["name"] for s in spans]
        return names.count("RunWorkflow:Hello") >= 2 and "HandleQuery:status" in names and spans

    spans = await until(collected, 30, "spans from all three processes", cluster)
    wid = hello.id

    # start -> step -> activity dispatch -> activity run -> the step that records the result
    start = one(spans, "StartWorkflow:Hello", process="client")
    assert start["parent"] is None and start["attrs"]["aion.workflow.id"] == wid
    steps = [s for s in spans if s["name"] == "RunWorkflow:Hello" and s["attrs"].get("aion.workflow.id") == wid]
    assert len(steps) == 2 and {s["process"] for s in steps} == {"engine"}
    first = one(steps, "RunWorkflow:Hello", parent=start["id"])
    dispatch = one(spans, "StartActivity:greet", parent=first["id"])
    assert dispatch["process"] == "engine" and dispatch["attrs"]["aion.workflow.id"] == wid
    run = one(spans, "RunActivity:greet", parent=dispatch["id"])
    assert run["process"] == "worker" and run["service"] == "aion-activity-worker"
    assert run["attrs"]["aion.activity.id"] == dispatch["attrs"]["aion.activity.id"]
    assert run["attrs"]["aion.run.id"] == first["attrs"]["aion.run.id"]
    last = one(steps, "RunWorkflow:Hello", parent=run["id"])
    assert last["service"] == "aion-engine"
    trace = {start["trace"], first["trace"], dispatch["trace"], run["trace"], last["trace"]}
    assert len(trace) == 1, trace

    # a signal and a query: the engine's handling is the child of the client's send
    sig = one(spans, "SignalWorkflow:decide", process="client")
    assert one(spans, "HandleSignal:decide", parent=sig["id"])["trace"] == sig["trace"]
    query = one(spans, "QueryWorkflow:status", process="client")
    assert one(spans, "HandleQuery:status", parent=query["id"])["process"] == "engine"


async def test_the_cli_traces_its_command_into_the_engine(cluster, tmp_path):  # type: ignore[no-untyped-def]
    """AION_TRACING on the aion command itself: `aion workflow execute` makes the StartWorkflow
    span, and the engine's first step of that workflow is its child (the header crossed Kafka)."""
    import os
    import subprocess
    import sys

    engine_file, cli_file = tmp_path / "engine-spans.jsonl", tmp_path / "cli-spans.jsonl"
    eport = free_port()
    cluster.env["AION_TRACING"] = f"file:{engine_file}"
    cluster.engine(metrics_port=eport)
    cluster.env.pop("AION_TRACING")
    cluster.activities()
    await until(lambda: get(eport, "/readyz")[0] == 200, 90, "engine /readyz", cluster)

    wid = f"trace-cli-{uuid.uuid4().hex[:8]}"
    env = dict(cluster.env, AION_TRACING=f"file:{cli_file}")
    res = subprocess.run([sys.executable, "-m", "aion.cli", "workflow", "execute", "Hello", '"cli"', "--id", wid],
                         env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Hello, cli!" in res.stdout

    def collected() -> Any:
        spans = from_file(cli_file, "cli") + from_file(engine_file, "engine")
        steps = [s for s in spans if s["name"] == "RunWorkflow:Hello" and s["attrs"].get("aion.workflow.id") == wid]
        return spans if steps and any(s["process"] == "cli" for s in spans) else None

    spans = await until(collected, 30, "spans of the CLI and the engine", cluster)
    start = one(spans, "StartWorkflow:Hello", process="cli")
    assert start["service"] == "aion-cli" and start["attrs"]["aion.workflow.id"] == wid
    first = one(spans, "RunWorkflow:Hello", parent=start["id"])
    assert first["process"] == "engine" and first["trace"] == start["trace"]
