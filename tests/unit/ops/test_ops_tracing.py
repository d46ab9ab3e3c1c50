"""aion.ops._tracing without Kafka: headers carry the context, the engine's spans nest, and with
no provider configured nothing is made."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aion.model import ActivityTask, Command, Payload, SignalWorkflow, StartWorkflow
from aion.ops import _tracing
from aion.runtime import effects as fx


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    _tracing.set_tracer_provider(provider)
    try:
        yield exp
    finally:
        _tracing.set_tracer_provider(None)


def test_off_without_a_provider() -> None:
    assert _tracing.tracer() is None  # OpenTelemetry's global provider is the default proxy here
    cmd = Command("c1", "w1", 0, StartWorkflow("Hello", []))
    assert _tracing.client_span(cmd) == (None, None)
    eng = _tracing.EngineTracing()
    assert not eng.on and eng.step(cmd, SimpleNamespace(workflow_type=None, run_id=None), None) is None
    assert eng.headers(object()) is None
    assert _tracing.context_of([("traceparent", b"garbage")]) is None
    assert _tracing.context_of(None) is None


def test_headers_carry_the_span_context(exporter: InMemorySpanExporter) -> None:
    span, headers = _tracing.client_span(Command("c1", "order-1", 0, StartWorkflow("Order", [])))
    assert span is not None and headers is not None
    assert [k for k, _ in headers] == ["traceparent"]
    ctx = _tracing.context_of(headers + [("aion.other", b"x")])
    from opentelemetry import trace

    got = trace.get_current_span(ctx).get_span_context()
    assert (got.trace_id, got.span_id) == (span.get_span_context().trace_id, span.get_span_context().span_id)
    _tracing.end(span)
    (done,) = exporter.get_finished_spans()
    assert done.name == "StartWorkflow:Order" and done.attributes["aion.workflow.id"] == "order-1"


def test_engine_spans_nest_and_effects_get_headers(exporter: InMemorySpanExporter) -> None:
    client, headers = _tracing.client_span(Command("c1", "w1", 0, StartWorkflow("Hello", [])))
    _tracing.end(client)
    eng = _tracing.EngineTracing()
    ex = SimpleNamespace(workflow_type="Hello", run_id="r1")
    span = eng.step(Command("c1", "w1", 0, StartWorkflow("Hello", [])), ex, headers)
    task = ActivityTask("w1", "r1", "1", 1, "greet", [], "q", "Hello", 0)
    dispatch, reply, other = fx.DispatchActivity(task), fx.SendReply("t:0", None), object()  # type: ignore[arg-type]
    eng.stepped(span, ex, SimpleNamespace(effects=[dispatch, reply], refusal=None))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    run, start = spans["RunWorkflow:Hello"], spans["StartActivity:greet"]
    assert run.parent.span_id == client.get_span_context().span_id
    assert start.parent.span_id == run.context.span_id
    assert start.attributes["aion.activity.id"] == "1"

    def parent_of(h: Any) -> int:
        from opentelemetry import trace

        return trace.get_current_span(_tracing.context_of(h)).get_span_context().span_id

    assert parent_of(eng.headers(dispatch)) == start.context.span_id  # the task carries StartActivity
    assert parent_of(eng.headers(reply)) == run.context.span_id
    assert eng.headers(dispatch) is None and eng.headers(other) is None  # taken once; unknown: none
    sig = eng.step(Command("c2", "w1", 0, SignalWorkflow("decide", [Payload("a", b"1")])), ex, None)
    eng.stepped(sig, ex, None)
    assert "HandleSignal:decide" in {s.name for s in exporter.get_finished_spans()}


def test_worker_run_activity_span(exporter: InMemorySpanExporter) -> None:
    w = _tracing.WorkerTracing()
    parent = _tracing.tracer().start_span("StartActivity:greet")
    task = ActivityTask("w1", "r1", "1", 2, "greet", [], "q", "Hello", 0)
    attempt = SimpleNamespace(task=task)
    w.received(("w1", "r1", "1", 2), SimpleNamespace(headers=lambda: _tracing.headers_of(parent)))
    w.started(("w1", "r1", "1", 2), attempt)
    headers = w.finished(attempt, "failed")
    (run,) = [s for s in exporter.get_finished_spans() if s.name == "RunActivity:greet"]
    assert run.parent.span_id == parent.get_span_context().span_id
    assert run.attributes["aion.activity.attempt"] == 2 and not run.status.is_ok
    assert headers and w.finished(attempt, "failed") is None


def test_configure_refuses_an_unknown_exporter() -> None:
    assert _tracing.configure(None, "x") is False and _tracing.configure("off", "x") is False
    with pytest.raises(SystemExit, match="otlp, console or file:PATH"):
        _tracing.configure("zipkin", "x")
