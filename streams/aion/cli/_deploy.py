"""``aion deploy create|list|route|unload``: versioned deploys (see ``aion.client._deployments``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Coroutine

import click

from ._app import _broker_ready, _iso, _print_table, _run, cli
from ._errors import CliError, ExitCode, UsageError


@cli.group("deploy")
def deploy() -> None:
    """Deploy versions of the workflow code; route types to them; unload them.

    A run executes the build recorded in its WorkflowStarted for its whole life; new starts
    (and continue-as-new successors) take the build routed for their type."""


def _call(ctx: click.Context, fn: Any) -> Any:
    """Run ``fn(deployments)``; the deploy errors as one line with their exit code."""
    from ..client import Deployments
    from ..deploy import PackageError
    from ..exceptions import BuildInUseError, BuildNotFoundError, InvalidArgumentError

    s = _broker_ready(ctx)

    async def main() -> Any:
        try:
            return await fn(Deployments(s))
        except BuildNotFoundError as exc:
            raise CliError(str(exc), ExitCode.NOT_FOUND) from None
        except (BuildInUseError, PackageError) as exc:
            raise CliError(str(exc), ExitCode.ERROR) from None
        except InvalidArgumentError as exc:
            raise UsageError(str(exc)) from None

    coro: Coroutine[Any, Any, Any] = main()
    return _run(coro)


def _build_row(b: Any) -> dict[str, Any]:
    row = dataclasses.asdict(b)
    row["deployed_at"] = _iso(b.deployed_at_ms)
    return row


@deploy.command("create")
@click.argument("path", type=click.Path(exists=True))
@click.option("--build-id", default=None, help="The build's id (default: 16 hex digits of its content's SHA-256).")
@click.option("--module", "modules", multiple=True,
              help="Only these modules of the package hold workflows (default: every module of it).")
@click.option("--description", default="", help="A note kept with the build (e.g. the git commit).")
@click.option("--route", "route_types", multiple=True,
              help="Also route this workflow type to the new build (repeatable; check first with aion replay check).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def deploy_create(ctx: click.Context, path: str, build_id: str | None, modules: tuple[str, ...], description: str,
                  route_types: tuple[str, ...], as_json: bool) -> None:
    """Deploy the module file or package directory PATH as a build every engine worker loads."""

    async def fn(d: Any) -> Any:
        b = await d.create(path, build_id=build_id, modules=modules, description=description)
        for t in route_types:
            await d.route(t, b.build_id)
        return b

    b = _call(ctx, fn)
    if as_json:
        row = _build_row(b)
        row["routed"] = list(route_types)
        click.echo(json.dumps(row, default=str))
        return
    click.echo(f"deployed build {b.build_id} ({b.root}, {b.size} bytes): {', '.join(b.workflow_types)}")
    for t in route_types:
        click.echo(f"new runs of {t} take build {b.build_id}")
    if not route_types:
        click.echo(f"route a type to it with: aion deploy route TYPE {b.build_id}")


@deploy.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def deploy_list(ctx: click.Context, as_json: bool) -> None:
    """Builds, which type routes where, and open runs per build."""
    view = _call(ctx, lambda d: d.list())
    if as_json:
        click.echo(json.dumps({
            "builds": [_build_row(b) for b in view.builds], "routes": view.routes,
            "open_runs": view.open_runs, "refused": [{"where": w, "reason": r} for w, r in view.refused],
        }, default=str))
        return
    rows = [{"build_id": b.build_id, "root": b.root, "types": ", ".join(b.workflow_types),
             "routed": ", ".join(b.routed_types) or "-", "open_runs": b.open_runs,
             "deployed_at": _iso(b.deployed_at_ms), "size": b.size, "description": b.description}
            for b in view.builds]
    if rows:
        _print_table(rows, ["build_id", "root", "types", "routed", "open_runs", "deployed_at", "size", "description"])
    else:
        click.echo("no builds deployed: every run uses the engine workers' own --workflows code")
    if view.open_runs.get(""):
        click.echo(f"{view.open_runs['']} open run(s) on the engine workers' own code (no build)")
    for w, r in view.refused:
        click.echo(f"ignored record {w}: {r}")


@deploy.command("route")
@click.argument("workflow_type")
@click.argument("build_id")
@click.pass_context
def deploy_route(ctx: click.Context, workflow_type: str, build_id: str) -> None:
    """New runs of WORKFLOW_TYPE take BUILD_ID ('' = the workers' own code). Rollback = route back."""
    _call(ctx, lambda d: d.route(workflow_type, build_id))
    click.echo(f"new runs of {workflow_type} take " + (f"build {build_id}" if build_id else
                                                         "the engine workers' own code")
               + "; runs already started keep theirs")


@deploy.command("unload")
@click.argument("build_id")
@click.pass_context
def deploy_unload(ctx: click.Context, build_id: str) -> None:
    """Remove BUILD_ID from every engine worker; refused while a type routes to it or a run is pinned to it."""
    _call(ctx, lambda d: d.unload(build_id))
    click.echo(f"build {build_id} unloaded")
