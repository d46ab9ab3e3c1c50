"""Turn what users pass (``Order.run``, ``Order``, ``Order.decide``, ``"decide"``) into wire names
and, when known, the type hints that decode the answers."""

from __future__ import annotations

from typing import Any

from ..converter import return_hint_of
from ..workflow._definition import WorkflowDefinition


class NotAWorkflowError(TypeError):
    """What was passed as a workflow is neither a type name nor a ``@workflow.defn`` class/run method."""


def workflow_name(workflow: Any) -> tuple[str, Any]:
    """``(type name, return type hint or None)`` of a workflow given by name, class or run method."""
    if isinstance(workflow, str):
        if not workflow:
            raise NotAWorkflowError("the workflow type name is empty")
        return workflow, None
    d = WorkflowDefinition.maybe_of(workflow)
    if d is None:
        raise NotAWorkflowError(
            f"{workflow!r} is not a workflow: pass the @workflow.defn class, its @workflow.run "
            f"method (Order.run) or the workflow type name as a string"
        )
    try:
        hint = return_hint_of(d.run_fn)
    except Exception:
        hint = None
    return d.name, hint


def handler_name(handler: Any, kind: str) -> tuple[str, Any]:
    """``(name, return hint)`` of a signal (``kind='signal'``) or query handler."""
    if isinstance(handler, str):
        if not handler:
            raise ValueError(f"the {kind} name is empty")
        return handler, None
    name = getattr(handler, f"__aion_{kind}_name__", None)
    if not name:
        raise TypeError(
            f"{handler!r} is not a {kind} handler: pass a method decorated with "
            f"@workflow.{kind} (Order.{getattr(handler, '__name__', kind)}) or the {kind} name"
        )
    hint = None
    if kind == "query":
        try:
            hint = return_hint_of(handler)
        except Exception:
            hint = None
    return name, hint
