"""``client.list_workflows``: the visibility index, read from the engine's ``workflows`` table.

The engine keeps one row per workflow (status, type, run, times, search attributes) in its
``workflows`` table, whose changelog topic ``<prefix>-engine-workflows-changelog`` is compacted
to the latest row per workflow id. Reading that topic gives every owning worker's rows at
once, without asking the workers (so it also works while they are down or rebalancing); the
filters are applied here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from .._search_attributes import decode_all, typed
from ..common.settings import Settings


@dataclass(frozen=True)
class WorkflowSummary:
    """One row of the visibility index."""

    workflow_id: str
    workflow_type: str | None
    run_id: str | None
    status: str | None
    history_length: int
    started_at_ms: int | None
    closed_at_ms: int | None
    task_queue: str | None
    #: Its search attributes: text, or the typed value of a typed attribute (int, float, bool,
    #: datetime, list of str).
    search_attributes: dict[str, Any] = field(default_factory=dict)
    #: The build the current run is pinned to ("" = the engine workers' own code; aion deploy).
    code_version: str = ""
    #: The type of each typed search attribute (``Int``, ``Datetime``, ``KeywordList``, ...).
    search_attribute_types: dict[str, str] = field(default_factory=dict)

    @property
    def typed_search_attributes(self) -> Any:
        """The search attributes as :class:`aion.common.TypedSearchAttributes`."""
        return typed({k: encode_any(v) for k, v in self.search_attributes.items()}, self.search_attribute_types)


def encode_any(v: Any) -> str:
    """The stored text of a decoded value (the inverse of ``decode`` for any type)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, list):
        return json.dumps(v, ensure_ascii=False)
    return repr(v) if isinstance(v, float) else str(v)


def workflows_changelog(prefix: str) -> str:
    return f"{prefix}-engine-workflows-changelog"


def read_workflow_rows(settings: Settings, timeout: float = 10.0) -> dict[str, WorkflowSummary]:
    """The latest row of every workflow (blocking; run it in a thread). Raises
    :class:`~aion.client.VisibilityTimeoutError` when the index cannot be read to its end within
    ``timeout`` seconds: never a part of it."""
    topic = workflows_changelog(settings.topic_prefix)
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.visibility.{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         "isolation.level": "read_committed"})
    rows: dict[str, WorkflowSummary] = {}
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            return rows  # no engine worker has recorded anything yet
        ends: dict[int, int] = {}
        for p in tmd.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return rows
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        remaining = set(ends)
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            # consume() waits for its whole batch or the timeout: keep the timeout short.
            msgs = consumer.consume(1000, 0.05)
            for m in msgs:
                if m.error():
                    continue
                key = (m.key() or b"").decode()
                if m.value() is None:
                    rows.pop(key, None)
                else:
                    d = json.loads(m.value())
                    sa_types = d.get("search_attribute_types") or {}
                    rows[key] = WorkflowSummary(
                        workflow_id=d.get("workflow_id") or key, workflow_type=d.get("workflow_type"),
                        run_id=d.get("run_id"), status=d.get("status"), history_length=d.get("history_length") or 0,
                        started_at_ms=d.get("started_at_ms"), closed_at_ms=d.get("closed_at_ms"),
                        task_queue=d.get("task_queue"), search_attributes=decode_all(d.get("search_attributes") or {}, sa_types),
                        code_version=d.get("code_version") or "", search_attribute_types=sa_types)
                if m.offset() + 1 >= ends[m.partition()]:
                    remaining.discard(m.partition())
            if remaining:
                # The engine writes rows in transactions: a partition ends with a transaction
                # marker (and maybe aborted rows), never delivered; the position passes them.
                for tp in consumer.position([TopicPartition(topic, p) for p in remaining]):
                    if tp.offset >= ends[tp.partition]:
                        remaining.discard(tp.partition)
        if remaining:
            from ._errors import VisibilityTimeoutError

            raise VisibilityTimeoutError(
                f"the visibility index ({topic}) was read only in part within {timeout:.0f}s: partition(s) "
                f"{sorted(remaining)} not to their end ({len(rows)} rows read); nothing is returned rather than "
                f"a part. Pass a larger timeout, or check the broker")
    finally:
        consumer.close()
    return rows


def _ms(t: datetime | int | float | None) -> int | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return int(t.timestamp() * 1000)
    return int(t)


def filter_rows(
    rows: dict[str, WorkflowSummary], *, type: str | None = None, status: str | None = None,
    started_after: datetime | int | None = None, started_before: datetime | int | None = None,
    search_attributes: dict[str, Any] | None = None, query: str | None = None,
) -> list[WorkflowSummary]:
    """The rows that match every filter given, by start time then id. ``query`` is a list
    filter (``_list_filter.py``: ``WorkflowType = 'Order' AND StartTime > '2026-12-01'``)."""
    from ._list_filter import compile_filter

    matches = compile_filter(query or "")
    after, before = _ms(started_after), _ms(started_before)
    out = []
    for r in rows.values():
        if not matches(r):
            continue
        if type is not None and r.workflow_type != type:
            continue
        if status is not None and (r.status or "").upper() != status.upper():
            continue
        if after is not None and (r.started_at_ms is None or r.started_at_ms <= after):
            continue
        if before is not None and (r.started_at_ms is None or r.started_at_ms >= before):
            continue
        if search_attributes and not all(_attr_equals(r.search_attributes.get(k), v) for k, v in search_attributes.items()):
            continue
        out.append(r)
    out.sort(key=lambda r: (r.started_at_ms or 0, r.workflow_id))
    return out


def _attr_equals(stored: Any, wanted: Any) -> bool:
    """``list_workflows(search_attributes={...})``: a keyword list matches a value it holds (or
    the same list); other values match by value, or by text (``{"Priority": "2"}``)."""
    if stored is None:
        return False
    if isinstance(stored, list) and not isinstance(wanted, list):
        return str(wanted) in stored
    return stored == wanted or encode_any(stored) == encode_any(wanted) or str(stored) == str(wanted)
