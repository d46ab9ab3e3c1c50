"""The worker's table of runnable activities: type name -> function, sync or async, arg types."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..activity._definition import ActivityDefinition
from ..exceptions import AionError
from ..model import Payload


class ActivityRegistrationError(AionError, ValueError):
    """The activities given to a worker are not usable (duplicate names, not callable)."""


@dataclass(frozen=True)
class RegisteredActivity:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    #: Parameter type hints, in order (``None`` where there is none); ``*args`` repeats the last.
    arg_types: tuple[Any, ...]
    var_args: bool = False


def _definition_of(obj: Any) -> Any:
    """The ``@activity.defn`` definition of ``obj`` (or ``obj`` itself when it is one)."""
    if isinstance(obj, ActivityDefinition):
        return obj
    return ActivityDefinition.maybe_of(obj)


def resolve(obj: Any) -> RegisteredActivity:
    """Accept an ``@activity.defn`` function or bound method (or its definition object, or a
    plain callable)."""
    defn = _definition_of(obj)
    name: str | None = None
    fn: Any = obj
    if defn is not None:
        name = getattr(defn, "name", None)
        fn = defn.fn
    if not callable(fn):
        raise ActivityRegistrationError(f"{obj!r} is not an activity: expected an @activity.defn function")
    if isinstance(defn, ActivityDefinition) and defn.needs_instance():
        raise ActivityRegistrationError(
            f"activity {defn.name!r} is a method taken from its class ({fn.__qualname__}): every "
            f"attempt would miss `self`. Register the method of an instance: activities=[obj.{fn.__name__}]"
        )
    if not name:
        name = getattr(fn, "__name__", None)
    if not name:
        raise ActivityRegistrationError(f"{obj!r} has no name: decorate it with @activity.defn(name=...)")
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)
    )
    arg_types, var_args = _arg_types(target)
    return RegisteredActivity(name=name, fn=fn, is_async=is_async, arg_types=arg_types, var_args=var_args)


def _arg_types(fn: Callable[..., Any]) -> tuple[tuple[Any, ...], bool]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (), True
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: decode without hints
        hints = {}
    types: list[Any] = []
    var = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            types.append(hints.get(p.name))
        elif p.kind is p.VAR_POSITIONAL:
            types.append(hints.get(p.name))
            var = True
            break
    return tuple(types), var


def registry_of(activities: Sequence[Any]) -> dict[str, RegisteredActivity]:
    out: dict[str, RegisteredActivity] = {}
    for a in activities:
        r = resolve(a)
        # != rather than `is not`: each `obj.method` access makes a new (equal) bound method.
        if r.name in out and out[r.name].fn != r.fn:
            raise ActivityRegistrationError(
                f"two different activities are named {r.name!r}: give one another name with "
                f"@activity.defn(name=...)"
            )
        out[r.name] = r
    return out


def hint_for(act: RegisteredActivity, index: int) -> Any:
    if index < len(act.arg_types):
        return act.arg_types[index]
    if act.var_args and act.arg_types:
        return act.arg_types[-1]
    return None


def decode_args(converter: Any, payloads: Sequence[Payload], arg_types: Sequence[Any]) -> list[Any]:
    """Decode an activity's input payloads, each with the type hint of its parameter."""
    out = []
    for i, p in enumerate(payloads):
        hint = arg_types[i] if i < len(arg_types) else None
        out.append(converter.from_payload(p, hint))
    return out
