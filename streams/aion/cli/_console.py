"""``aion console``: the web console (:mod:`aion.console`) on a local HTTP port."""

from __future__ import annotations

import click

from ._app import _broker_ready, _run, cli
from ._errors import CliError
from ._imports import import_user_modules

NO_AUTH_NOTE = ("note: the console has no authentication yet: anyone who can reach {where} can signal, cancel "
                "and terminate workflows and replay dead letters")


@cli.command("console")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the console has no authentication: keep it on this host, or put an "
                   "authenticating proxy in front).")
@click.option("--port", type=click.IntRange(0, 65535), default=8233, show_default=True)
@click.option("--workflows", "modules", multiple=True,
              help="Module(s) with your @workflow.defn classes: the workflow pages then offer their signal and "
                   "query names (optional; without it, query and signal names are typed in).")
@click.pass_context
def console_cmd(ctx: click.Context, host: str, port: int, modules: tuple[str, ...]) -> None:
    """Serve the web console: workflows (list, filters, history, signal, query, cancel, ...),
    schedules, dead letters and a live tail of events."""
    import asyncio

    from aiohttp import web

    from ..console._app import connect, make_app

    workflows = [v for m in import_user_modules(modules, "workflow") for v in vars(m).values() if isinstance(v, type)]
    s = _broker_ready(ctx)
    click.echo(NO_AUTH_NOTE.format(where=f"{host}:{port}"), err=True)

    async def main() -> None:
        client = await connect(s)
        runner = web.AppRunner(make_app(client, workflows=workflows), access_log=None)
        try:
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)") from None
            click.echo(f"aion console: http://{host}:{port}/ (Kafka {s.bootstrap_servers}, topic prefix "
                       f"{s.topic_prefix!r}); Ctrl-C stops it", err=True)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await client.close()

    _run(main())
