"""``@workflow.defn`` / ``run`` / ``signal`` / ``query`` / ``update``: declaring a workflow type.

The decorators only attach metadata; nothing runs at import time. ``@workflow.defn`` collects
the class's run method and handlers into a :class:`WorkflowDefinition` stored on the class
(``WorkflowDefinition.of(cls)``), which the runtime's ``Registry`` reads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, ParamSpec, Protocol, Sequence, TypeVar, overload

from ..exceptions import FailureError
from ._types import FailurePolicy

__all__ = ["defn", "init", "run", "signal", "query", "update", "UpdateMethod", "WorkflowDefinition",
           "HandlerDefinition"]

_ATTR = "__aion_workflow_definition__"
_RUN = "__aion_workflow_run__"
_SIGNAL = "__aion_signal_name__"
_QUERY = "__aion_query_name__"
_UPDATE = "__aion_update_name__"
_VALIDATOR = "__aion_update_validator__"
_INIT = "__aion_workflow_init__"
#: Set on the run function by @defn: the workflow type name (so Child.run names the type).
RUN_TYPE_ATTR = "__aion_workflow_type__"

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class HandlerDefinition:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    #: An update's validator (``@my_update.validator``), run before the update is recorded.
    validator: Callable[..., Any] | None = None


@dataclass(frozen=True)
class WorkflowDefinition:
    """Everything the runtime needs to know about one workflow type."""

    name: str
    cls: type
    run_fn: Callable[..., Any]
    signals: dict[str, HandlerDefinition] = field(default_factory=dict)
    queries: dict[str, HandlerDefinition] = field(default_factory=dict)
    failure_policy: FailurePolicy | None = None
    #: ``__init__`` is marked ``@workflow.init``: it gets the run's arguments too.
    init_takes_args: bool = False
    updates: dict[str, HandlerDefinition] = field(default_factory=dict)

    @staticmethod
    def of(obj: Any) -> "WorkflowDefinition":
        """The definition of a ``@workflow.defn`` class (or of its run method)."""
        cls = obj
        if not isinstance(obj, type):
            cls = getattr(obj, "__aion_workflow_class__", None)
        d = getattr(cls, _ATTR, None) if cls is not None else None
        if not isinstance(d, WorkflowDefinition) or d.cls is not cls:
            raise TypeError(
                f"{obj!r} is not a workflow: decorate the class with @workflow.defn and its "
                f"entry method with @workflow.run"
            )
        return d

    @staticmethod
    def maybe_of(obj: Any) -> "WorkflowDefinition | None":
        try:
            return WorkflowDefinition.of(obj)
        except TypeError:
            return None


@overload
def defn(cls: C) -> C: ...
@overload
def defn(
    *,
    name: str | None = None,
    failure_policy: FailurePolicy | None = None,
    failure_exception_types: Sequence[type[BaseException]] | None = None,
    sandboxed: bool = True,
) -> Callable[[C], C]: ...


def defn(
    cls: Any = None,
    *,
    name: str | None = None,
    failure_policy: FailurePolicy | None = None,
    failure_exception_types: Sequence[type[BaseException]] | None = None,
    sandboxed: bool = True,
) -> Any:
    """Declare a workflow type (default name: the class name).

    ``failure_policy`` overrides the registry's default supervision for this type (see
    :class:`FailurePolicy`). ``failure_exception_types`` is Temporal's spelling of the same
    choice: these exception types (and ``aion.exceptions.FailureError``) fail the workflow, any
    other exception holds it for a fixed deploy. ``sandboxed`` is accepted for code ported from
    Temporal and ignored: there is no sandbox here.
    """
    del sandboxed  # no sandbox: accepted so that Temporal's @workflow.defn(sandboxed=False) ports
    if failure_exception_types is not None:
        if failure_policy is not None:
            raise TypeError("pass failure_policy or failure_exception_types to @workflow.defn, not both")
        failure_policy = _policy_failing_on(failure_exception_types)

    def wrap(c: type) -> type:
        if not isinstance(c, type):
            raise TypeError("@workflow.defn decorates a class")
        run_fn = None
        signals: dict[str, HandlerDefinition] = {}
        queries: dict[str, HandlerDefinition] = {}
        updates: dict[str, HandlerDefinition] = {}
        for klass in reversed(c.__mro__):
            for attr, member in vars(klass).items():
                fn = member
                if getattr(fn, _RUN, False):
                    run_fn = fn
                sname = getattr(fn, _SIGNAL, None)
                if sname is not None:
                    signals[sname] = HandlerDefinition(sname, fn, inspect.iscoroutinefunction(fn))
                qname = getattr(fn, _QUERY, None)
                if qname is not None:
                    if inspect.iscoroutinefunction(fn):
                        raise TypeError(
                            f"query {qname!r} of {c.__qualname__} must be a plain `def`: queries "
                            f"read state and cannot await"
                        )
                    queries[qname] = HandlerDefinition(qname, fn, False)
                uname = getattr(fn, _UPDATE, None)
                if uname is not None:
                    updates[uname] = HandlerDefinition(uname, fn, inspect.iscoroutinefunction(fn),
                                                       getattr(fn, _VALIDATOR, None))
        if run_fn is None:
            raise TypeError(
                f"workflow {c.__qualname__} has no @workflow.run method: mark its `async def run(...)`"
            )
        if not inspect.iscoroutinefunction(run_fn):
            raise TypeError(f"the @workflow.run method of {c.__qualname__} must be `async def`")
        init_takes_args = bool(getattr(c.__init__, _INIT, False))  # type: ignore[misc]  # the class's own
        if init_takes_args:
            _check_init_matches_run(c, run_fn)
        wf_name = name or c.__name__
        d = WorkflowDefinition(wf_name, c, run_fn, signals, queries, failure_policy, init_takes_args, updates)
        setattr(c, _ATTR, d)
        try:
            setattr(run_fn, RUN_TYPE_ATTR, wf_name)
            setattr(run_fn, "__aion_workflow_class__", c)
        except AttributeError:  # pragma: no cover
            pass
        return c

    if cls is not None:
        return wrap(cls)
    return wrap


def _policy_failing_on(types: Sequence[type[BaseException]]) -> FailurePolicy:
    if isinstance(types, type) or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise TypeError("failure_exception_types must be a list of exception classes")
    return FailurePolicy(workflow_failure_types=(FailureError, *types))


def _check_init_matches_run(c: type, run_fn: Callable[..., Any]) -> None:
    init_params = list(inspect.signature(c.__init__).parameters)  # type: ignore[misc]  # the class's own
    run_params = list(inspect.signature(run_fn).parameters)
    if init_params != run_params:
        raise TypeError(
            f"the @workflow.init __init__ of {c.__qualname__} takes {init_params[1:]} but its "
            f"@workflow.run method takes {run_params[1:]}: give both the same parameters"
        )


def init(fn: F) -> F:
    """Mark ``__init__`` to receive the workflow's arguments (the same as the run method's),
    so that state is set up before any signal handler runs.

    Without it the class is created with no arguments.
    """
    if getattr(fn, "__name__", None) != "__init__":
        raise TypeError(f"@workflow.init decorates the class's __init__, not {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError("@workflow.init must decorate a plain `def __init__`, not `async def`")
    setattr(fn, _INIT, True)
    return fn


def run(fn: F) -> F:
    """Mark the workflow's entry method (``async def run(self, ...)``)."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@workflow.run must decorate an `async def` method, not {fn!r}")
    setattr(fn, _RUN, True)
    return fn


