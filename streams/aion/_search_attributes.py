"""Typed search attributes (public in :mod:`aion.common`, named as in ``temporalio.common``).

A search attribute has a name, a type and a value. Temporal's seven types are supported:

=========================================  ===============  =====================================
key                                        value            stored text (``search_attributes``)
=========================================  ===============  =====================================
``SearchAttributeKey.for_text(name)``      ``str``          the text
``SearchAttributeKey.for_keyword(name)``   ``str``          the text
``SearchAttributeKey.for_int(name)``       ``int``          ``"42"``
``SearchAttributeKey.for_float(name)``     ``float``        ``"1.5"`` (``repr``)
``SearchAttributeKey.for_bool(name)``      ``bool``         ``"true"`` / ``"false"``
``SearchAttributeKey.for_datetime(name)``  ``datetime``     ISO-8601 in UTC (naive = UTC)
``SearchAttributeKey.for_keyword_list``    ``list[str]``    a JSON array
=========================================  ===============  =====================================

The history keeps each value as that text in the ``search_attributes`` map (so a reader of an
older release still sees a text value) and its type beside it in ``search_attribute_types``; a
name without a type is text, as every attribute was before. The list filter compares typed
values by their type (numbers as numbers, datetimes as instants, a keyword list ``=`` a value
when it holds it).

Both of Temporal's spellings are accepted: ``TypedSearchAttributes`` / a list of
``key.value_set(v)`` updates, and the older plain dict (``{"Customer": "c-1"}``; a value that is
a list of strings is a keyword list, a single ``int`` / ``float`` / ``bool`` / ``datetime``, or
a one-element list of one, gets that type).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, Iterator, Mapping, Sequence, TypeVar, overload

from .exceptions import InvalidArgumentError

__all__ = [
    "SearchAttributeIndexedValueType",
    "SearchAttributeKey",
    "SearchAttributePair",
    "SearchAttributeUpdate",
    "TypedSearchAttributes",
    "SearchAttributeValue",
    "encode",
    "decode",
    "decode_all",
    "typed",
    "to_stored",
    "apply_upsert",
]

T = TypeVar("T")

#: A typed search attribute's value.
SearchAttributeValue = str | int | float | bool | datetime | Sequence[str]


class SearchAttributeIndexedValueType(enum.Enum):
    """The type of a search attribute (the value is the name stored in the history)."""

    TEXT = "Text"
    KEYWORD = "Keyword"
    INT = "Int"
    DOUBLE = "Double"
    BOOL = "Bool"
    DATETIME = "Datetime"
    KEYWORD_LIST = "KeywordList"


_PY_TYPES: dict[SearchAttributeIndexedValueType, tuple[type, ...]] = {
    SearchAttributeIndexedValueType.TEXT: (str,),
    SearchAttributeIndexedValueType.KEYWORD: (str,),
    SearchAttributeIndexedValueType.INT: (int,),
    SearchAttributeIndexedValueType.DOUBLE: (float, int),
    SearchAttributeIndexedValueType.BOOL: (bool,),
    SearchAttributeIndexedValueType.DATETIME: (datetime,),
    SearchAttributeIndexedValueType.KEYWORD_LIST: (list, tuple),
}


@dataclass(frozen=True)
class SearchAttributeKey(Generic[T]):
    """A search attribute's name and type (``SearchAttributeKey.for_int("Priority")``)."""

    name: str
    indexed_value_type: SearchAttributeIndexedValueType

    @staticmethod
    def for_text(name: str) -> "SearchAttributeKey[str]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.TEXT)

    @staticmethod
    def for_keyword(name: str) -> "SearchAttributeKey[str]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.KEYWORD)

    @staticmethod
    def for_int(name: str) -> "SearchAttributeKey[int]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.INT)

    @staticmethod
    def for_float(name: str) -> "SearchAttributeKey[float]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.DOUBLE)

    @staticmethod
    def for_bool(name: str) -> "SearchAttributeKey[bool]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.BOOL)

    @staticmethod
    def for_datetime(name: str) -> "SearchAttributeKey[datetime]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.DATETIME)

    @staticmethod
    def for_keyword_list(name: str) -> "SearchAttributeKey[Sequence[str]]":
        return SearchAttributeKey(name, SearchAttributeIndexedValueType.KEYWORD_LIST)

    @property
    def value_type(self) -> type:
        """The Python type of the key's values."""
        return {SearchAttributeIndexedValueType.DOUBLE: float,
                SearchAttributeIndexedValueType.KEYWORD_LIST: list}.get(
            self.indexed_value_type, _PY_TYPES[self.indexed_value_type][0])

    def value_set(self, value: T) -> "SearchAttributeUpdate[T]":
        """An update that sets this attribute (``workflow.upsert_search_attributes([...])``)."""
        encode(self.indexed_value_type, value, self.name)  # refuse a wrong value now
        return SearchAttributeUpdate(self, value)

    def value_unset(self) -> "SearchAttributeUpdate[T]":
        """An update that removes this attribute."""
        return SearchAttributeUpdate(self, None)


