"""Payload conversion: Python values <-> :class:`~aion.model.Payload`.

The default :class:`DataConverter` writes JSON (``content_type="application/json"``) for
``None``, primitives, lists/tuples/sets, dicts, dataclasses, enums, ``datetime``/``date``/
``timedelta``/``UUID``/``Decimal`` and pydantic models (when pydantic is installed), and raw
``bytes`` as ``"application/octet-stream"``.

Decoding is driven by the type hints of the receiving function: a workflow's ``run``
parameters, a signal handler's parameters, an activity's return annotation, and so on. With a
hint, JSON objects become dataclasses / pydantic models, lists become ``list[T]``/``tuple``,
strings become ``datetime``/``UUID``/enums, recursively; without one, plain JSON values come back.

Pluggable: subclass :class:`DataConverter` (or implement the same four methods) and either
pass it to ``Registry(data_converter=...)`` / the client, or make it the process default with
:func:`set_default_converter`.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as _dt
import decimal
import enum
import functools
import inspect
import json
import types
import typing
import uuid
from typing import Any, Callable, Sequence

from .exceptions import AionError
from .model import Payload

__all__ = [
    "DataConverter",
    "PayloadConversionError",
    "default_converter",
    "set_default_converter",
    "JSON",
    "BINARY",
    "hints_of",
    "return_hint_of",
]

JSON = "application/json"
BINARY = "application/octet-stream"


class PayloadConversionError(AionError, ValueError):
    """A value could not be encoded, or a payload could not be decoded to the expected type."""


try:  # optional
    import pydantic as _pydantic

    _BaseModel: type | None = _pydantic.BaseModel
except Exception:  # pragma: no cover - pydantic is optional
    _BaseModel = None


def _to_jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, enum.Enum):
        return _to_jsonable(v.value)
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else str(_to_jsonable(k))): _to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        items = sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v
        return [_to_jsonable(x) for x in items]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _to_jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if _BaseModel is not None and isinstance(v, _BaseModel):
        return v.model_dump(mode="json")  # type: ignore[attr-defined]
    if isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, _dt.time):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    raise PayloadConversionError(
        f"cannot encode a value of type {type(v).__qualname__} as JSON: use primitives, "
        f"dicts, lists, dataclasses or pydantic models, or configure a custom DataConverter"
    )


def _from_jsonable(v: Any, hint: Any) -> Any:
    """Coerce a decoded JSON value to ``hint`` (best effort, recursive)."""
    if hint is None or hint is Any or hint is inspect.Parameter.empty or hint is object:
        return v
    if isinstance(hint, str):  # unresolved forward reference
        return v
    if isinstance(hint, typing.TypeVar):
        return v
    if type(hint) is type and hint is not typing.Generic:
        # A plain class (int, str, a dataclass...): no typing origin, so straight to the
        # class's coercion below (get_origin and get_args answer None and () for it).
        return _from_class(v, hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _from_jsonable(v, args[0])
    if origin is typing.Union or (types.UnionType is not None and origin is types.UnionType):
        if v is None and type(None) in args:
            return None
        errors: list[Exception] = []
        non_none = [a for a in args if a is not type(None)]
        # An exact primitive match first, so `int | str` keeps "1" a string.
        for a in non_none:
            if a in (str, int, float, bool) and type(v) is a:
                return v
        for a in non_none:
            try:
                return _from_jsonable(v, a)
            except Exception as e:  # try the next member
                errors.append(e)
        if errors:
            raise errors[0]
        return v
    if origin is typing.Literal:
        return v
    if origin in (list, typing.List, Sequence, typing.Sequence, set, frozenset, collections_abc_seq()):
        if not isinstance(v, list):
            raise PayloadConversionError(f"expected a JSON array for {hint!r}, got {type(v).__name__}")
        inner = args[0] if args else Any
        items = [_from_jsonable(x, inner) for x in v]
        if origin in (set, frozenset):
            return origin(items)
        return items
    if origin is tuple:
        if not isinstance(v, list):
            raise PayloadConversionError(f"expected a JSON array for {hint!r}, got {type(v).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(x, args[0]) for x in v)
        if args:
            return tuple(_from_jsonable(x, a) for x, a in zip(v, args))
        return tuple(v)
    if origin in (dict, typing.Dict, typing.Mapping) or origin is _abc_mapping():
        if not isinstance(v, dict):
            raise PayloadConversionError(f"expected a JSON object for {hint!r}, got {type(v).__name__}")
        kt, vt = (args + (Any, Any))[:2] if args else (Any, Any)
        return {_coerce_key(k, kt): _from_jsonable(x, vt) for k, x in v.items()}
    if origin is not None:
        return v
    if not isinstance(hint, type):
        return v
    return _from_class(v, hint)


def _from_class(v: Any, hint: type) -> Any:
    """:func:`_from_jsonable` for a ``hint`` that is a class (no typing origin)."""
    if hint is bool or hint is str:
        return v
    if hint is int:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() else v
    if hint is float:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    if hint is list:
        return list(v) if isinstance(v, list) else v
    if hint is tuple:
        return tuple(v) if isinstance(v, list) else v
    if hint is dict:
        return v
    if issubclass(hint, enum.Enum):
        return hint(v)
    if hint is _dt.datetime:
        return _dt.datetime.fromisoformat(v) if isinstance(v, str) else v
    if hint is _dt.date:
        return _dt.date.fromisoformat(v) if isinstance(v, str) else v
    if hint is _dt.time:
        return _dt.time.fromisoformat(v) if isinstance(v, str) else v
    if hint is _dt.timedelta:
        return _dt.timedelta(seconds=v) if isinstance(v, (int, float)) else v
    if hint is uuid.UUID:
        return uuid.UUID(v) if isinstance(v, str) else v
    if hint is decimal.Decimal:
        return decimal.Decimal(v) if isinstance(v, (str, int, float)) else v
    if hint in (bytes, bytearray):
        return base64.b64decode(v) if isinstance(v, str) else v
    if _BaseModel is not None and issubclass(hint, _BaseModel):
        return hint.model_validate(v)  # type: ignore[attr-defined]
    if dataclasses.is_dataclass(hint):
        if not isinstance(v, dict):
            if isinstance(v, hint):
                return v
            raise PayloadConversionError(
                f"expected a JSON object for dataclass {hint.__qualname__}, got {type(v).__name__}"
            )
        try:
            field_hints = typing.get_type_hints(hint)
        except Exception:
            field_hints = {}
        kwargs = {}
        names = {f.name: f for f in dataclasses.fields(hint)}
        for k, x in v.items():
            if k in names and names[k].init:
                kwargs[k] = _from_jsonable(x, field_hints.get(k, Any))
        return hint(**kwargs)
    return v


def collections_abc_seq() -> Any:
    return collections.abc.Sequence


def _abc_mapping() -> Any:
    return collections.abc.Mapping


def _coerce_key(k: str, kt: Any) -> Any:
    if kt in (Any, str) or kt is None:
        return k
    try:
        if kt is int:
            return int(k)
        if kt is float:
            return float(k)
        if isinstance(kt, type) and issubclass(kt, enum.Enum):
            return kt(k)
    except (ValueError, TypeError):
        return k
    return k


#: ``json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)`` without
#: building an encoder per payload (``dumps`` builds this very one for those arguments).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class DataConverter:
    """JSON payload converter (see the module docs). Subclass to change the encoding."""

    def to_payload(self, value: Any) -> Payload:
        """Encode one value."""
        if isinstance(value, (bytes, bytearray)):
            return Payload(BINARY, bytes(value))
        try:
            data = _JSON.encode(_to_jsonable(value))
        except ValueError as e:
            if isinstance(e, PayloadConversionError):
                raise
            raise PayloadConversionError(f"cannot encode value as JSON: {e}") from e
        return Payload(JSON, data.encode("utf-8"))

    def from_payload(self, payload: Payload, hint: Any = None) -> Any:
        """Decode one payload, coerced to ``hint`` when given."""
        if payload.content_type == BINARY:
            return payload.data
        if payload.content_type != JSON:
            raise PayloadConversionError(
                f"cannot decode a payload of content type {payload.content_type!r} with the "
                f"JSON converter: configure the DataConverter that wrote it"
            )
        try:
            value = json.loads(payload.data.decode("utf-8")) if payload.data else None
        except (ValueError, UnicodeDecodeError) as e:
            raise PayloadConversionError(f"payload is not valid JSON: {e}") from e
        try:
            return _from_jsonable(value, hint)
        except PayloadConversionError:
            raise
        except Exception as e:
            raise PayloadConversionError(f"cannot decode payload as {hint!r}: {e}") from e

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        """Encode positional arguments."""
        return [self.to_payload(v) for v in values]

    def from_payloads(self, payloads: Sequence[Payload], hints: Sequence[Any] | None = None) -> list[Any]:
        """Decode positional arguments; ``hints[i]`` (if any) types ``payloads[i]``."""
        hints = list(hints or [])
        out = []
        for i, p in enumerate(payloads):
            out.append(self.from_payload(p, hints[i] if i < len(hints) else None))
        return out


_default: DataConverter | None = None


def default_converter() -> DataConverter:
    """The process-wide default converter: an :class:`~aion.encryption.EncryptingConverter` when
    ``AION_PAYLOAD_KEYS`` is set (``aion/encryption.py``), else the JSON converter."""
    global _default
    if _default is None:
        import os

        if os.environ.get("AION_PAYLOAD_KEYS", "").strip():
            from .encryption import EncryptingConverter

            _default = EncryptingConverter.from_env()
        else:
            _default = DataConverter()
    return _default


def set_default_converter(converter: DataConverter) -> None:
    """Replace the process-wide default converter (used when none is passed explicitly)."""
    global _default
    _default = converter


# ---------------------------------------------------------------------------- type hints


def _resolved_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=False)
    except Exception:
        return dict(getattr(fn, "__annotations__", {}) or {})


def hints_of(fn: Callable[..., Any], *, skip_self: bool = False) -> list[Any]:
    """The positional parameter type hints of ``fn`` (``None`` where unannotated).

    A trailing ``*args`` parameter's hint repeats for the remaining arguments. Cached per
    function (hints are resolved once, not on every decode).
    """
    try:
        return _hints_cached(fn, skip_self)
    except TypeError:  # unhashable callable
        return _hints_of(fn, skip_self)


@functools.lru_cache(maxsize=4096)
def _hints_cached(fn: Callable[..., Any], skip_self: bool) -> list[Any]:
    return _hints_of(fn, skip_self)


def _hints_of(fn: Callable[..., Any], skip_self: bool) -> list[Any]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    hints = _resolved_hints(fn)
    out: list[Any] = []
    params = list(sig.parameters.values())
    if skip_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            out.append(hints.get(p.name))
        elif p.kind == p.VAR_POSITIONAL:
            out.extend([hints.get(p.name)] * 64)
            break
    return out


def return_hint_of(fn: Callable[..., Any]) -> Any:
    """The return annotation of ``fn`` (``None`` when absent); cached per function."""
    try:
        return _return_cached(fn)
    except TypeError:  # unhashable callable
        return _resolved_hints(fn).get("return")


@functools.lru_cache(maxsize=4096)
def _return_cached(fn: Callable[..., Any]) -> Any:
    return _resolved_hints(fn).get("return")
