"""Everything under tests/integration/ talks to a real Kafka broker.

Each test here is marked ``integration`` (select with ``-m integration`` or deselect with
``-m 'not integration'``) and gets the session broker (``kafka_bootstrap`` in tests/conftest.py)
whether or not it names the fixture: without a broker these tests fail with instructions,
they are never skipped silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: mark only the ones in this folder.
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _integration_broker(kafka_bootstrap: str) -> str:
    return kafka_bootstrap


@pytest.fixture
def make_cluster(settings, tmp_path):  # type: ignore[no-untyped-def]
    """``make_cluster(workflows_module="engine_workflows")``: engine/activity worker processes on
    this test's topics (created here), all stopped at the end of the test."""
    from _procs import Cluster

    from aion.engine.topics import ensure_topics

    made: list[Cluster] = []

    def make(workflows: str = "engine_workflows") -> Cluster:
        ensure_topics(settings)
        c = Cluster(settings, tmp_path, workflows)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    """A cluster running ``engine_workflows``; tests start the workers they need."""
    return make_cluster()


@pytest.fixture
async def client(settings):  # type: ignore[no-untyped-def]
    """An ``aion.client.Client`` on this test's topics. Its requests wait up to 90 s for an answer
    (30 s by default): a test often sends its first command while the engine worker it just started
    is still coming up, which takes longer when four test processes share two cores."""
    from aion.client import Client

    c = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                             rpc_timeout=90.0)
    yield c
    await c.close()
