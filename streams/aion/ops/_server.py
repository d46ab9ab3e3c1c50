"""The HTTP endpoint of a worker's operations surface (a daemon thread, standard library WSGI).

- ``GET /metrics``: the registry in the Prometheus text format (OpenMetrics when the scraper
  asks for it; gzip when accepted: prometheus-client's own WSGI app);
- ``GET /healthz``: liveness, ``200`` once the worker runs (an engine worker: has joined its
  group), else ``503``; a small JSON body says what the worker is and owns;
- ``GET /readyz``: readiness, ``200`` while the worker can do its work (an engine worker: every
  partition assigned to it is fenced in, caught up and being read), else ``503``.

The health callback runs in the server's thread; workers answer it with :func:`on_loop`, which
reads their state on their own event loop (no data race) and gives up after a timeout — an
event loop blocked for that long makes the worker unhealthy, which is what a liveness probe is
for.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("aion.ops")

T = TypeVar("T")


@dataclass
class Health:
    """What ``/healthz`` and ``/readyz`` answer: ``alive`` and ``ready`` pick the status codes,
    ``info`` is the JSON body (with ``status``)."""

    alive: bool
    ready: bool
    info: dict[str, Any] = field(default_factory=dict)


def on_loop(loop: Any, fn: Callable[[], T], timeout: float = 2.0) -> T:
    """``fn()`` run on ``loop`` (from another thread), its result; raises TimeoutError when the
    loop did not run it within ``timeout`` seconds, RuntimeError when there is no running loop."""
    if loop is None or loop.is_closed() or not loop.is_running():
        raise RuntimeError("the worker's event loop is not running")
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if fut.set_running_or_notify_cancel():
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

    loop.call_soon_threadsafe(run)
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise TimeoutError(f"the worker's event loop did not answer within {timeout:g} s") from None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (see the module docs)."""

    def __init__(self, registry: CollectorRegistry, health: Callable[[], Health] | None = None, *,
                 host: str = "0.0.0.0", port: int = 0) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._metrics_app = make_wsgi_app(registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            return self._health(path, start_response)
        if path in ("/metrics", "/"):
            return self._metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    def _health(self, path: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            h = self.health() if self.health is not None else Health(True, True, {"status": "ok"})
        except Exception as exc:  # a blocked loop, a worker that is gone
            h = Health(False, False, {"status": "unresponsive", "error": f"{type(exc).__name__}: {exc}"})
        ok = h.ready if path == "/readyz" else h.alive
        body = json.dumps({"alive": h.alive, "ready": h.ready, **h.info}, sort_keys=True, default=str).encode()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                        ("Cache-Control", "no-store")])
        return [body + b"\n"]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "OpsServer":
        """Listen and serve in a daemon thread; ``port=0`` takes a free port (see ``self.port``).
        Raises OSError when the port cannot be had."""
        cls = _IPv6Server if ":" in self.host else _Server
        self._server = make_server(self.host, self.port, self, server_class=cls, handler_class=_Handler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"aion-ops-http-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host == "::" else self.host)
        return f"http://{host}:{self.port}"


def serve(registry: CollectorRegistry, health: Callable[[], Health] | None, *, host: str, port: int,
          what: str) -> OpsServer:
    """Start an :class:`OpsServer` for a worker (``what``, for the log line and the error);
    a port that cannot be had is a :class:`SystemExit` with the reason."""
    try:
        server = OpsServer(registry, health, host=host, port=port).start()
    except OSError as exc:
        raise SystemExit(f"aion: {what}: cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                         "pick another --metrics-port (AION_METRICS_PORT), or 0 for none") from None
    log.info("%s: metrics at %s/metrics, health at %s/healthz and /readyz", what, server.url, server.url)
    return server
