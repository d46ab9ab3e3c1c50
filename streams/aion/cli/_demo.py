"""``aion demo``: the order saga through real Kafka, end to end.

Starts an engine worker and an activity worker as child processes on a fresh topic prefix,
runs one order that succeeds and one whose payment is declined (compensations run in
reverse order), prints each result and history, and stops what it started. Then it deletes
its topics and its temporary folder (worker logs, RocksDB tables) unless asked to keep them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import click

from ..common.settings import Settings


def _spawn(args: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "aion.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _run_orders(settings: Settings) -> None:
    from ..client import Client
    from ..examples import order_saga
    from ..exceptions import WorkflowFailureError
    from ._app import _print_table, event_row

    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings)
    try:
        run = uuid.uuid4().hex[:4]
        orders = [
            ("an order that succeeds", order_saga.OrderRequest(order_id=f"{run}-1", sku="book", quantity=2, amount_cents=4200)),
            ("an order whose card is declined (compensations run in reverse)",
             order_saga.OrderRequest(order_id=f"{run}-2", sku="lamp", quantity=1, amount_cents=9900, decline_card=True)),
        ]
        for title, order in orders:
            wid = f"order-{order.order_id}"
            click.secho(f"\n== {title}: workflow {wid}", bold=True)
            handle = await client.start_workflow(order_saga.OrderSaga.run, order, id=wid, task_queue="default")
            try:
                result: Any = await handle.result(timeout=60)
                click.secho(f"result: {result}", fg="green")
            except WorkflowFailureError as exc:
                click.secho(f"failed: {exc}", fg="red")
            history = await handle.history()
            _print_table([event_row(e) for e in history], ["seq", "type", "recorded_at", "details"])
    finally:
        await client.close()


def _delete_topics(settings: Settings) -> list[str]:
    """The demo's topics: Aion's (``<prefix>.events`` ...) and Faust's (``<prefix>-engine-...``)."""
    from confluent_kafka.admin import AdminClient

    from ._broker import KAFKA_LOG

    prefix = settings.topic_prefix
    admin = AdminClient({**settings.confluent_config(), "logger": KAFKA_LOG})
    names = sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith((f"{prefix}.", f"{prefix}-")))
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            fut.result()
    return names


def run_demo(base: Settings, keep: bool = False) -> None:
    prefix = f"demo{uuid.uuid4().hex[:6]}"
    data_dir = tempfile.mkdtemp(prefix="aion-demo-")
    settings = base.replace(topic_prefix=prefix, partitions=3, data_dir=data_dir)
    env = dict(os.environ)
    env.update({
        "AION_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "AION_TOPIC_PREFIX": prefix,
        "AION_PARTITIONS": "3",
        "AION_DATA_DIR": data_dir,
    })
    from ..common.topics import ensure_topics

    click.echo(f"topics: prefix {prefix!r} on {settings.bootstrap_servers}")
    ensure_topics(settings)
    procs = [
        _spawn(["worker", "--workflows", "aion.examples.order_saga", "--loglevel", "warning"], env, os.path.join(data_dir, "engine.log")),
        _spawn(["activity-worker", "--activities", "aion.examples.order_saga"], env, os.path.join(data_dir, "activities.log")),
    ]
    click.echo(f"started an engine worker (pid {procs[0].pid}) and an activity worker (pid {procs[1].pid}); logs in {data_dir}")
    t0 = time.monotonic()
    finished = False
    try:
        asyncio.run(_run_orders(settings))
        finished = True
    finally:
        for p in procs:
            _stop(p)
        if keep or not finished:
            click.echo(f"\nkept topics {prefix}.* and {data_dir} (worker logs)"
                       + (" (--keep)" if keep else ": the demo did not finish"), err=not finished)
        else:
            try:
                deleted = _delete_topics(settings)
                click.echo(f"\ndeleted the demo's {len(deleted)} topics ({prefix}.*, {prefix}-*)")
            except Exception as exc:  # the demo's result stands; say what is left behind
                click.echo(f"\ncould not delete the demo's topics {prefix}.* ({exc}); delete them by hand", err=True)
            shutil.rmtree(data_dir, ignore_errors=True)
    click.echo(f"demo finished in {time.monotonic() - t0:.1f} s; workers stopped"
               + ("" if keep else ", topics and temporary folder removed (aion demo --keep keeps them)"))
