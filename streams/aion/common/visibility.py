"""The visibility index's rows and a list request, as the client and the engine both read them.

The engine keeps one JSON row per workflow in its ``workflows`` table (``engine/_store.py``
``visibility_row``): status, type, run, times, search attributes. A list is asked of the engines
that own the partitions (``__aion.list``, answered from their index: ``engine/_visibility_index.py``)
or, when no engine answers, read from the table's changelog (``client/_visibility.py``). Both
ends select rows with the same :class:`ListRequest`: a list filter (``list_filter.py``) and the
keyword filters of ``client.list_workflows``, in one JSON form.

The exchange, one ``QueryWorkflow`` named :data:`LIST_QUERY` per partition (addressed to a
workflow id the partition owns, :func:`partition_address`), whose one argument is the request's
JSON plus ``{"limit": n, "after": [start_ms, workflow_id] | null, "count": bool, "reverse": bool}``;
the answer is ``{"rows": [row, ...], "next": [start_ms, workflow_id] | null, "count": n | null}``:
the matching rows after ``after`` by (start time, workflow id) — before it, newest first, with
``reverse`` — at most ``limit`` of them and about
:data:`MAX_PAGE_BYTES`, and where to go on (``null``: the partition has no more). An engine
reads at most :data:`SCAN_BUDGET` rows per answer, so a filter its index cannot narrow is
answered in several steps (``next`` moves on even when ``rows`` is empty); a count is exact
when ``next`` is null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

from .._search_attributes import decode_all, typed
from ..codec import partition_for
from .list_filter import MAX_MS, NO_START, Hints, ListFilterError, plan_filter, start_range

__all__ = ["LIST_QUERY", "ListRequest", "WorkflowSummary", "encode_any", "summary_from_row", "partition_address"]

LIST_QUERY = "__aion.list"
#: Rows an engine reads (and decodes) at most per answer: keeps each answer's step short.
SCAN_BUDGET = 1000
#: Most rows one answer holds (a client asks for at most this many per page).
MAX_LIMIT = 10_000
#: Most row bytes per answer (a reply stays well under Kafka's default 1 MiB record limit).
MAX_PAGE_BYTES = 512 * 1024


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

    @property
    def order(self) -> tuple[int, str]:
        """Where the row is in a list: by start time, then workflow id."""
        return (self.started_at_ms if self.started_at_ms is not None else NO_START, self.workflow_id)


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


def summary_from_row(d: Mapping[str, Any], key: str = "") -> WorkflowSummary:
    """The summary of a decoded ``workflows`` row (``key``: its workflow id, when the row has none)."""
    sa_types = d.get("search_attribute_types") or {}
    return WorkflowSummary(
        workflow_id=d.get("workflow_id") or key, workflow_type=d.get("workflow_type"),
        run_id=d.get("run_id"), status=d.get("status"), history_length=d.get("history_length") or 0,
        started_at_ms=d.get("started_at_ms"), closed_at_ms=d.get("closed_at_ms"),
        task_queue=d.get("task_queue"), search_attributes=decode_all(d.get("search_attributes") or {}, sa_types),
        code_version=d.get("code_version") or "", search_attribute_types=sa_types)


def _ms(t: datetime | int | float | None) -> int | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return int(t.timestamp() * 1000)
    return int(t)


@dataclass(frozen=True)
class ListRequest:
    """What a list selects: a list filter and the keyword filters of ``list_workflows``."""

    query: str = ""
    type: str | None = None
    status: str | None = None
    started_after: int | None = None
    started_before: int | None = None
    search_attributes: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, query: str | None = None, *, type: str | None = None, status: str | None = None,
           started_after: datetime | int | None = None, started_before: datetime | int | None = None,
           search_attributes: Mapping[str, Any] | None = None) -> "ListRequest":
        """The request of ``list_workflows``' arguments; raises :class:`ListFilterError` for a
        filter that does not parse (before anything is asked)."""
        req = cls(query or "", type, status, _ms(started_after), _ms(started_before),
                  dict(search_attributes) if search_attributes else None)
        req.plan()
        return req

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query}
        for name in ("type", "status", "started_after", "started_before"):
            if (v := getattr(self, name)) is not None:
                out[name] = v
        if self.search_attributes:
            out["search_attributes"] = {k: encode_any(v) if not isinstance(v, (int, float, bool, list)) else v
                                        for k, v in self.search_attributes.items()}
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ListRequest":
        """The request an engine received; raises ``ValueError`` (with what was wrong) for a
        malformed one."""
        if not isinstance(d, Mapping) or not isinstance(d.get("query", ""), str):
            raise ValueError("a list request is a JSON object with a text 'query'")
        def opt(name: str, kind: type) -> Any:
            v = d.get(name)
            if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
                raise ValueError(f"list request: {name!r} must be {kind.__name__}, not {v!r}")
            return v
        sa = d.get("search_attributes")
        if sa is not None and not isinstance(sa, Mapping):
            raise ValueError("list request: 'search_attributes' must be an object")
        req = cls(d.get("query") or "", opt("type", str), opt("status", str), opt("started_after", int),
                  opt("started_before", int), dict(sa) if sa else None)
        req.plan()
        return req

    def plan(self) -> tuple[Callable[[WorkflowSummary], bool], Hints]:
        """The predicate over rows and the :class:`Hints` every match has."""
        matches, hints = plan_filter(self.query)
        keyword = Hints()
        if self.type is not None:
            keyword = keyword.both(Hints(types=frozenset([self.type])))
        if self.status is not None:
            keyword = keyword.both(Hints(statuses=frozenset([self.status.upper()])))
        if self.started_after is not None:
            keyword = keyword.both(start_range(">", self.started_after))
        if self.started_before is not None:
            keyword = keyword.both(start_range("<", self.started_before))
        if self.search_attributes:
            keyword = keyword.both(Hints(exact=False))
        hints = hints.both(keyword)
        wanted_sa = self.search_attributes or {}
        type_, status = self.type, (self.status.upper() if self.status is not None else None)
        after, before = self.started_after, self.started_before

        def predicate(r: WorkflowSummary) -> bool:
            if not matches(r):
                return False
            if type_ is not None and r.workflow_type != type_:
                return False
            if status is not None and (r.status or "").upper() != status:
                return False
            if after is not None and (r.started_at_ms is None or r.started_at_ms <= after):
                return False
            if before is not None and (r.started_at_ms is None or r.started_at_ms >= before):
                return False
            return all(_attr_equals(r.search_attributes.get(k), v) for k, v in wanted_sa.items())

        return predicate, hints

    def select(self, rows: Mapping[str, WorkflowSummary], newest_first: bool = False) -> list[WorkflowSummary]:
        """The rows that match, by start time then workflow id (``newest_first``: the other way)."""
        matches, _ = self.plan()
        out = [r for r in rows.values() if matches(r)]
        out.sort(key=lambda r: r.order, reverse=newest_first)
        return out


def _attr_equals(stored: Any, wanted: Any) -> bool:
    """``list_workflows(search_attributes={...})``: a keyword list matches a value it holds (or
    the same list); other values match by value, or by text (``{"Priority": "2"}``)."""
    if stored is None:
        return False
    if isinstance(stored, list) and not isinstance(wanted, list):
        return str(wanted) in stored
    return stored == wanted or encode_any(stored) == encode_any(wanted) or str(stored) == str(wanted)


def partition_address(partition: int, partitions: int) -> str:
    """A workflow id that partition ``partition`` (of ``partitions``) owns: where a list
    request for that partition is sent (no workflow of that id is ever run: the engine answers
    :data:`LIST_QUERY` before it looks a workflow up)."""
    for k in range(100_000):
        wid = f"__aion.visibility.{partition}.{k}"
        if partition_for(wid, partitions) == partition:
            return wid
    raise ValueError(f"no workflow id found for partition {partition} of {partitions}")  # pragma: no cover


__all__ += ["ListFilterError", "MAX_LIMIT", "MAX_MS", "NO_START", "SCAN_BUDGET", "MAX_PAGE_BYTES"]
