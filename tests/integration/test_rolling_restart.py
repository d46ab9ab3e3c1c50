"""A rolling restart under load loses nothing (issue 17, "Scale-out"): two engine workers with
standby replicas; each in turn is stopped with SIGTERM, must exit on its own, and is started
again on its own data folder while workflows keep being started. Every workflow completes once,
with the right result, and the events topic holds one gapless history per workflow with one
start and one completion. Outcomes only: the hand-over times are ``aion bench rolling``'s."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aion.bench._rolling import check_histories, wait_group_ready
from aion.testing.ports import free_ports

from test_metrics import scrape


async def test_sigterm_rolling_restart_loses_nothing(cluster, client, settings) -> None:  # type: ignore[no-untyped-def]
    cluster.env["AION_STANDBY_REPLICAS"] = "1"
    first = free_ports(2)
    ports = [first, first + 1]
    names = ["roll-a", "roll-b"]
    engines = [cluster.engine(name=n, metrics_port=p) for n, p in zip(names, ports)]
    cluster.activities()
    assert await wait_group_ready(ports, settings.partitions, 90.0, []) is not None, cluster.logs()

    handles: dict[str, Any] = {}
    stop = asyncio.Event()

    async def load() -> None:  # 10 starts/s for as long as the restart lasts
        i = 0
        while not stop.is_set():
            wid = f"roll-{i}"
            handles[wid] = await client.start_workflow("Hello", f"w{i}", id=wid)
            i += 1
            await asyncio.sleep(0.1)

    loader = asyncio.create_task(load())
    try:
        await asyncio.sleep(2.0)
        for k, name in enumerate(names):
            proc = engines[k]
            t0 = time.monotonic()
            proc.stop(timeout=30)
            assert proc.p is not None and proc.p.returncode not in (-9, None), (
                f"{name} did not exit on SIGTERM within 30 s:\n{proc.tail()}")
            others = [p for j, p in enumerate(ports) if j != k]
            assert await wait_group_ready(others, settings.partitions, 60.0, []) is not None, (
                f"the other engine did not take over {name}'s partitions:\n{cluster.logs()}")
            engines[k] = cluster.engine(name=name, metrics_port=ports[k])  # the same data folder
            assert await wait_group_ready(ports, settings.partitions, 90.0, []) is not None, (
                f"{name} did not rejoin ({time.monotonic() - t0:.1f}s):\n{cluster.logs()}")
            # Its local copies caught up on its downtime before it joined (_store.warm_up), not
            # while the partitions it took back waited.
            metrics = scrape(ports[k])
            warmed = metrics.get(("aion_engine_warm_up_records_total", ()), 0)
            assert warmed > 0, f"{name} read nothing before joining:\n{engines[k].tail()}"
            # Every table database was opened before joining (_store.open_databases): none while
            # partitions waited, on either worker. (Two workers with a standby each hold every
            # partition's tables: nothing is revoked, so keeping revoked ones open is the unit
            # tests' and the rolling benchmark's, with four workers.)
            assert metrics.get(("aion_engine_table_databases_opened_total", (("when", "before_joining"),)), 0) >= 5 * settings.partitions
            for port in ports:
                opened_late = scrape(port).get(("aion_engine_table_databases_opened_total", (("when", "at_assignment"),)))
                assert opened_late == 0, f"worker on {port} opened {opened_late} databases at an assignment"
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        await loader

    results = await asyncio.gather(*(h.result(timeout=60) for h in handles.values()))
    assert results == [f"Hello, w{i}!" for i in range(len(handles))]
    checked = await asyncio.get_running_loop().run_in_executor(None, check_histories, settings, "roll-")
    assert checked["ids"] == set(handles), "every started workflow has a history, and no other"
    assert checked["violations"] == 0, checked["examples"]
    assert all(e.alive() for e in engines), cluster.logs()
