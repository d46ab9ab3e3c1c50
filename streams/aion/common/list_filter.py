"""The list filter: the subset of Temporal's List Filter that users rely on, over the rows of
the visibility index (``WorkflowSummary``).

Grammar (keywords in any case; ``AND`` binds tighter than ``OR``; parentheses group)::

    filter     := or
    or         := and ("OR" and)*
    and        := condition ("AND" condition)*
    condition  := "(" filter ")"
                | field ("=" | "!=" | "<" | ">" | "<=" | ">=") value
                | field "IN" "(" value ("," value)* ")"
                | field "BETWEEN" value "AND" value
                | field "STARTS_WITH" value
    value      := 'text' | "text" | number

Fields: ``WorkflowId``, ``WorkflowType``, ``RunId``, ``ExecutionStatus`` (any case: ``Running``,
``Completed``, ...), ``TaskQueue``, ``BuildId``, ``HistoryLength``, ``StartTime`` and
``CloseTime`` (compared as instants: an ISO-8601 text — ``'2026-12-03T10:00:00Z'`` — or epoch
milliseconds); any other name is a search attribute (write it in backticks when it is not a
plain identifier), compared by the type it has in each row (``aion.common``): ``Int`` and
``Double`` as numbers (``Priority > 2``, ``'2'`` too), ``Bool`` with ``true`` / ``false``,
``Datetime`` as instants (like ``StartTime``), a ``KeywordList`` ``=`` a value when it holds
it (``IN``: when it holds one of them; ``!=``: when it does not hold it), and text (an untyped
attribute, ``Text``, ``Keyword``) as text. A row without the field matches no condition on it
(``!=`` included), as in Temporal; a value that does not fit the row's type matches nothing.

:func:`compile_filter` turns the text into a predicate, or raises :class:`ListFilterError`
saying where the text went wrong. :func:`plan_filter` also says what every matching row must
have (:class:`Hints`: its statuses, its types, a start-time range) and whether that is all the
filter asks: an engine answers a list from its index of rows by status, type and start time
(``engine/_visibility_index.py``) and reads only the rows the hints leave.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..exceptions import InvalidArgumentError

__all__ = ["ListFilterError", "Hints", "compile_filter", "plan_filter"]


class ListFilterError(InvalidArgumentError):
    """A list filter that does not parse: the message says where and what was expected."""


#: Start times are epoch milliseconds; a row without one is indexed at -1 (before every range).
NO_START = -1
MAX_MS = 2**63 - 1


@dataclass(frozen=True)
class Hints:
    """What every row a filter matches has: its status among ``statuses`` and its type among
    ``types`` (None: any), its start time in ``[start_lo, start_hi]``; ``exact`` when the filter
    asks nothing more (a row that has these matches)."""

    statuses: frozenset[str] | None = None
    types: frozenset[str] | None = None
    start_lo: int | None = None
    start_hi: int | None = None
    exact: bool = True

    def both(self, other: "Hints") -> "Hints":
        """The hints of ``self AND other``."""
        def meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
            return b if a is None else a if b is None else a & b
        lo = [x for x in (self.start_lo, other.start_lo) if x is not None]
        hi = [x for x in (self.start_hi, other.start_hi) if x is not None]
        return Hints(meet(self.statuses, other.statuses), meet(self.types, other.types),
                     max(lo) if lo else None, min(hi) if hi else None, self.exact and other.exact)

    def either(self, other: "Hints") -> "Hints":
        """The hints of ``self OR other``: what both sides have (exact only when both sides are
        one condition on the same set field, ``A = 1 OR A = 2``)."""
        def join(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
            return None if a is None or b is None else a | b
        lo = min(self.start_lo, other.start_lo) if self.start_lo is not None and other.start_lo is not None else None
        hi = max(self.start_hi, other.start_hi) if self.start_hi is not None and other.start_hi is not None else None
        out = Hints(join(self.statuses, other.statuses), join(self.types, other.types), lo, hi, False)
        one_field = (self._only("statuses") and other._only("statuses")) or (self._only("types") and other._only("types"))
        return replace(out, exact=self.exact and other.exact and one_field)

    def _only(self, name: str) -> bool:
        fields = {"statuses": self.statuses, "types": self.types}
        return fields[name] is not None and all(v is None for k, v in fields.items() if k != name) and \
            self.start_lo is None and self.start_hi is None

    @property
    def empty(self) -> bool:
        """No row can match."""
        return (self.statuses is not None and not self.statuses) or (self.types is not None and not self.types) or (
            self.start_lo is not None and self.start_hi is not None and self.start_lo > self.start_hi)


ANY = Hints()
OPAQUE = Hints(exact=False)


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|=|<|>|\(|\)|,)
    | (?P<name>`[^`]+`|[A-Za-z_][A-Za-z0-9_.\-]*)
    )""", re.X)