@dataclass(frozen=True)
class SearchAttributePair(Generic[T]):
    """A key and its value (an element of :class:`TypedSearchAttributes`)."""

    key: SearchAttributeKey[T]
    value: T


@dataclass(frozen=True)
class SearchAttributeUpdate(Generic[T]):
    """Set (``value``) or unset (``value is None``) one attribute."""

    key: SearchAttributeKey[T]
    value: T | None


class TypedSearchAttributes(Sequence[SearchAttributePair[Any]]):
    """An immutable collection of typed search attributes, one per name."""

    empty: "TypedSearchAttributes"

    def __init__(self, search_attributes: Sequence[SearchAttributePair[Any]] = ()) -> None:
        names: set[str] = set()
        for pair in search_attributes:
            if not isinstance(pair, SearchAttributePair):
                raise TypeError(f"TypedSearchAttributes takes SearchAttributePair(key, value) items, not "
                                f"{type(pair).__name__}")
            if pair.key.name in names:
                raise InvalidArgumentError(f"search attribute {pair.key.name!r} is given twice")
            names.add(pair.key.name)
            encode(pair.key.indexed_value_type, pair.value, pair.key.name)
        self.search_attributes: tuple[SearchAttributePair[Any], ...] = tuple(search_attributes)

    def __len__(self) -> int:
        return len(self.search_attributes)

    @overload
    def __getitem__(self, index: int) -> SearchAttributePair[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[SearchAttributePair[Any]]: ...
    @overload
    def __getitem__(self, index: SearchAttributeKey[T]) -> T: ...
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, SearchAttributeKey):
            for pair in self.search_attributes:
                if pair.key == index:
                    return pair.value
            raise KeyError(index)
        return self.search_attributes[index]

    def __iter__(self) -> Iterator[SearchAttributePair[Any]]:
        return iter(self.search_attributes)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, SearchAttributeKey):
            return any(p.key == key for p in self.search_attributes)
        return key in self.search_attributes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TypedSearchAttributes) and set(self.search_attributes) == set(other.search_attributes)

    def __hash__(self) -> int:  # pragma: no cover - a value type
        return hash(frozenset(self.search_attributes))

    def __repr__(self) -> str:
        return f"TypedSearchAttributes({list(self.search_attributes)!r})"

    def get(self, key: SearchAttributeKey[T], default: Any = None) -> Any:
        """The value of ``key`` (same name and type), or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def updated(self, *search_attributes: SearchAttributePair[Any]) -> "TypedSearchAttributes":
        """A copy with these pairs set (replacing any attribute of the same name)."""
        names = {p.key.name for p in search_attributes}
        return TypedSearchAttributes([p for p in self.search_attributes if p.key.name not in names]
                                     + list(search_attributes))


TypedSearchAttributes.empty = TypedSearchAttributes()


# ------------------------------------------------------------------ the stored form


def encode(kind: SearchAttributeIndexedValueType, value: Any, name: str) -> str:
    """The stored text of ``value`` as a ``kind`` attribute; ``InvalidArgumentError`` when it is
    not one."""
    ok = _PY_TYPES[kind]
    bad = not isinstance(value, ok) or (isinstance(value, bool) and kind is not SearchAttributeIndexedValueType.BOOL)
    if bad:
        raise InvalidArgumentError(
            f"search attribute {name!r} is a {kind.value} attribute: its value must be "
            f"{' or '.join(t.__name__ for t in ok)}, got {type(value).__name__} ({value!r:.60})")
    if kind in (SearchAttributeIndexedValueType.TEXT, SearchAttributeIndexedValueType.KEYWORD):
        return str(value)
    if kind is SearchAttributeIndexedValueType.INT:
        return str(int(value))
    if kind is SearchAttributeIndexedValueType.DOUBLE:
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            raise InvalidArgumentError(f"search attribute {name!r}: {f} is not a number a list filter can compare")
        return repr(f)
    if kind is SearchAttributeIndexedValueType.BOOL:
        return "true" if value else "false"
    if kind is SearchAttributeIndexedValueType.DATETIME:
        t = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(f"search attribute {name!r} is a keyword list: its values must be str, got {value!r:.60}")
    return json.dumps(list(value), ensure_ascii=False)


def decode(kind: str | None, text: str) -> Any:
    """The value of a stored attribute (``kind`` is its recorded type name; None or unknown: text)."""
    try:
        if kind == "Int":
            return int(text)
        if kind == "Double":
            return float(text)
        if kind == "Bool":
            return text == "true"
        if kind == "Datetime":
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        if kind == "KeywordList":
            out = json.loads(text)
            return list(out) if isinstance(out, list) else [str(out)]
    except (ValueError, TypeError):
        return text  # a foreign or damaged value: shown as it is stored
    return text


def decode_all(attrs: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
    """Every stored attribute's value (text where no type is recorded)."""
    return {k: decode(types.get(k), v) for k, v in attrs.items()}


