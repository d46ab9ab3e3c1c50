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
