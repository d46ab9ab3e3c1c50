"""``aion status``: engine and activity workers, partitions per worker, command lag, pending
timers and dead letters, read from Kafka (``aion.ops._status``)."""

from __future__ import annotations

import json

import click

from ._app import _broker_ready, _print_table, cli


@cli.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-timers", is_flag=True, help="Skip counting pending timers (reads the timers changelog whole).")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, no_timers: bool) -> None:
    """Workers, partitions per worker, command lag, pending timers and DLQ size."""
    from ..ops._status import cluster_status

    s = _broker_ready(ctx)
    st = cluster_status(s, timers=not no_timers)
    if as_json:
        click.echo(json.dumps(st.as_dict()))
        return
    click.echo(f"prefix {st.prefix!r}")
    click.echo("")
    if st.engine is None:
        click.echo("engine workers: none (no engine group; start one with `aion worker`)")
    else:
        click.echo(f"engine workers ({st.engine.group_id}, {st.engine.state}): {len(st.engine.members)}")
        _print_table([{"worker": f"{m.host}/{m.member_id[-6:]}", "client": m.client_id,
                       "partitions": _ranges(m.partitions)}
                      for m in st.engine.members], ["worker", "client", "partitions"])
    click.echo("")
    click.echo(f"activity workers: {sum(len(g.members) for g in st.activity_workers)}")
    _print_table([{"task_queue": g.task_queue, "state": g.state, "worker": f"{m.host}/{m.member_id[-6:]}",
                   "partitions": _ranges(m.partitions)}
                  for g in st.activity_workers for m in g.members], ["task_queue", "state", "worker", "partitions"])
    click.echo("")
    _print_table([{"partition": p.partition, "owner": p.owner, "end": p.end_offset, "position": p.position,
                   "lag": p.lag, "timers": (f"{p.timers_pending}+" if p.timers_partial else p.timers_pending)}
                  for p in st.partitions], ["partition", "owner", "end", "position", "lag", "timers"])
    lag = sum(p.lag or 0 for p in st.partitions)
    timers = sum(p.timers_pending or 0 for p in st.partitions)
    click.echo("")
    click.echo(f"command lag {lag}, pending timers {'-' if no_timers else timers}, dead letters {st.dead_letters}")


def _ranges(parts: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out: list[str] = []
    for p in parts:
        if out and "-" not in out[-1].split(",")[-1] and int(out[-1]) == p - 1:
            out[-1] = f"{out[-1]}-{p}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ",".join(out) or "-"
