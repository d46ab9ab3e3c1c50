"""The JSON converter's coercion of decoded values to type hints (``converter._from_jsonable``):
a plain class as hint goes straight to the class's coercion, without typing's look-ups — which
answer nothing for it — and the results are the ones the typing path gives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import typing
import uuid
from typing import Any, Generic, Optional, TypeVar

from aion.converter import _from_jsonable, default_converter

T = TypeVar("T")


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


class Box(Generic[T]):
    pass


class Color(enum.Enum):
    RED = "red"


def test_a_plain_class_has_no_typing_origin() -> None:
    """What the shortcut rests on: get_origin/get_args of a plain class are None and ()."""
    for hint in (int, float, str, bool, list, tuple, dict, bytes, bytearray, dt.datetime, dt.date, dt.time,
                 dt.timedelta, uuid.UUID, decimal.Decimal, Point, Box, object, Exception, set, frozenset):
        assert type(hint) is type
        assert typing.get_origin(hint) is None and typing.get_args(hint) == (), hint


def test_values_are_coerced_to_their_hints() -> None:
    when = dt.datetime(2026, 12, 4, 19, 30, tzinfo=dt.timezone.utc)
    u = uuid.UUID(int=19)
    cases: list[tuple[Any, Any, Any]] = [
        (3.0, int, 3), (3.5, int, 3.5), (True, int, True), ("3", int, "3"), (3, float, 3.0), (True, float, True),
        ("a", str, "a"), (1, str, 1), (1, bool, 1), ([1, 2], list, [1, 2]), ([1, 2], tuple, (1, 2)),
        ({"a": 1}, dict, {"a": 1}), ("AQI=", bytes, b"\x01\x02"), (when.isoformat(), dt.datetime, when),
        ("2026-12-04", dt.date, dt.date(2026, 12, 4)), ("19:30:00", dt.time, dt.time(19, 30)),
        (1.5, dt.timedelta, dt.timedelta(seconds=1.5)), (str(u), uuid.UUID, u), ("1.10", decimal.Decimal,
                                                                                decimal.Decimal("1.10")),
        ({"x": 1.0, "y": 2, "z": 3}, Point, Point(1, 2.0)), ([1], Box, [1]), ("red", Color, Color.RED),
        (None, int, None), ([3.0, "x"], list[int], [3, "x"]), (None, Optional[Point], None),
        ({"x": 2}, Optional[Point], Point(2)), ({"1": 2.0}, dict[int, int], {1: 2}), (7, Any, 7),
    ]
    for value, hint, expected in cases:
        got = _from_jsonable(value, hint)
        assert got == expected and type(got) is type(expected), (value, hint, got)


def test_payloads_round_trip_with_their_hints() -> None:
    conv = default_converter()
    for value, hint in ((12345, int), (2.5, float), ("ü", str), (Point(1, 2.5), Point), ([Point(3)], list[Point])):
        assert conv.from_payload(conv.to_payload(value), hint) == value
    assert conv.to_payload({"b": [1, None, "é"]}).data == '{"b":[1,null,"é"]}'.encode()
