"""Turn what users pass (``Order.run``, ``Order``, ``Order.decide``, ``"decide"``) into wire names
and, when known, the type hints that decode the answers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Mapping, Sequence

from ..converter import return_hint_of
from .._search_attributes import to_stored
from ..exceptions import InvalidArgumentError
from ..model import StartWorkflow
from ..workflow._definition import WorkflowDefinition
from ._errors import NotAWorkflowError


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
    """``(name, return hint)`` of a signal (``kind='signal'``), query or update handler."""
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
    if kind in ("query", "update"):
        try:
            hint = return_hint_of(handler)
        except Exception:
            hint = None
    return name, hint


#: The id-reuse policies a start may name (see ``StartWorkflow.id_reuse_policy``).
ID_REUSE_POLICIES = ("ALLOW_DUPLICATE", "ALLOW_DUPLICATE_FAILED_ONLY", "REJECT_DUPLICATE", "TERMINATE_IF_RUNNING")


def to_ms(value: timedelta | float | int | None) -> int | None:
    """A duration (timedelta or seconds) in whole milliseconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    return int(float(value) * 1000)


def start_body(
    converter: Any, workflow: Any, args: Sequence[Any], *, task_queue: str, id_reuse_policy: str,
    execution_timeout: timedelta | float | None, run_timeout: timedelta | float | None,
    search_attributes: Any, request_id: str | None, wait_result: bool,
    retry_policy: Any = None, cron_schedule: str = "", memo: Mapping[str, Any] | None = None,
) -> tuple[StartWorkflow, Any]:
    """The ``StartWorkflow`` a client sends for ``start_workflow(...)``, and the result type hint
    of the workflow's run method (shared by the Kafka client and the test environment).

    ``retry_policy`` (an ``aion.RetryPolicy``), ``cron_schedule`` and ``memo`` are Temporal's
    workflow options; an invalid cron expression raises ``InvalidArgumentError`` here."""
    name, hint = workflow_name(workflow)
    if id_reuse_policy not in ID_REUSE_POLICIES:
        raise ValueError(f"id_reuse_policy must be one of {ID_REUSE_POLICIES}, got {id_reuse_policy!r}")
    if retry_policy is not None and not hasattr(retry_policy, "to_model"):
        raise TypeError(f"retry_policy must be an aion.RetryPolicy, got {type(retry_policy).__name__}")
    if cron_schedule:
        from ..runtime._cron import cron_problem

        if problem := cron_problem(cron_schedule):
            raise InvalidArgumentError(f"start_workflow(cron_schedule=...) for workflow {name!r}: {problem}")
    sa_values, sa_types, unset = to_stored(search_attributes, f"start_workflow(search_attributes=...) for {name!r}")
    if unset:
        raise InvalidArgumentError(f"start_workflow(search_attributes=...) for {name!r}: a start cannot unset "
                                   f"{', '.join(map(repr, unset))}")
    if memo is not None and (not isinstance(memo, Mapping) or not all(isinstance(k, str) for k in memo)):
        raise TypeError("memo must be a dict with str keys")
    body = StartWorkflow(
        workflow_type=name,
        input=converter.to_payloads(list(args)),
        task_queue=task_queue,
        id_reuse_policy=id_reuse_policy,
        request_id=request_id or str(uuid.uuid4()),
        execution_timeout_ms=to_ms(execution_timeout),
        run_timeout_ms=to_ms(run_timeout),
        search_attributes=sa_values,
        search_attribute_types=sa_types,
        wait_result=wait_result,
        retry_policy=retry_policy.to_model() if retry_policy is not None else None,
        cron_schedule=cron_schedule or "",
        memo={k: converter.to_payload(v) for k, v in (memo or {}).items()},
    )
    return body, hint
