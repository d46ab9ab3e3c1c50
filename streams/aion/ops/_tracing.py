"""OpenTelemetry traces across client, engine and activity workers (off unless configured).

A trace follows a workflow across processes; the span context travels in Kafka record headers
(W3C ``traceparent`` / ``tracestate``):

=============================  ==========================  =====================================
span                           where                       parent
=============================  ==========================  =====================================
``StartWorkflow:<type>``       client, sending the start   the caller's current span, if any
``SignalWorkflow:<name>``,     client, sending             the caller's current span
``QueryWorkflow:<name>``, ...
``RunWorkflow:<type>``         engine, one workflow step   the command's header (a client span,
                               (a command run live)        an activity run, another workflow's
                                                           step); none for timer fires
``HandleSignal:<name>``,       engine, a signal or query   the command's header
``HandleQuery:<name>``
``StartActivity:<type>``       engine, dispatching an      the step that scheduled it
                               activity attempt
``RunActivity:<type>``         activity worker, the        ``StartActivity`` (the task's header)
                               attempt's run
=============================  ==========================  =====================================

so a workflow's trace reads: start → step → activity dispatch → activity run → the step that
records its result (and closes the workflow) → the reply. Attributes: ``aion.workflow.id``,
``aion.run.id``, ``aion.activity.id``, ``aion.activity.attempt``, ``aion.command.type``. A
replay (rebuilding a workflow from its history) runs no live step, so it makes no span.

**On or off.** Spans are made only when ``opentelemetry-api`` is importable (the ``otel`` extra)
and a tracer provider is configured: the CLI's workers configure one from ``AION_TRACING``
(:func:`configure`); a program that embeds the client or an activity worker configures
OpenTelemetry as usual (or hands a provider to :func:`set_tracer_provider`). Otherwise every
hook here returns at once and no header is written.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ._labels import never_raises

if TYPE_CHECKING:
    from ..runtime import Step, WorkflowExecution

log = logging.getLogger("aion.ops.tracing")

try:  # the otel extra
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _PROPAGATOR: Any = TraceContextTextMapPropagator()
except ImportError:  # pragma: no cover - without the extra
    _trace = None  # type: ignore[assignment]
    _PROPAGATOR = None

Headers = list[tuple[str, bytes]]
_HEADER_NAMES = ("traceparent", "tracestate")
_override: Any = None
_cached: tuple[Any, Any] | None = None  # (provider, its aion tracer)
_lock = threading.Lock()


def set_tracer_provider(provider: Any) -> None:
    """Use ``provider`` for aion's spans instead of OpenTelemetry's global one (tests, or a
    program that keeps aion's spans apart); ``None`` goes back to the global provider."""
    global _override, _cached
    with _lock:
        _override, _cached = provider, None


def tracer() -> Any:
    """aion's tracer, or None when tracing is off (no OpenTelemetry, or no provider set)."""
    global _cached
    if _trace is None:
        return None
    provider = _override if _override is not None else _trace.get_tracer_provider()
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    if isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)):
        return None
    t = provider.get_tracer("aion")
    _cached = (provider, t)
    return t


def headers_of(span: Any) -> Headers:
    """The Kafka headers that carry ``span``'s context."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=_trace.set_span_in_context(span))
    return [(k, v.encode()) for k, v in carrier.items()]


def context_of(headers: Sequence[tuple[str, Any]] | None) -> Any:
    """The span context a record's headers carry, or None."""
    if not headers:
        return None
    carrier = {}
    for k, v in headers:
        if k in _HEADER_NAMES and v is not None:
            carrier[k] = v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)
    if "traceparent" not in carrier:
        return None
    ctx = _PROPAGATOR.extract(carrier)
    return ctx if _trace.get_current_span(ctx).get_span_context().is_valid else None


def _end(span: Any, error: BaseException | str | None = None) -> None:
    if error is not None:
        if isinstance(error, BaseException):
            span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.end()


# ---------------------------------------------------------------------- client


def _client_span_name(cmd: Any) -> str | None:
    body = cmd.body
    kind = type(body).__name__
    if kind == "StartWorkflow":
        return f"StartWorkflow:{body.workflow_type}"
    if kind == "SignalWithStart":
        return f"SignalWithStartWorkflow:{body.start.workflow_type}"
    if kind == "SignalWorkflow":
        return f"SignalWorkflow:{body.signal_name}"
    if kind == "QueryWorkflow":
        return f"QueryWorkflow:{body.query_name}"
    if kind in ("CancelWorkflow", "TerminateWorkflow", "PauseWorkflow", "ResumeWorkflow"):
        return kind
    return None  # GetResult and the rest: no span of their own