def typed(attrs: Mapping[str, str], types: Mapping[str, str]) -> TypedSearchAttributes:
    """The stored attributes as :class:`TypedSearchAttributes` (untyped ones as text keys)."""
    pairs: list[SearchAttributePair[Any]] = []
    for k, v in attrs.items():
        try:
            kind = SearchAttributeIndexedValueType(types.get(k, "Text"))
        except ValueError:
            kind = SearchAttributeIndexedValueType.TEXT
        value = decode(kind.value, v)
        if kind is not SearchAttributeIndexedValueType.TEXT and isinstance(value, str) and \
                kind not in (SearchAttributeIndexedValueType.KEYWORD,):
            kind, value = SearchAttributeIndexedValueType.TEXT, v  # undecodable: keep its text
        pairs.append(SearchAttributePair(SearchAttributeKey(k, kind), value))
    return TypedSearchAttributes(pairs)


def _infer(name: str, value: Any) -> tuple[str, str | None]:
    """``(text, type name)`` of a value given in the plain dict form (see the module docs)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return encode(SearchAttributeIndexedValueType.KEYWORD_LIST, value, name), "KeywordList"
        if len(value) == 1:
            value = value[0]
        else:
            raise InvalidArgumentError(
                f"search attribute {name!r} = {value!r:.60}: a list value must hold str only (a keyword list) "
                f"or one int, float, bool or datetime")
    for kind in (SearchAttributeIndexedValueType.BOOL, SearchAttributeIndexedValueType.INT,
                 SearchAttributeIndexedValueType.DOUBLE, SearchAttributeIndexedValueType.DATETIME):
        if isinstance(value, _PY_TYPES[kind][0]):
            return encode(kind, value, name), kind.value
    raise InvalidArgumentError(
        f"search attribute {name!r} = {value!r:.60} ({type(value).__name__}): a value is a str, int, float, bool, "
        f"datetime or a list of str (see aion.common.SearchAttributeKey for typed keys)")


def to_stored(attributes: Any, where: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``(text values, type names, names to unset)`` of the attributes a start or an upsert
    gives: a :class:`TypedSearchAttributes`, a sequence of pairs or updates, or a plain dict.
    Raises :class:`InvalidArgumentError` naming the attribute for a value that fits no type."""
    values: dict[str, str] = {}
    types: dict[str, str] = {}
    unset: list[str] = []
    if attributes is None:
        return values, types, unset
    if isinstance(attributes, Mapping):
        for k, v in attributes.items():
            if not isinstance(k, str):
                raise InvalidArgumentError(f"{where}: search attribute names are str, got {k!r}")
            text, kind = _infer(k, v)
            values[k] = text
            if kind is not None:
                types[k] = kind
        return values, types, unset
    if isinstance(attributes, (str, bytes)) or not isinstance(attributes, (Sequence, TypedSearchAttributes)):
        raise InvalidArgumentError(
            f"{where} takes TypedSearchAttributes, a list of key.value_set(...) updates or a dict, not "
            f"{type(attributes).__name__}")
    for item in attributes:
        if isinstance(item, (SearchAttributePair, SearchAttributeUpdate)):
            key = item.key
            if item.value is None:
                if isinstance(item, SearchAttributePair):
                    raise InvalidArgumentError(f"{where}: search attribute {key.name!r} has no value")
                unset.append(key.name)
                values.pop(key.name, None)
                types.pop(key.name, None)
                continue
            values[key.name] = encode(key.indexed_value_type, item.value, key.name)
            types[key.name] = key.indexed_value_type.value
            if key.name in unset:
                unset.remove(key.name)
        else:
            raise InvalidArgumentError(
                f"{where}: {item!r:.60} is not a search attribute update (use SearchAttributeKey.for_...(name)"
                f".value_set(value))")
    return values, types, unset


def apply_upsert(values: dict[str, str], types: dict[str, str], new_values: Mapping[str, str],
                 new_types: Mapping[str, str], unset: Sequence[str]) -> None:
    """Apply one ``SearchAttributesUpserted`` to a run's stored attributes (in place): a value
    given without a type becomes text; an unset name goes."""
    for k, v in new_values.items():
        values[k] = v
        if k in new_types:
            types[k] = new_types[k]
        else:
            types.pop(k, None)
    for k in unset:
        values.pop(k, None)
        types.pop(k, None)
