"""The web console in a real browser (headless Chromium driven by Playwright): an engine worker,
an activity worker and ``aion console`` as real processes on a real broker. The list is
refreshed live and filtered, a workflow opened and signalled, and its new event and result appear; a dead letter
is listed and replayed (issue 16).

Needs Debian's ``chromium`` (``.ci/run`` installs it when missing) and the ``playwright``
package (the test extra); Playwright's own browser download is not used. The screenshots go to
the test's folder, or to ``$AION_CONSOLE_SCREENSHOTS`` (how ``docs/console/`` was made).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from aion.client import Client
from aion.codec import Codec
from aion.common.settings import Settings
from aion.common.topics import TopicNames
from aion.model import Command, Payload, SignalWorkflow, now_ms
from aion.testing.ports import free_port

CHROMIUM = os.environ.get("AION_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")


@pytest.fixture
def console_url(make_cluster: Any, tmp_path: Path) -> Iterator[str]:
    """Engine worker, activity worker and ``aion console`` processes; the console's address."""
    from _procs import Proc

    cluster = make_cluster()
    cluster.engine()
    cluster.activities()
    port = free_port()
    proc = Proc(["console", "--port", str(port), "--workflows", "engine_workflows"], cluster.env,
                tmp_path / "console.log").start()
    cluster.procs.append(proc)  # stopped with the workers
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/schedules", timeout=10) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            raise AssertionError(f"the console did not come up:\n{proc.tail()}")
        time.sleep(0.3)
    assert "no authentication" in proc.log.read_text()
    yield base


async def _start(settings: Settings, *ids: tuple[Any, ...]) -> None:
    """Start ``(id, type, args[, search attributes])`` each."""
    async with Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                              rpc_timeout=90.0) as client:
        for wid, wf_type, args, *attrs in ids:
            await client.start_workflow(wf_type, *args, id=wid, search_attributes=attrs[0] if attrs else None)


async def _schedule(settings: Settings, sid: str) -> None:
    async with Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                              rpc_timeout=90.0) as client:
        await client.create_schedule(sid, cron="0 3 * * *", workflow="Hello", args=["nightly"])


