"""Every example test runs twice: with resident workflow instances (the engine's hot path) and
with every command handled by an instance rebuilt from the log (replay on every step, as after
an engine restart) — so each example is also checked to replay deterministically."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from aion.testing import WorkflowEnvironment


@pytest.fixture(params=[True, False], ids=["resident", "replay-every-step"])
def make_env(request: pytest.FixtureRequest) -> Callable[..., WorkflowEnvironment]:
    def make(workflows: Any, activities: Any, **kwargs: Any) -> WorkflowEnvironment:
        return WorkflowEnvironment.start_time_skipping(
            workflows=workflows, activities=activities, resident=request.param, **kwargs
        )

    return make