def client_span(cmd: Any) -> tuple[Any, Headers | None]:
    """A client's span for sending ``cmd`` (child of the caller's current span) and the headers
    that carry it; ``(None, None)`` when tracing is off or the command gets no span."""
    try:
        return _client_span(cmd)
    except Exception:  # tracing never fails a send
        log.exception("client span failed (tracing only)")
        return None, None


def _client_span(cmd: Any) -> tuple[Any, Headers | None]:
    t = tracer()
    if t is None:
        return None, None
    name = _client_span_name(cmd)
    if name is None:
        return None, None
    span = t.start_span(name, kind=SpanKind.CLIENT, attributes={
        "aion.workflow.id": cmd.workflow_id, "aion.command.type": type(cmd.body).__name__})
    return span, headers_of(span)


def end(span: Any, error: BaseException | None = None) -> None:
    """End a span from :func:`client_span` (None: nothing)."""
    if span is not None:
        _end(span, error)


# ---------------------------------------------------------------------- engine


def _nothing(*args: Any) -> None:
    return None



class EngineTracing:
    """The engine's spans (see the module docs): one per command run live, one per activity
    dispatch; the headers of the records a step produces carry them. With tracing off every
    method returns None at once."""

    #: Effects whose record headers wait for the transaction's assembly; the batch that made
    #: them may be dropped (an abort): the map is cleared past this many.
    MAX_PENDING = 10_000

    def __init__(self) -> None:
        self.tracer = tracer()
        self.on = self.tracer is not None
        self._fx: dict[int, tuple[Any, Headers]] = {}
        if not self.on:  # the hooks cost one call that returns None
            self.step = self.stepped = self.headers = _nothing

    @never_raises
    def step(self, cmd: Any, ex: Any, headers: Any) -> Any:
        """Before a command runs through its workflow: its span (None: no span)."""
        if self.tracer is None:
            return None
        body = cmd.body
        kind = type(body).__name__
        if kind in ("ActivityHeartbeat", "ActivityTaskStarted", "GetResult"):
            return None  # bookkeeping, not a workflow task
        if kind == "SignalWorkflow":
            name = f"HandleSignal:{body.signal_name}"
        elif kind == "QueryWorkflow":
            name = f"HandleQuery:{body.query_name}"
        else:
            start = getattr(body, "start", body)
            wtype = getattr(start, "workflow_type", None) or ex.workflow_type or "unknown"
            name = f"RunWorkflow:{wtype}"
        attrs = {"aion.workflow.id": cmd.workflow_id, "aion.command.type": kind}
        if ex.run_id:
            attrs["aion.run.id"] = ex.run_id
        return self.tracer.start_span(name, context=context_of(headers), kind=SpanKind.SERVER, attributes=attrs)

    @never_raises
    def stepped(self, span: Any, ex: WorkflowExecution, step: Step | None, error: BaseException | None = None) -> None:
        """After the step: end its span; a StartActivity span per dispatched attempt; the
        headers for the records of the step's effects (:meth:`headers`)."""
        if span is None:
            return
        if ex.run_id:
            span.set_attribute("aion.run.id", ex.run_id)
        if step is not None and step.effects:
            # Here, not at the top: the client imports this module, and must not load the runtime.
            from ..runtime.effects import DispatchActivity, SendCommand, SendReply

            if len(self._fx) > self.MAX_PENDING:
                self._fx.clear()
            parent = _trace.set_span_in_context(span)
            step_headers: Headers | None = None
            for eff in step.effects:
                if isinstance(eff, DispatchActivity):
                    task = eff.task
                    child = self.tracer.start_span(
                        f"StartActivity:{task.activity_type}", context=parent, kind=SpanKind.CLIENT, attributes={
                            "aion.workflow.id": task.workflow_id, "aion.run.id": task.run_id,
                            "aion.activity.id": task.activity_id, "aion.activity.attempt": task.attempt,
                            "aion.task_queue": task.task_queue})
                    self._fx[id(eff)] = (eff, headers_of(child))
                    child.end()
                elif isinstance(eff, (SendCommand, SendReply)):
                    if step_headers is None:
                        step_headers = headers_of(span)
                    self._fx[id(eff)] = (eff, step_headers)
        if step is not None and step.refusal is not None:
            span.set_attribute("aion.refusal", step.refusal.type)
        _end(span, error)

    @never_raises
    def headers(self, eff: Any) -> Headers | None:
        """The headers of the record ``eff`` becomes (None: none)."""
        if not self._fx:
            return None
        entry = self._fx.pop(id(eff), None)
        return entry[1] if entry is not None and entry[0] is eff else None


