"""Operations surface of engine and activity workers: Prometheus metrics and health over HTTP,
OpenTelemetry traces, and ``aion status``.

:class:`OpsServer` serves one process's :class:`prometheus_client.CollectorRegistry` at
``/metrics`` and a health callback at ``/healthz`` and ``/readyz``. Each worker keeps its own
registry (never prometheus-client's global one), so several can live in one process.
Traces: :mod:`aion.ops._tracing`. Importing this package imports no Faust (activity workers and
the client use it), and its names load on first use (the client imports only the tracing).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Counter": "._instruments", "Histogram": "._instruments", "Instruments": "._instruments",
    "counter": "._instruments", "gauge": "._instruments", "FAST_S": "._instruments", "LONG_S": "._instruments",
    "QUEUE_S": "._instruments", "SIZES": "._instruments",
    "LabelGuard": "._labels", "OTHER": "._labels",
    "Health": "._server", "OpsServer": "._server", "on_loop": "._server", "serve": "._server",
    "set_tracer_provider": "._tracing",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