def _start_in_thread(settings: Settings, *ids: tuple[Any, ...]) -> None:
    """:func:`_start` from inside Playwright's sync API (whose loop runs in this thread)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        ex.submit(asyncio.run, _start(settings, *ids)).result(timeout=120)


def _orphan_signal(settings: Settings, wid: str) -> None:
    """A signal for a workflow that does not exist yet, with nobody to answer: dead-lettered."""
    from confluent_kafka import Producer

    cmd = Command(f"c-{uuid.uuid4().hex}", wid, now_ms(),
                  SignalWorkflow("decide", [Payload("application/json", b'"from the dlq"')], signal_id=uuid.uuid4().hex))
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random"})
    p.produce(TopicNames(settings.topic_prefix).commands, key=wid.encode(), value=Codec().encode_command(cmd))
    assert p.flush(10) == 0


def test_console_in_a_browser(console_url: str, settings: Settings, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium, as .ci/run does) "
                    "or point AION_TEST_CHROMIUM at a Chromium binary", pytrace=False)
    expect = playwright_sync.expect
    expect.set_options(timeout=45_000)  # four test processes on two cores: waits stretch
    shots = Path(os.environ.get("AION_CONSOLE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:4]
    approval, dlq_wf = f"order-{tag}-approval", f"order-{tag}-late-signal"
    hellos = [f"order-{tag}-hello-{i}" for i in range(3)]
    parent, steps = f"batch-{tag}", f"steps-{tag}"
    asyncio.run(_start(settings, *[(h, "Hello", [f"customer {i}"], {"Customer": f"c-{i}", "Region": "eu"})
                                 for i, h in enumerate(hellos)],
                       (approval, "Approval", [1]), (parent, "Parent", [7]), (steps, "Steps", [3])))
    asyncio.run(_schedule(settings, f"nightly-{tag}"))
    _orphan_signal(settings, dlq_wf)

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.set_default_timeout(45_000)

            # The list: every workflow, live (the index catches up while the page is open).
            page.goto(f"{console_url}/workflows")
            rows = page.locator("#workflows tbody tr")
            for h in hellos:
                expect(rows.filter(has_text=h)).to_contain_text("COMPLETED")
            expect(rows.filter(has_text=f"{parent}-child")).to_contain_text("COMPLETED")
            expect(rows.filter(has_text=f"schedule:nightly-{tag}")).to_contain_text("aion.Schedule")
            page.screenshot(path=str(shots / "workflows.png"))
            # Live: a workflow started now appears without a reload.
            _start_in_thread(settings, (f"order-{tag}-late", "Hello", ["late"]))
            expect(rows.filter(has_text=f"order-{tag}-late")).to_contain_text("COMPLETED")

            # Filter: running Approvals only.
            page.fill("input[name=type]", "Approval")
            page.select_option("select[name=status]", "RUNNING")
            page.click("form.filters button[type=submit]")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text(approval)

            # Open it: running, waiting for a decision.
            page.click(f"text={approval}")
            expect(page.locator("#status")).to_contain_text("RUNNING")
            expect(page.locator("#history")).to_contain_text("WorkflowStarted")

            # Bad JSON in the signal form: a message, no traceback, nothing sent.
            page.fill("#signal-form input[name=name]", "decide")
            page.fill("#signal-form input[name=args]", "[approve")
            page.click("#signal-form button")
            expect(page.locator(".error")).to_contain_text("are not JSON")

            # The query button of the declared query.
            page.click("#query-form button[value=status]")
            expect(page.locator(".notice")).to_contain_text('"waiting:0"')

            # The signal: the new event and the result appear.
            page.fill("#signal-form input[name=name]", "decide")
            page.fill("#signal-form input[name=args]", '["approve"]')
            page.click("#signal-form button")
            expect(page.locator(".notice")).to_contain_text("signal 'decide' sent")
            expect(page.locator("#history")).to_contain_text("SignalReceived")
            expect(page.locator("#result")).to_contain_text('"approve"')
            expect(page.locator("#status")).to_contain_text("COMPLETED")
            page.screenshot(path=str(shots / "workflow.png"), full_page=True)

            # The history download is the replay file.
            with page.expect_download() as dl:
                page.click("text=download history JSON")
            saved = tmp_path / "history.json"
            dl.value.save_as(saved)
            assert '"format": "aion-history/1"' in saved.read_text()

            # Parent and child link to each other; the child's run is on the parent's timeline.
            page.goto(f"{console_url}/workflow?id={parent}")
            expect(page.locator("#result")).to_contain_text("child said 70")
            expect(page.locator(".gantt")).to_contain_text(f"{parent}-child")
            page.screenshot(path=str(shots / "parent.png"), full_page=True)
            page.click(f"#state >> text={parent}-child")
            expect(page.locator("#result")).to_contain_text("70")
            page.click(f"#state >> text={parent}")
            expect(page.locator("h1")).to_contain_text(parent)

            # Activities and timers on the timeline.
            page.goto(f"{console_url}/workflow?id={steps}")
            expect(page.locator("#result")).to_contain_text("6")
            expect(page.locator(".gantt tbody tr")).to_have_count(6)  # 3 activities, 3 timers
            page.screenshot(path=str(shots / "timeline.png"), full_page=True)

            # Schedules: pause, then trigger.
            page.goto(f"{console_url}/schedules")
            sched = page.locator("#schedules tbody tr", has_text=f"nightly-{tag}")
            expect(sched).to_contain_text("active")
            sched.locator("button[value=pause]").click()
            expect(page.locator(".notice")).to_contain_text("paused")
            expect(sched).to_contain_text("PAUSED")
            sched.locator("button[value=trigger]").click()
            expect(page.locator(".notice")).to_contain_text("triggered")
            page.screenshot(path=str(shots / "schedules.png"))

            # Dead letters: the orphan signal is listed with its reason; once its workflow is
            # started, a replay delivers it and the workflow completes with it.
            page.goto(f"{console_url}/dlq")
            row = page.locator("#dead-letters tbody tr", has_text=dlq_wf)
            deadline = time.monotonic() + 45
            while row.count() == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                page.reload()
            expect(row).to_contain_text("WorkflowNotFoundError")
            _start_in_thread(settings, (dlq_wf, "Approval", [1]))
            row.locator("input[name=pos]").check()
            page.screenshot(path=str(shots / "dead-letters.png"))
            page.click("text=Replay selected")
            expect(page.locator(".notice")).to_contain_text("re-submitted 1 dead letter(s)")
            page.goto(f"{console_url}/workflow?id={dlq_wf}")
            expect(page.locator("#result")).to_contain_text("from the dlq")

            page.goto(f"{console_url}/events?n=25")
            expect(page.locator("#events")).to_contain_text(dlq_wf)
            page.screenshot(path=str(shots / "events.png"))
        finally:
            browser.close()
