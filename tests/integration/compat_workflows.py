"""Workflows of the "Coming from Temporal" integration tests, run by a real engine process.

Their activities are run by an in-process ``ActivityWorker`` in the test (bound methods, sync
activities), so the engine process only needs the workflow classes and the activities' names.
"""

from __future__ import annotations

from datetime import timedelta

from aion import activity, workflow


class Inventory:
    """Activities as methods of an object that holds their dependencies (here: a stock table)."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)

    @activity.defn
    async def reserve(self, item: str, n: int) -> int:
        self.stock[item] -= n
        return self.stock[item]

    @activity.defn
    def count(self, item: str) -> int:  # sync: runs in the worker's thread pool
        return self.stock[item]


@workflow.defn
class Restock:
    @workflow.run
    async def run(self, item: str) -> list[int]:
        opts = {"start_to_close_timeout": timedelta(seconds=20)}
        left = await workflow.execute_activity_method(Inventory.reserve, item, 2, **opts)
        counted = await workflow.start_activity_method(Inventory.count, item, **opts)
        return [left, counted]


@activity.defn
def upper(text: str) -> str:
    return text.upper()


@workflow.defn
class LocalUpper:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_local_activity(upper, text, start_to_close_timeout=timedelta(seconds=20))