# ---------------------------------------------------------------------- activity worker


class WorkerTracing:
    """An activity worker's ``RunActivity`` spans, children of the task's ``StartActivity``."""

    MAX_PENDING = 10_000

    def __init__(self) -> None:
        self._received: dict[Any, Any] = {}  # attempt key -> its task record's headers
        self._spans: dict[int, tuple[Any, Any]] = {}  # id(attempt) -> (attempt, span)

    @property
    def tracer(self) -> Any:
        return tracer()

    @never_raises
    def received(self, key: Any, msg: Any) -> None:
        """A task record arrived: its headers are kept until the attempt starts."""
        if tracer() is None:
            return
        headers = msg.headers()
        if headers:
            if len(self._received) > self.MAX_PENDING:
                self._received.clear()
            self._received[key] = headers

    @never_raises
    def started(self, key: Any, attempt: Any) -> None:
        headers = self._received.pop(key, None) if self._received else None
        t = tracer()
        if t is None:
            return
        task = attempt.task
        span = t.start_span(f"RunActivity:{task.activity_type}", context=context_of(headers), kind=SpanKind.SERVER,
                            attributes={"aion.workflow.id": task.workflow_id, "aion.run.id": task.run_id,
                                        "aion.activity.id": task.activity_id, "aion.activity.attempt": task.attempt,
                                        "aion.task_queue": task.task_queue, "aion.workflow.type": task.workflow_type})
        if len(self._spans) > self.MAX_PENDING:
            self._spans.clear()
        self._spans[id(attempt)] = (attempt, span)

    @never_raises
    def finished(self, attempt: Any, outcome: str) -> Headers | None:
        """The attempt ended: end its span; the headers for its outcome command."""
        if not self._spans:
            return None
        entry = self._spans.pop(id(attempt), None)
        if entry is None or entry[0] is not attempt:
            return None
        span = entry[1]
        span.set_attribute("aion.activity.outcome", outcome)
        _end(span, None if outcome in ("completed", "cancelled") else outcome)
        return headers_of(span)


# ---------------------------------------------------------------------- process set-up


def flush(timeout_ms: int = 5_000) -> None:
    """Export the spans still buffered (a short-lived process, such as a CLI command, before it
    exits; an OTLP exporter batches)."""
    if _trace is None:
        return
    force = getattr(_trace.get_tracer_provider(), "force_flush", None)
    if force is not None:
        force(timeout_ms)


def configure(spec: str | None, service_name: str) -> bool:
    """Set OpenTelemetry's global tracer provider for this process from ``AION_TRACING``:
    ``otlp`` (OTLP over HTTP; endpoint and headers from the standard ``OTEL_EXPORTER_OTLP_*``
    variables), ``console`` (spans as JSON on stderr) or ``file:PATH`` (one JSON object per
    line, appended). Empty or ``off``: nothing. ``OTEL_SERVICE_NAME`` overrides ``service_name``.
    Returns whether tracing is on; raises SystemExit when asked for and unavailable."""
    spec = (spec or "").strip()
    if not spec or spec.lower() in ("off", "none", "0", "false"):
        return False
    if _trace is None:
        raise SystemExit("aion: AION_TRACING is set but OpenTelemetry is not installed: "
                         "pip install 'aion-streams[otel]'")
    import os
    import sys

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME")
                                                        or service_name}))
    kind = spec.split(":", 1)[0].lower()
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif kind == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif kind == "file" and ":" in spec:
        out = open(os.path.expanduser(spec.split(":", 1)[1]), "a", buffering=1)
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
            out=out, formatter=lambda span: span.to_json(indent=None) + "\n")))
    else:
        raise SystemExit(f"aion: AION_TRACING={spec!r}: give otlp, console or file:PATH (or leave it unset)")
    _trace.set_tracer_provider(provider)
    log.info("tracing on: %s (service %s)", kind, service_name)
    return True


def spans_of(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Spans from ``file:PATH`` output (one JSON object per line)."""
    import json

    return [json.loads(line) for line in lines if line.strip()]


__all__ = ["EngineTracing", "WorkerTracing", "client_span", "configure", "context_of", "end", "headers_of",
           "set_tracer_provider", "spans_of", "tracer"]
