"""The console's aiohttp application: one :class:`~aion.client.Client` for its lifetime, the
routes of every page, and the middleware that turns errors into a message on the page (never
a traceback)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

from aiohttp import web

from ..client import Client, ScheduleNotFoundError, WorkflowNotFoundError
from ..common.settings import Settings
from ..exceptions import AionError
from ..workflow._definition import WorkflowDefinition
from ._html import messages, page

log = logging.getLogger(__name__)


@dataclass
class Handlers:
    """The signal, query and update names a workflow type declares (from ``--workflows``)."""

    signals: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)


@dataclass
class Console:
    """What the handlers share: the client, its settings, the declared handler names."""

    client: Client
    settings: Settings
    handlers: dict[str, Handlers]


CONSOLE = web.AppKey("console", Console)


class PageError(AionError):
    """A request the console cannot serve (bad input, an unknown id), with the message the page
    shows and its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def handlers_of(workflows: Iterable[object]) -> dict[str, Handlers]:
    """Workflow type -> its declared handler names, for the ``@workflow.defn`` classes given."""
    out: dict[str, Handlers] = {}
    for cls in workflows:
        d = WorkflowDefinition.maybe_of(cls)
        if d is not None:
            out[d.name] = Handlers(sorted(d.signals), sorted(d.queries), sorted(d.updates))
    return out


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def is_fragment(request: web.Request) -> bool:
    """Whether the page's script asks for the refreshed part only (``X-Fragment: 1``)."""
    return request.headers.get("X-Fragment") == "1"


def _status_of(exc: Exception) -> int:
    if isinstance(exc, PageError):
        return exc.status
    if isinstance(exc, (WorkflowNotFoundError, ScheduleNotFoundError)):
        return 404
    if isinstance(exc, AionError):
        return 400
    return 500


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Any error as a page (or, for a refresh, a fragment) that says what went wrong."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        status = _status_of(exc)
        if status == 500:
            log.exception("console: %s %s failed", request.method, request.path_qs)
            message = f"the console could not serve this page: {type(exc).__name__}: {exc}"
        else:
            message = str(exc)
        if request.path.startswith("/api/"):
            return web.json_response({"error": message, "type": type(exc).__name__}, status=status)
        if is_fragment(request):
            return web.Response(text=messages(None, message), status=status, content_type="text/html")
        body = f"<h1>{'Not found' if status == 404 else 'Error'}</h1><p><a href='javascript:history.back()'>back</a></p>"
        return web.Response(text=page("Error", body, error=message), status=status, content_type="text/html")


_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _loopback_only(request: web.Request) -> bool:
    """Whether the console listens on a loopback address and ``Host`` names something else."""
    import ipaddress

    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    try:
        local = ipaddress.ip_address(sock[0]) if sock else None
    except ValueError:
        return False
    if local is None or not local.is_loopback:
        return False
    name = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return name.lower() not in _LOOPBACK_NAMES


@web.middleware
async def same_origin(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse a form posted from another site (cross-site request forgery): with no login, any
    page a user's browser opens could otherwise terminate workflows through a console on
    127.0.0.1. Browsers send ``Origin`` with every cross-site POST; a tool such as curl sends
    none and is let through."""
    if _loopback_only(request):
        message = (f"refused: the console on this host answers to 127.0.0.1 or localhost, not to {request.host!r} "
                   "(a name that leads here from another site: DNS rebinding)")
        return web.Response(text=page("Refused", "<h1>Refused</h1>", error=message), status=403,
                            content_type="text/html")
    origin = request.headers.get("Origin")
    if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None \
            and origin != f"{request.scheme}://{request.host}":
        message = (f"refused: this form was posted from {origin!r}, not from the console itself "
                   f"({request.scheme}://{request.host}); the console takes actions only from its own pages")
        return web.Response(text=page("Refused", "<h1>Refused</h1>", error=message), status=403,
                            content_type="text/html")
    return await handler(request)


def make_app(client: Client, *, workflows: Iterable[object] = ()) -> web.Application:
    """The console for ``client``'s deployment; ``workflows``: ``@workflow.defn`` classes whose
    signals and queries the workflow pages offer by name. The caller owns the client."""
    from . import _operations, _workflow_actions, _workflow_page, _workflows

    app = web.Application(middlewares=[same_origin, errors])
    app[CONSOLE] = Console(client=client, settings=client.settings, handlers=handlers_of(workflows))

    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/workflows")

    app.router.add_get("/", index)
    _workflows.add_routes(app.router)
    _workflow_page.add_routes(app.router)
    _workflow_actions.add_routes(app.router)
    _operations.add_routes(app.router)
    return app


async def connect(settings: Settings) -> Client:
    """The console's client on ``settings`` (its requests wait up to 30 s for the engine)."""
    return await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings)