_KEYWORDS = {"AND", "OR", "IN", "BETWEEN", "STARTS_WITH"}

#: Row attribute of each built-in field (the rest are search attributes).
_FIELDS = {
    "workflowid": "workflow_id", "workflowtype": "workflow_type", "runid": "run_id",
    "executionstatus": "status", "taskqueue": "task_queue", "buildid": "code_version",
    "historylength": "history_length", "starttime": "started_at_ms", "closetime": "closed_at_ms",
}
_TIMES = {"started_at_ms", "closed_at_ms"}

Predicate = Callable[[Any], bool]


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ListFilterError(f"list filter: cannot read {text[at:][:20]!r} at character {at + 1}")
        kind = m.lastgroup
        raw = m.group(kind)  # type: ignore[arg-type]
        at = m.start(kind)  # type: ignore[arg-type]
        if kind == "str":
            out.append(("value", re.sub(r"\\(.)", r"\1", raw[1:-1]), at))
        elif kind == "num":
            out.append(("value", float(raw) if "." in raw else int(raw), at))
        elif kind == "name" and raw.lower() in ("true", "false"):
            out.append(("value", raw.lower() == "true", at))
        elif kind == "name" and raw.upper() in _KEYWORDS:
            out.append(("kw", raw.upper(), at))
        elif kind == "name":
            out.append(("name", raw.strip("`"), at))
        else:
            out.append(("op", raw, at))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def _peek(self) -> tuple[str, Any, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _fail(self, expected: str) -> ListFilterError:
        tok = self._peek()
        where = f"at character {tok[2] + 1} ({tok[1]!r})" if tok else "at the end"
        return ListFilterError(f"list filter {self.text!r}: expected {expected} {where}")

    def _take(self, kind: str, value: Any = None) -> Any:
        tok = self._peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            raise self._fail(repr(value) if value is not None else f"a {kind}")
        self.i += 1
        return tok[1]

    def _is(self, kind: str, value: Any) -> bool:
        tok = self._peek()
        return tok is not None and tok[0] == kind and tok[1] == value

    def parse(self) -> tuple[Predicate, Hints]:
        pred, hints = self._or()
        if self._peek() is not None:
            raise self._fail("AND, OR or the end")
        return pred, hints

    def _or(self) -> tuple[Predicate, Hints]:
        return self._joined("OR", self._and, Hints.either, any)

    def _and(self) -> tuple[Predicate, Hints]:
        return self._joined("AND", self._condition, Hints.both, all)

    def _joined(self, keyword: str, part: Callable[[], tuple[Predicate, Hints]],
                join: Callable[[Hints, Hints], Hints], quantifier: Callable[[Any], bool]) -> tuple[Predicate, Hints]:
        """``part (keyword part)*``: its predicate (``any``/``all`` of the parts') and hints."""
        pred, hints = part()
        parts = [pred]
        while self._is("kw", keyword):
            self.i += 1
            p, h = part()
            parts.append(p)
            hints = join(hints, h)
        return (parts[0] if len(parts) == 1 else (lambda r: quantifier(p(r) for p in parts))), hints

    def _condition(self) -> tuple[Predicate, Hints]:
        if self._is("op", "("):
            self.i += 1
            inner = self._or()
            self._take("op", ")")
            return inner
        tok = self._peek()
        if tok is None or tok[0] != "name":
            raise self._fail("a field name (WorkflowType, ExecutionStatus, StartTime, a search attribute ...)")
        self.i += 1
        if _FIELDS.get(tok[1].lower()) is None:
            return self._attribute_condition(tok[1]), OPAQUE
        get = _getter(tok[1])
        conv = _converter(tok[1])
        attr = _FIELDS[tok[1].lower()]
        if self._is("kw", "IN"):
            self.i += 1
            self._take("op", "(")
            values = [conv(self._take("value"))]
            while self._is("op", ","):
                self.i += 1
                values.append(conv(self._take("value")))
            self._take("op", ")")
            return (lambda r: (v := get(r)) is not None and v in values), _set_hint(attr, values)
        if self._is("kw", "BETWEEN"):
            self.i += 1
            lo = conv(self._take("value"))
            self._take("kw", "AND")
            hi = conv(self._take("value"))
            hint = Hints(start_lo=lo, start_hi=hi) if attr == "started_at_ms" else OPAQUE
            return (lambda r: (v := get(r)) is not None and lo <= v <= hi), hint
        if self._is("kw", "STARTS_WITH"):
            self.i += 1
            prefix = str(self._take("value"))
            return (lambda r: (v := get(r)) is not None and str(v).startswith(prefix)), OPAQUE
        op = self._take("op") if (t := self._peek()) is not None and t[0] == "op" else None
        if op not in ("=", "!=", "<", ">", "<=", ">="):
            self.i -= 1 if op is not None else 0
            raise self._fail("=, !=, <, >, <=, >=, IN, BETWEEN or STARTS_WITH")
        value = conv(self._take("value"))
        cmp = _COMPARE[op]
        if op == "=":
            hint = _set_hint(attr, [value])
        elif attr == "started_at_ms" and op != "!=":
            hint = start_range(op, value)
        else:
            hint = OPAQUE
        return (lambda r: (v := get(r)) is not None and _safe(cmp, v, value)), hint


    def _attribute_condition(self, name: str) -> Predicate:
        """A condition on search attribute ``name``: its literal(s) are converted per row, to
        the type the attribute has there."""
        if self._is("kw", "IN"):
            self.i += 1
            self._take("op", "(")
            raw = [self._take("value")]
            while self._is("op", ","):
                self.i += 1
                raw.append(self._take("value"))
            self._take("op", ")")
            return lambda r: _attr_test(r, name, "IN", raw)
        if self._is("kw", "BETWEEN"):
            self.i += 1
            lo = self._take("value")
            self._take("kw", "AND")
            hi = self._take("value")
            return lambda r: _attr_test(r, name, "BETWEEN", [lo, hi])
        if self._is("kw", "STARTS_WITH"):
            self.i += 1
            prefix = str(self._take("value"))
            return lambda r: _attr_test(r, name, "STARTS_WITH", [prefix])
        op = self._take("op") if (t := self._peek()) is not None and t[0] == "op" else None
        if op not in ("=", "!=", "<", ">", "<=", ">="):
            self.i -= 1 if op is not None else 0
            raise self._fail("=, !=, <, >, <=, >=, IN, BETWEEN or STARTS_WITH")
        value = self._take("value")
        return lambda r: _attr_test(r, name, op, [value])


class _NoMatch(Exception):
    """A literal that does not fit the attribute's type in a row."""


def _as_type(kind: str, v: Any) -> Any:
    """Literal ``v`` as a value of search attribute type ``kind`` (raises :class:`_NoMatch`)."""
    try:
        if kind == "Int":
            if isinstance(v, bool):
                raise _NoMatch
            return int(v) if not isinstance(v, float) or v.is_integer() else v
        if kind == "Double":
            if isinstance(v, bool):
                raise _NoMatch
            return float(v)
        if kind == "Bool":
            if isinstance(v, bool):
                return v
            if str(v).lower() in ("true", "false"):
                return str(v).lower() == "true"
            raise _NoMatch
        if kind == "Datetime":
            return _instant(v)
    except (ValueError, TypeError, ListFilterError):
        raise _NoMatch from None
    return v if isinstance(v, str) else (str(v).lower() if isinstance(v, bool) else str(v))


def _attr_test(r: Any, name: str, op: str, raw: list[Any]) -> bool:
    stored = r.search_attributes.get(name)
    if stored is None:
        return False
    kind = (getattr(r, "search_attribute_types", None) or {}).get(name, "Text")
    if kind == "Datetime" and hasattr(stored, "timestamp"):
        stored = int(stored.timestamp() * 1000)
    try:
        if kind == "KeywordList":
            items = [str(x) for x in stored] if isinstance(stored, list) else [str(stored)]
            values = [_as_type("Keyword", v) for v in raw]
            if op in ("=", "IN"):
                return any(v in items for v in values)
            if op == "!=":
                return values[0] not in items
            if op == "STARTS_WITH":
                return any(i.startswith(values[0]) for i in items)
            return False  # no order on a list
        values = [_as_type(kind, v) for v in raw]
    except _NoMatch:
        return False
    if op == "IN":
        return stored in values
    if op == "BETWEEN":
        return _safe(lambda a, b: b[0] <= a <= b[1], stored, values)
    if op == "STARTS_WITH":
        return isinstance(stored, str) and stored.startswith(str(values[0]))
    return _safe(_COMPARE[op], stored, values[0])


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def _safe(cmp: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    try:
        return cmp(a, b)
    except TypeError:  # a number compared with a text: no match
        return False


def _getter(name: str) -> Callable[[Any], Any]:
    attr = _FIELDS.get(name.lower())
    if attr == "status":
        return lambda r: (r.status or "").upper() or None
    if attr is not None:
        return lambda r: getattr(r, attr)
    return lambda r: r.search_attributes.get(name)


def _converter(name: str) -> Callable[[Any], Any]:
    attr = _FIELDS.get(name.lower())
    if attr in _TIMES:
        return _instant
    if attr == "status":
        return lambda v: str(v).upper()
    if attr == "history_length":
        return lambda v: int(v) if isinstance(v, (int, float)) or str(v).isdigit() else v
    if attr is None:  # search attributes are stored as text
        return lambda v: str(v)
    return lambda v: v


def _instant(v: Any) -> int:
    if isinstance(v, (int, float)):
        return int(v)
    try:
        t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        raise ListFilterError(f"list filter: {v!r} is not a time: write an ISO-8601 text such as "
                              "'2026-12-03T10:00:00Z' or epoch milliseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def _set_hint(attr: str, values: list[Any]) -> Hints:
    """The hint of ``attr = v`` / ``attr IN (...)``: the set of statuses or types (else none)."""
    if attr == "status":
        return Hints(statuses=frozenset(str(v) for v in values))
    if attr == "workflow_type":
        # a type is text: a number never equals it (the predicate compares as stored)
        return Hints(types=frozenset(v for v in values if isinstance(v, str)))
    if attr == "started_at_ms" and len(values) == 1:
        return Hints(start_lo=values[0], start_hi=values[0])
    return OPAQUE


def start_range(op: str, ms: int) -> Hints:
    """The hint of ``StartTime <op> ms`` (milliseconds: strict bounds move by one)."""
    return {"<": Hints(start_lo=0, start_hi=ms - 1), "<=": Hints(start_lo=0, start_hi=ms),
            ">": Hints(start_lo=ms + 1, start_hi=MAX_MS), ">=": Hints(start_lo=ms, start_hi=MAX_MS)}[op]


def compile_filter(text: str) -> Predicate:
    """The predicate of a list filter over ``WorkflowSummary`` rows (see the module docs)."""
    return plan_filter(text)[0]


def plan_filter(text: str) -> tuple[Predicate, Hints]:
    """The predicate of a list filter and its :class:`Hints` (see the module docs)."""
    if not text or not text.strip():
        return (lambda r: True), ANY
    return _Parser(text).parse()
