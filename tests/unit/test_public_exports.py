"""The public surface, pinned: the names each public module exports (its ``__all__``).

A change to the public API (a name added, renamed or removed) must change this file too, so it is
a decision and shows in review — as Temporal's ``test_workflow_exports.py`` does. Every exported
name must exist, and a public-looking name of the package's own that a module holds but does not
export is a leak of an internal (allowed only where listed in ``NOT_EXPORTED``).
"""

from __future__ import annotations

import importlib
import types

import pytest

EXPORTS: dict[str, list[str]] = {
    "aion": ["RetryPolicy", "activity", "workflow"],
    "aion.common": [
        "RetryPolicy", "SearchAttributeIndexedValueType", "SearchAttributeKey", "SearchAttributePair",
        "SearchAttributeUpdate", "SearchAttributeValue", "TypedSearchAttributes",
    ],
    "aion.workflow": [
        "ActivityCancellationType", "ActivityHandle", "ActivityOptions", "CancelledError", "ChildOptions",
        "ChildWorkflowHandle", "ContinueAsNewError", "FailurePolicy", "IdReusePolicy", "Info",
        "NotInWorkflowError", "ParentClosePolicy", "ParentInfo", "RetryPolicy", "TimerHandle",
        "WorkflowDefinition", "WorkflowLoggerAdapter", "all_handlers_finished", "continue_as_new", "defn",
        "deprecate_patch", "execute_activity", "execute_activity_method", "execute_child_workflow",
        "execute_local_activity", "execute_local_activity_method", "in_workflow", "info", "init",
        "is_replaying", "logger", "now", "patched", "query", "random", "run", "side_effect", "signal",
        "signal_external", "sleep", "start_activity", "start_activity_method", "start_child_workflow",
        "start_local_activity", "start_local_activity_method", "start_timer", "time", "timeout", "unsafe",
        "upsert_search_attributes", "uuid4", "wait_condition",
        "update",
        "ExternalWorkflowHandle", "get_external_workflow_handle", "get_external_workflow_handle_for",
        "memo", "memo_value", "has_last_completion_result", "get_last_completion_result", "get_last_failure",
    ],
    "aion.activity": [
        "ActivityContext", "ActivityDefinition", "ActivityInfo", "ActivityLoggerAdapter", "NotInActivityError",
        "defn", "heartbeat", "in_activity", "info", "is_cancelled", "logger", "wait_for_cancel",
        "wait_for_cancel_sync", "wait_for_cancelled", "wait_for_cancelled_sync",
        "CompleteAsyncError", "raise_complete_async",  # asynchronous completion
    ],
    "aion.client": [
        "BuildInfo", "Deployments", "DeploymentsView",  # versioned deploys
        "Client", "CommandRejectedError", "ConsumerGroupActiveError", "EventConsumer", "EventRecord",
        "KafkaAccessError", "KafkaAuthenticationError", "KafkaAuthorizationError", "KafkaTLSError",
        "PayloadTooLargeError", "QueryError", "QueryTimeoutError", "RPCTimeoutError",
        "ScheduleAlreadyExistsError", "ScheduleCatchUpPolicy", "ScheduleDescription", "ScheduleHandle",
        "ScheduleNotFoundError", "ScheduleOverlapPolicy", "ScheduleSummary", "TopicMissingError",
        "WorkflowAlreadyStartedError", "WorkflowDescription", "WorkflowFailureError", "WorkflowHandle",
        "WorkflowNotFoundError", "WorkflowResultTimeoutError", "WorkflowSummary",
        "WithStartWorkflowOperation", "WorkflowUpdateHandle", "WorkflowUpdateStage",
        "BuildInfo", "Deployments", "DeploymentsView",
        "ListFilterError", "VisibilityTimeoutError",  # list filters, never a partial list
        "AsyncActivityHandle",  # asynchronous activity completion
    ],
    "aion.exceptions": [
        "BuildInUseError", "BuildNotFoundError", "VersionNotLoadedError",  # versioned deploys
        "ActivityError", "AionError", "ApplicationError", "CancelledError", "ChildWorkflowError",
        "CommandIdReusedError", "DeadlockError", "FailureError", "InvalidArgumentError", "NondeterminismError",
        "PayloadTooLargeError", "QueryError", "SignalArgumentsError", "SignalNotFoundError", "TerminatedError",
        "TimeoutError", "TooManyWaitersError", "WorkflowAlreadyStartedError", "WorkflowFailureError",
        "WorkflowNotFoundError", "WorkflowStateError", "WorkflowTypeNotFoundError", "exception_to_failure",
        "failure_to_exception",
        "TooManyUpdatesError", "UpdateNotFoundError", "WorkflowUpdateFailedError",
        "BuildInUseError", "BuildNotFoundError", "VersionNotLoadedError",
    ],
    "aion.testing": [
        "ActivityEnvironment", "CheckReport", "EngineBugError", "EventLog", "Expectation",
        "InvariantViolationError", "TestClient", "TestWorkflowHandle", "Violation", "WORKER_IDENTITY",
        "WorkflowEnvironment", "WorkflowTaskFailedError", "check_event_log", "check_events_topic",
        "read_event_log",
    ],
}

#: Public-looking names of the package's own that a module holds without exporting them.
NOT_EXPORTED: dict[str, set[str]] = {
    "aion.exceptions": {"Failure", "Payload"},  # the model types its errors carry (aion.model's)
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_the_exports_are_the_pinned_ones(module: str) -> None:
    mod = importlib.import_module(module)
    exported = sorted(mod.__all__)
    assert len(exported) == len(set(exported)), f"{module}.__all__ names a name twice"
    added = sorted(set(exported) - set(EXPORTS[module]))
    removed = sorted(set(EXPORTS[module]) - set(exported))
    assert not added and not removed, (
        f"the public surface of {module} changed (added {added}, removed {removed}): if that is "
        f"meant, update EXPORTS in {__file__} (and the README where it documents the names)")


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_every_export_exists_and_nothing_leaks(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names {missing}, which {module} does not define"
    leaked = sorted(
        n for n, v in vars(mod).items()
        if not n.startswith("_") and n not in mod.__all__ and not isinstance(v, types.ModuleType)
        and (getattr(v, "__module__", None) or "").startswith("aion")
    )
    assert set(leaked) == NOT_EXPORTED.get(module, set()), (
        f"{module} holds public names of aion's own that it does not export: {leaked}; export them "
        f"(add to __all__ and to EXPORTS here) or import them under a private name")

