"""The web console's HTTP endpoints (``aion.console``) against a real broker and real engine and
activity worker processes: the workflow list and its filters, a workflow's page and the
operator's actions, schedules, dead letters and the events tail (issue 16).

One engine and one activity worker serve the whole module (``console_cluster``); each test
works on workflow ids of its own. The console runs in the test's event loop (aiohttp's test
server) on its own :class:`~aion.client.Client`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import Producer

from aion.client import Client
from aion.codec import Codec
from aion.common.settings import Settings
from aion.common.topics import TopicNames
from aion.exceptions import WorkflowFailureError
from aion.model import Command, Payload, SignalWorkflow, now_ms
from aion.runtime._history_json import events_from_json, events_to_json


@pytest.fixture(scope="module")
def console_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=4,
                   data_dir=tmp_path_factory.mktemp("console"))
    delete_topics(kafka_bootstrap, prefix)


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Best effort, as the function-scoped ``topic_prefix`` fixture does after each test."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith((f"{prefix}.", f"{prefix}-"))]
        for fut in (admin.delete_topics(names, operation_timeout=10).values() if names else []):
            fut.exception()
    except Exception:
        pass


@pytest.fixture(scope="module")
def console_cluster(console_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An engine worker and an activity worker (``engine_workflows``) for the whole module."""
    from _procs import Cluster

    from aion.common.topics import ensure_topics

    ensure_topics(console_settings)
    c = Cluster(console_settings, Path(console_settings.data_dir), "engine_workflows")
    c.engine()
    c.activities()
    yield c
    c.stop()


