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
        d = ActivityDefinition.maybe_of(fn)
        if d is None:
            raise TypeError(f"{fn!r} is not an activity: decorate it with @activity.defn")
        return d

    @staticmethod
    def maybe_of(fn: Any) -> "ActivityDefinition | None":
        """The definition of an ``@activity.defn`` function — or of a bound method of one,
        with the bound method as ``fn`` (the decorator saw the plain function; calling that
        would miss ``self``)."""
        d = getattr(fn, _ATTR, None)
        if not isinstance(d, ActivityDefinition):
            return None
        if inspect.ismethod(fn) and d.fn is fn.__func__:
            return ActivityDefinition(d.name, fn, d.is_async)
        return d

    def needs_instance(self) -> bool:
        """Whether ``fn`` is a method taken from its class (first parameter ``self``): it can
        be named in workflows, but a worker must be given the bound method ``obj.method``."""
        if inspect.ismethod(self.fn):
            return False
        try:
            params = list(inspect.signature(self.fn).parameters)
        except (TypeError, ValueError):
            return False
        return bool(params) and params[0] == "self"


@overload
def defn(fn: F) -> F: ...
@overload
def defn(*, name: str | None = None) -> Callable[[F], F]: ...


def defn(fn: Any = None, *, name: str | None = None) -> Any:
    """Declare an activity (default name: the function's ``__name__``).

    The function itself is returned unchanged (callable directly in unit tests), with its
    :class:`ActivityDefinition` attached; workflows may name it by function or by string.
    Methods may be activities too: decorate the method, register the bound method
    (``activities=[db.fetch]``) and name it in workflows as ``Db.fetch``
    (``workflow.execute_activity_method``) — the object holds clients, pools, settings.
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