@overload
def signal(fn: F) -> F: ...
@overload
def signal(*, name: str | None = None) -> Callable[[F], F]: ...


def signal(fn: Any = None, *, name: str | None = None) -> Any:
    """Mark a signal handler (``def`` or ``async def``); default name: the method name.

    Signals are delivered in the order they were recorded; a handler runs as part of the
    step that recorded its signal.
    """

    def wrap(f: Any) -> Any:
        setattr(f, _SIGNAL, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


@overload
def query(fn: F) -> F: ...
@overload
def query(*, name: str | None = None) -> Callable[[F], F]: ...


def query(fn: Any = None, *, name: str | None = None) -> Any:
    """Mark a query handler (plain ``def``, read-only); default name: the method name."""

    def wrap(f: Any) -> Any:
        setattr(f, _QUERY, name or f.__name__)
        return f

    return wrap(fn) if fn is not None else wrap


P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class UpdateMethod(Protocol, Generic[P, R_co]):
    """What ``@workflow.update`` makes of a method (for type checkers): the method, plus
    ``.validator`` to decorate its validator (same parameters, returns None)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def validator(self, vfn: Callable[P, None]) -> Callable[P, None]: ...


@overload
def update(fn: Callable[P, R_co]) -> UpdateMethod[P, R_co]: ...
@overload
def update(*, name: str | None = None) -> Callable[[Callable[P, R_co]], UpdateMethod[P, R_co]]: ...


def update(fn: Any = None, *, name: str | None = None) -> Any:
    """Mark an update handler (``def`` or ``async def``); default name: the method name.

    An update is a signal that answers: the client's ``handle.execute_update(Order.add, item)``
    returns what the handler returns (or raises ``WorkflowUpdateFailedError`` with what it
    raised). An ``async`` handler may await activities, timers and conditions. The handler runs
    in the step that records the update (``WorkflowUpdateAccepted``); what it returns or raises
    is recorded as ``WorkflowUpdateCompleted``. An exception the workflow's failure policy treats
    as a failure (``ApplicationError`` and the other ``FailureError`` types by default) fails the
    update, not the workflow; any other exception holds the workflow task, as in ``run``.

    Add a validator with ``@my_update.validator`` on a plain ``def`` taking the same arguments:
    it runs before anything is recorded, must not change state, and rejects the update by
    raising (nothing is recorded; the sender gets ``WorkflowUpdateFailedError``).
    """

    def wrap(f: Any) -> Any:
        if getattr(f, _SIGNAL, None) is not None or getattr(f, _QUERY, None) is not None:
            raise TypeError(f"{f.__qualname__} is already a signal or query handler: it cannot be an update too")
        setattr(f, _UPDATE, name or f.__name__)

        def validator(vfn: Any) -> Any:
            if inspect.iscoroutinefunction(vfn):
                raise TypeError(f"the validator {vfn.__qualname__} of update {name or f.__name__!r} must be a "
                                f"plain `def`: validators run before anything is recorded and cannot await")
            setattr(f, _VALIDATOR, vfn)
            return vfn

        f.validator = validator
        return f

    return wrap(fn) if fn is not None else wrap