@asynccontextmanager
async def console(settings: Settings) -> AsyncIterator[tuple[TestClient, Client]]:  # type: ignore[type-arg]
    """The console app on a test server, and the client it uses."""
    from aion.console import make_app
    import engine_workflows

    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix,
                                  settings=settings, rpc_timeout=90.0)
    http = TestClient(TestServer(make_app(client, workflows=[engine_workflows.Approval, engine_workflows.Hello])))
    await http.start_server()
    try:
        yield http, client
    finally:
        await http.close()
        await client.close()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """``await check()`` until it returns something true (then that), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def test_list_filters_paging_and_a_bad_filter(console_cluster: Any, console_settings: Settings) -> None:
    async with console(console_settings) as (http, client):
        tag = uuid.uuid4().hex[:6]
        done = [await client.start_workflow("Hello", f"n{i}", id=f"ls-{tag}-hello-{i}",
                                            search_attributes={"Customer": "acme" if i else "zeta"})
                for i in range(3)]
        waiting = await client.start_workflow("Approval", 2, id=f"ls-{tag}-approval")
        for h in done:
            await h.result(timeout=60)

        async def listed() -> Any:
            r = await http.get("/api/workflows", params={"query": f"WorkflowId STARTS_WITH 'ls-{tag}'"})
            body = await r.json()
            statuses = {w["workflow_id"]: w["status"] for w in body["workflows"]}
            return body if len(statuses) == 4 and sorted(statuses.values()).count("COMPLETED") == 3 else None

        await eventually(listed, "the four workflows in the visibility index")

        mine = f"WorkflowId STARTS_WITH 'ls-{tag}'"
        r = await http.get("/api/workflows", params={"query": mine, "type": "Hello"})
        assert sorted(w["workflow_id"] for w in (await r.json())["workflows"]) == [h.id for h in done]
        r = await http.get("/api/workflows", params={"query": mine, "status": "running"})
        assert [w["workflow_id"] for w in (await r.json())["workflows"]] == [waiting.id]
        r = await http.get("/api/workflows", params={"query": mine, "attrs": "Customer=acme"})
        assert sorted(w["workflow_id"] for w in (await r.json())["workflows"]) == [h.id for h in done[1:]]
        r = await http.get("/api/workflows", params={"query": mine, "after": "2099-01-01T00:00"})
        assert (await r.json())["total"] == 0

        # Paging: newest first, two per page.
        r = await http.get("/api/workflows", params={"query": mine, "size": "2", "page": "2"})
        page2 = await r.json()
        assert page2["total"] == 4 and len(page2["workflows"]) == 2
        assert [w["workflow_id"] for w in page2["workflows"]] == [done[1].id, done[0].id]

        # The HTML page: the filter form keeps its values, the rows link to their workflow pages.
        r = await http.get("/workflows", params={"query": mine, "type": "Approval"})
        html = await r.text()
        assert r.status == 200
        assert f'href="/workflow?id={waiting.id}"' in html and done[0].id not in html
        assert "<b data-count='1'>1</b> workflow match" in html
        # The live refresh asks for the results part only.
        r = await http.get("/workflows", params={"query": mine}, headers={"X-Fragment": "1"})
        fragment = await r.text()
        assert "<html" not in fragment and fragment.count('href="/workflow?id=') == 4

        # A filter that does not parse: the page says where, no traceback.
        r = await http.get("/workflows", params={"query": "WorkflowType = "})
        html = await r.text()
        assert r.status == 400 and 'class="error"' in html and "Traceback" not in html
        assert "WorkflowType" in html
        r = await http.get("/workflows", params={"after": "yesterday"})
        assert r.status == 400 and "is not a time" in await r.text()
        await waiting.terminate("test over")


async def test_workflow_page_signal_query_and_actions(console_cluster: Any, console_settings: Settings) -> None:
    async with console(console_settings) as (http, client):
        wid = uid("page-approval")
        h = await client.start_workflow("Approval", 1, id=wid)

        r = await http.get("/workflow", params={"id": wid})
        html = await r.text()
        assert r.status == 200 and "RUNNING" in html and "running: no result yet" in html
        # The declared query and signal names (make_app(workflows=...)) are offered by name.
        assert 'name="name" value="status"' in html and '<option value="decide">' in html

        # A query button.
        r = await http.post("/workflow/query", data={"id": wid, "name": "status"})
        assert r.status == 200 and "query &#x27;status&#x27; answered: &quot;waiting:0&quot;" in await r.text()

        # Bad JSON in the signal form: a clear message on the page, nothing sent.
        r = await http.post("/workflow/signal", data={"id": wid, "name": "decide", "args": "[yes"})
        html = await r.text()
        assert r.status == 200 and 'class="error"' in html and "are not JSON" in html
        r = await http.post("/workflow/signal", data={"id": wid, "name": "decide", "args": '"yes"'})
        assert "must be a JSON array" in await r.text()
        # An unknown signal name: the engine's refusal, on the page.
        r = await http.post("/workflow/signal", data={"id": wid, "name": "nope", "args": "[]"})
        assert "nope" in await r.text() and 'class="error"' in await r.text()

        r = await http.post("/workflow/signal", data={"id": wid, "name": "decide", "args": '["approve"]'})
        assert "signal &#x27;decide&#x27; sent" in await r.text()
        assert await h.result(timeout=60) == ["approve"]

        r = await http.get("/workflow", params={"id": wid})
        html = await r.text()
        assert "COMPLETED" in html and "SignalReceived" in html and "WorkflowCompleted" in html
        assert re.search(r'<pre id="result">\[\s*&quot;approve&quot;\s*\]</pre>', html), html

        # The history download is what `aion workflow history ID --json` prints (aion replay reads it).
        r = await http.get("/workflow/history.json", params={"id": wid})
        assert r.headers["Content-Disposition"].startswith("attachment")
        text = await r.text()
        assert text == events_to_json(await h.history(), workflow_id=wid)
        assert [e.type for e in events_from_json(text)][-1] == "WorkflowCompleted"

        # An unknown id: a 404 page that says so.
        r = await http.get("/workflow", params={"id": "no-such-workflow"})
        html = await r.text()
        assert r.status == 404 and "no workflow &#x27;no-such-workflow&#x27;" in html and "Traceback" not in html
        r = await http.get("/api/workflow", params={"id": "no-such-workflow"})
        assert r.status == 404 and "no workflow" in (await r.json())["error"]

        # A form posted from another site is refused (no login: cross-site request forgery).
        r = await http.post("/workflow/action", data={"id": wid, "action": "terminate"},
                            headers={"Origin": "http://evil.example"})
        assert r.status == 403 and "posted from &#x27;http://evil.example&#x27;" in await r.text()

        # On 127.0.0.1 the console answers to loopback names only (DNS rebinding).
        r = await http.get("/workflow", params={"id": wid}, headers={"Host": "attacker.example:8233"})
        assert r.status == 403 and "DNS rebinding" in await r.text()

        # Pause, resume, cancel and terminate, each through the action form.
        other = uid("page-actions")
        await client.start_workflow("Approval", 5, id=other)
        r = await http.post("/workflow/action", data={"id": other, "action": "pause", "reason": "look"})
        assert "pause: done" in await r.text()
        r = await http.get("/api/workflow", params={"id": other})
        assert (await r.json())["paused"] is True
        r = await http.post("/workflow/action", data={"id": other, "action": "pause"})
        assert 'class="error"' in await r.text()  # paused already: the engine's refusal
        await http.post("/workflow/action", data={"id": other, "action": "resume"})
        r = await http.post("/workflow/action", data={"id": other, "action": "terminate", "reason": "by test"})
        assert "terminate: done" in await r.text()
        r = await http.get("/workflow", params={"id": other})
        html = await r.text()
        assert "TERMINATED" in html and "by test" in html and "WorkflowPaused" in html and "WorkflowResumed" in html


async def test_pending_work_cancel_and_reopen(console_cluster: Any, console_settings: Settings) -> None:
    async with console(console_settings) as (http, client):
        # A running activity and a pending timer are shown with their attempt and fire time.
        saga, sleeper = uid("page-saga"), uid("page-sleeper")
        await client.start_workflow("Saga", id=saga)
        await client.start_workflow("Sleeper", 600, id=sleeper)

        async def started() -> Any:
            d = await (await http.get("/api/workflow", params={"id": saga})).json()
            acts = d.get("pending_activities") or []
            return acts if acts and acts[0]["state"] == "STARTED" else None

        acts = await eventually(started, "the saga's activity started")
        assert acts[0]["activity_type"] == "wait_cancel" and acts[0]["attempt"] == 1
        html = await (await http.get("/workflow", params={"id": saga})).text()
        assert re.search(r'id="pending-activities".*wait_cancel.*STARTED', html, re.S)
        html = await (await http.get("/workflow", params={"id": sleeper})).text()
        timers = re.search(r'id="pending-timers".*?</table>', html, re.S)
        assert timers and re.search(r"\d{4}-\d\d-\d\dT", timers.group(0)), html
        assert "TimerStarted" in html

        # Cancel: the workflow compensates and ends CANCELLED; reopen runs it again.
        r = await http.post("/workflow/action", data={"id": saga, "action": "cancel", "reason": "changed my mind"})
        assert "cancel: done" in await r.text()

        async def cancelled() -> Any:
            d = await (await http.get("/api/workflow", params={"id": saga})).json()
            return d["status"] == "CANCELLED"

        await eventually(cancelled, "the saga cancelled")
        html = await (await http.get("/workflow", params={"id": saga})).text()
        assert "WorkflowCancelRequested" in html and "changed my mind" in html
        r = await http.post("/workflow/action", data={"id": saga, "action": "reopen"})
        assert "reopen: done" in await r.text()
        d = await (await http.get("/api/workflow", params={"id": saga})).json()
        assert d["status"] == "RUNNING" and d["reopens"] == 1
        for wid in (saga, sleeper):
            await http.post("/workflow/action", data={"id": wid, "action": "terminate"})

        # A failed workflow: its failure chain, and reopen is the one action offered.
        failed = uid("page-failed")
        h = await client.start_workflow("NonRetryable", id=failed)
        with pytest.raises(WorkflowFailureError):
            await h.result(timeout=60)
        html = await (await http.get("/workflow", params={"id": failed})).text()
        failure = re.search(r'<pre id="failure">(.*?)</pre>', html, re.S)
        assert failure and "card declined" in failure.group(1) and "CardDeclined" in failure.group(1), html
        assert 'value="reopen"' in html and 'value="cancel"' not in html and 'id="signal-form"' not in html


async def test_schedules_dead_letters_and_events(console_cluster: Any, console_settings: Settings) -> None:
    async with console(console_settings) as (http, client):
        # Schedules: listed, paused, resumed, triggered.
        sid = uid("sched")
        await client.create_schedule(sid, interval=3600, workflow="Hello", args=["from schedule"])
        r = await http.get("/schedules")
        assert sid in await r.text()
        r = await http.post("/schedules/action", data={"id": sid, "action": "pause"})
        assert f"schedule &#x27;{sid}&#x27; paused" in await r.text()
        assert (await client.get_schedule_handle(sid).describe()).paused
        await http.post("/schedules/action", data={"id": sid, "action": "resume"})
        r = await http.post("/schedules/action", data={"id": sid, "action": "trigger"})
        assert "triggered" in await r.text()

        async def manual_run() -> Any:
            d = await client.get_schedule_handle(sid).describe()
            return d.started if not d.paused and d.started else None

        await eventually(manual_run, "the triggered start counted by the schedule")
        r = await http.post("/schedules/action", data={"id": "no-such-schedule", "action": "trigger"})
        assert 'class="error"' in await r.text() and "no-such-schedule" in await r.text()

        # Dead letters: a signal for a workflow that does not exist yet, sent with nobody to answer
        # (no reply_to), is dead-lettered with the reason; once the workflow runs, replay delivers it.
        wid = uid("dlq-approval")
        cmd = Command(f"c-{uuid.uuid4().hex}", wid, now_ms(),
                      SignalWorkflow("decide", [Payload("application/json", b'"from the dlq"')],
                                     signal_id=uuid.uuid4().hex))
        p = Producer({**console_settings.confluent_config(), "partitioner": "murmur2_random"})
        p.produce(TopicNames(console_settings.topic_prefix).commands, key=wid.encode(), value=Codec().encode_command(cmd))
        assert p.flush(10) == 0

        async def dead_letter() -> Any:
            rows = await (await http.get("/api/dlq")).json()
            return next((r for r in rows if r["key"] == wid), None)

        letter = await eventually(dead_letter, "the signal on the dead-letter topic")
        assert "WorkflowNotFoundError" in letter["reason"]
        html = await (await http.get("/dlq")).text()
        assert letter["dlq"] in html and "WorkflowNotFoundError" in html

        h = await client.start_workflow("Approval", 1, id=wid)
        r = await http.post("/dlq/replay", data={"pos": letter["dlq"]})
        assert f"re-submitted 1 dead letter(s) ({letter['dlq']})" in await r.text()
        assert await h.result(timeout=60) == ["from the dlq"]
        r = await http.post("/dlq/replay", data={})
        assert "select the dead letters" in await r.text()

        # The events tail: the newest events, this workflow's close among them.
        r = await http.get("/api/events", params={"n": "20"})
        tail = await r.json()
        assert {"workflow_id": wid, "type": "WorkflowCompleted"}.items() <= next(
            e for e in reversed(tail) if e["workflow_id"] == wid).items()
        html = await (await http.get("/events", params={"n": "25", "workflow": wid})).text()
        assert "WorkflowCompleted" in html and "SignalReceived" in html
        r = await http.get("/events", params={"n": "lots"})
        assert r.status == 400 and "is not a number" in await r.text()
