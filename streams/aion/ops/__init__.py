"""Operations surface of engine and activity workers: Prometheus metrics and health over HTTP.

:class:`OpsServer` serves one process's :class:`prometheus_client.CollectorRegistry` at
``/metrics`` and a health callback at ``/healthz`` and ``/readyz``. Each worker keeps its own
registry (never prometheus-client's global one), so several can live in one process.
Importing this package imports no Faust (activity workers use it).
"""

from ._instruments import FAST_S, LONG_S, QUEUE_S, SIZES, Counter, Histogram, Instruments, counter, gauge
from ._labels import OTHER, LabelGuard
from ._server import Health, OpsServer, on_loop, serve

__all__ = ["Counter", "FAST_S", "Health", "Histogram", "Instruments", "LONG_S", "LabelGuard", "OTHER", "OpsServer", "QUEUE_S",
           "SIZES", "counter", "gauge", "on_loop", "serve"]
