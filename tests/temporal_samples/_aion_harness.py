"""Stand-ins for what a Temporal sample's ``main()`` uses to reach a Temporal server
(``Client.connect``, ``Worker``, ``ClientConfig``, ``TLSConfig``, ``SharedStateManager``): the
client is ``env.client`` of one ``aion.testing.WorkflowEnvironment.start_time_skipping``, which
the first ``Worker`` starts with its workflows and activities (``measure.py`` uses it)."""

from __future__ import annotations

import asyncio
from typing import Any

from aion.exceptions import WorkflowFailureError  # noqa: F401  (temporalio.client re-export)
from aion.testing import WorkflowEnvironment

CURRENT: dict[str, Any] = {"env": None}


class ClientConfig:
    @staticmethod
    def load_client_connect_config(*a: Any, **kw: Any) -> dict[str, Any]:
        return {}


class TLSConfig:
    def __init__(self, *a: Any, **kw: Any) -> None:
        pass


class SharedStateManager:
    @staticmethod
    def create_from_multiprocessing(*a: Any, **kw: Any) -> "SharedStateManager":
        return SharedStateManager()


class _LazyClient:
    """env.client, once a Worker started the environment."""

    def __getattr__(self, name: str) -> Any:
        env = CURRENT["env"]
        if env is None:
            raise RuntimeError(f"client.{name} used before a Worker started the environment")
        return getattr(env.client, name)


class Client:
    @staticmethod
    async def connect(*a: Any, **kw: Any) -> _LazyClient:
        return _LazyClient()


class Worker:
    def __init__(self, client: Any, *, task_queue: str = "default", workflows: Any = (), activities: Any = (),
                 **kw: Any) -> None:
        self.workflows, self.activities = list(workflows), list(activities)
        self.env: Any = None

    async def __aenter__(self) -> "Worker":
        self.env = WorkflowEnvironment.start_time_skipping(workflows=self.workflows, activities=self.activities)
        await self.env.__aenter__()
        CURRENT["env"] = self.env
        return self

    async def __aexit__(self, *exc: Any) -> None:
        env, self.env = self.env, None
        await env.__aexit__(*exc)

    async def run(self) -> None:
        async with self:
            await asyncio.Future()
