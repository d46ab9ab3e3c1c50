"""The plumbing every part of Aion Streams may import: clients, engine workers, activity
workers, the test environment, the CLI and the benchmarks.

- :mod:`aion.common.settings`: ``Settings.from_env()``, every ``AION_*`` variable in one place,
  and the confluent-kafka configuration they make (``settings.confluent_config()``);
- :mod:`aion.common.topics`: the deployment's topic names (changelogs included), idempotent
  creation and validation;
- :mod:`aion.common.access`: what a refused login, TLS trust or ACL looks like, and metadata
  reads that say so;
- :mod:`aion.common.kafka`: the asyncio adapters around confluent-kafka's producer and consumer;
- :mod:`aion.common.schedule_spec`: schedule specs, their fire times and ids.

And, named as in ``temporalio.common`` so that Temporal code runs with its import changed:
``RetryPolicy`` and the typed search attributes (``SearchAttributeKey``, ``SearchAttributePair``,
``TypedSearchAttributes``, ``SearchAttributeUpdate``, ``SearchAttributeIndexedValueType``;
``aion._search_attributes`` says how they are stored and compared).

Nothing here imports Faust, the engine, the client or the runtime (``tests/unit/
test_import_graph.py`` and ``test_no_faust_import.py`` say so). ``aion.engine.settings`` and
``aion.engine.topics``, the older homes of the first two, still re-export them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._search_attributes import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    SearchAttributeValue,
    TypedSearchAttributes,
)

if TYPE_CHECKING:
    from ..workflow._types import RetryPolicy

__all__ = [
    "RetryPolicy",
    "SearchAttributeIndexedValueType",
    "SearchAttributeKey",
    "SearchAttributePair",
    "SearchAttributeUpdate",
    "SearchAttributeValue",
    "TypedSearchAttributes",
]


def __getattr__(name: str) -> Any:
    # RetryPolicy lives in aion.workflow: imported when asked for, so that the plumbing
    # (settings, topics) does not load the workflow API.
    if name == "RetryPolicy":
        from ..workflow._types import RetryPolicy

        return RetryPolicy
    raise AttributeError(f"module 'aion.common' has no attribute {name!r}")
