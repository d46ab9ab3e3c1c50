"""aion.ops: the lock-free instruments, bounded labels, the HTTP endpoint and on_loop. No broker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aion.ops import OTHER, Health, Instruments, LabelGuard, OpsServer, on_loop


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_counters_and_histograms_export_in_the_text_format() -> None:
    ins = Instruments()
    c = ins.counter("aion_things", "Things.", ("kind",))
    h = ins.histogram("aion_wait_seconds", "Waits.", ("kind",), buckets=(0.1, 1.0))
    c.inc(("a",))
    c.inc(("a",), 2)
    c.inc(("b",))
    for v in (0.05, 0.1, 0.5, 3.0):  # a bucket holds values <= its bound
        h.observe(("a",), v)
    reg = CollectorRegistry()
    reg.register(ins)
    got = samples(reg)
    assert got[("aion_things_total", (("kind", "a"),))] == 3
    assert got[("aion_things_total", (("kind", "b"),))] == 1
    assert got[("aion_wait_seconds_bucket", (("kind", "a"), ("le", "0.1")))] == 2
    assert got[("aion_wait_seconds_bucket", (("kind", "a"), ("le", "1.0")))] == 3
    assert got[("aion_wait_seconds_bucket", (("kind", "a"), ("le", "+Inf")))] == 4
    assert got[("aion_wait_seconds_count", (("kind", "a"),))] == 4
    assert got[("aion_wait_seconds_sum", (("kind", "a"),))] == pytest.approx(3.65)
    assert h.count(("a",)) == 4 and c.get(("a",)) == 3


def test_label_values_are_bounded() -> None:
    guard = LabelGuard("workflow_type", limit=3)
    assert [guard(f"T{i}") for i in range(5)] == ["T0", "T1", "T2", OTHER, OTHER]
    assert guard("T1") == "T1"  # known values stay themselves
    assert guard(None) == OTHER  # a new value past the limit, whatever it is


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_endpoint_serves_metrics_health_and_readiness() -> None:
    ins = Instruments()
    ins.counter("aion_hello", "Hellos.").inc()
    reg = CollectorRegistry()
    reg.register(ins)
    state = {"health": Health(True, False, {"status": "catching up", "partitions": [0, 1]})}
    server = OpsServer(reg, lambda: state["health"], host="127.0.0.1", port=0).start()
    try:
        assert server.port > 0
        code, body = _get(f"{server.url}/metrics")
        assert code == 200 and b"aion_hello_total 1.0" in body
        code, body = _get(f"{server.url}/healthz")
        assert code == 200
        assert json.loads(body) == {"alive": True, "ready": False, "status": "catching up", "partitions": [0, 1]}
        assert _get(f"{server.url}/readyz")[0] == 503
        state["health"] = Health(True, True, {"status": "ok"})
        assert _get(f"{server.url}/readyz")[0] == 200
        assert _get(f"{server.url}/nothing")[0] == 404
    finally:
        server.stop()


def test_a_health_callback_that_fails_is_unhealthy() -> None:
    def broken() -> Health:
        raise TimeoutError("the worker's event loop did not answer within 2 s")

    server = OpsServer(CollectorRegistry(), broken, host="127.0.0.1", port=0).start()
    try:
        code, body = _get(f"{server.url}/healthz")
        assert code == 503
        assert json.loads(body)["status"] == "unresponsive"
    finally:
        server.stop()


def test_a_taken_port_is_an_error_that_names_the_setting() -> None:
    from aion.ops import serve

    first = OpsServer(CollectorRegistry(), host="127.0.0.1", port=0).start()
    try:
        with pytest.raises(SystemExit, match="AION_METRICS_PORT"):
            serve(CollectorRegistry(), None, host="127.0.0.1", port=first.port, what="test worker")
    finally:
        first.stop()


def test_on_loop_runs_on_the_loop_and_times_out_when_it_is_blocked() -> None:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        assert on_loop(loop, threading.get_ident) == t.ident
        loop.call_soon_threadsafe(time.sleep, 0.5)  # the loop is busy
        with pytest.raises(TimeoutError):
            on_loop(loop, lambda: 1, timeout=0.1)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()
    with pytest.raises(RuntimeError):
        on_loop(loop, lambda: 1)
    with pytest.raises(RuntimeError):
        on_loop(None, lambda: 1)


def test_a_failing_hook_never_fails_the_work() -> None:
    from aion.ops._labels import never_raises

    @never_raises
    def hook(x: int) -> int:
        return 10 // x

    assert hook(2) == 5
    assert hook(0) is None  # logged, swallowed
