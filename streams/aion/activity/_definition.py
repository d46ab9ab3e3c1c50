"""``@activity.defn``: mark a function (sync or async) as an activity type."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, overload

__all__ = ["defn", "ActivityDefinition"]

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__aion_activity_definition__"


@dataclass(frozen=True)
class ActivityDefinition:
    """An activity type: its name, the function and whether it is ``async``."""

    name: str
    fn: Callable[..., Any]
    is_async: bool

    @staticmethod
    def of(fn: Any) -> "ActivityDefinition":
        d = getattr(fn, _ATTR, None)
        if not isinstance(d, ActivityDefinition):
            raise TypeError(f"{fn!r} is not an activity: decorate it with @activity.defn")
        return d

    @staticmethod
    def maybe_of(fn: Any) -> "ActivityDefinition | None":
        d = getattr(fn, _ATTR, None)
        return d if isinstance(d, ActivityDefinition) else None


@overload
def defn(fn: F) -> F: ...
@overload
def defn(*, name: str | None = None) -> Callable[[F], F]: ...


def defn(fn: Any = None, *, name: str | None = None) -> Any:
    """Declare an activity (default name: the function's ``__name__``).

    The function itself is returned unchanged (callable directly in unit tests), with its
    :class:`ActivityDefinition` attached; workflows may name it by function or by string.
    """

    def wrap(f: Any) -> Any:
        if not callable(f):
            raise TypeError("@activity.defn decorates a function")
        act_name = name or getattr(f, "__name__", None)
        if not act_name:
            raise TypeError(f"cannot infer an activity name for {f!r}: pass @activity.defn(name=...)")
        is_async = inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(getattr(f, "__call__", None))
        setattr(f, _ATTR, ActivityDefinition(act_name, f, is_async))
        setattr(f, "__aion_activity_name__", act_name)
        return f

    return wrap(fn) if fn is not None else wrap
