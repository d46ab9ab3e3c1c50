"""The limits every command field is held to, wherever the command comes from.

The commands topic is open to anyone who can write to it (another team's service, a Flink job,
kcat at 2 a.m.), so the engine checks each command against these limits before it runs it, and
the client checks the same ones before it sends (an :class:`~aion.exceptions.InvalidArgumentError`
at the call, instead of a dead letter later). :func:`command_problem` is pure: the same command
gets the same answer in the client, in the engine and in the test environment.

=====================================  =============================================================
Workflow ids                           non-empty, at most :data:`MAX_ID_BYTES` UTF-8 bytes, no NUL
                                       or other control character (NUL separates the parts of the
                                       engine's table keys)
Command, request, signal, run,         the same (request, signal and run ids may be empty), at most
activity and timer ids                 :data:`MAX_KEY_BYTES`: the engine composes some of them from
                                       a workflow id and another id (a child's start, its refusal)
Names (workflow type, signal, query,   the same, at most :data:`MAX_NAME_BYTES`
update)
Task queues                            1 to :data:`MAX_TASK_QUEUE_CHARS` of ``A-Z a-z 0-9 . _ -``
                                       (each is a Kafka topic ``<prefix>.activities.<queue>``)
Durations (timeouts)                   more than 0 and at most :data:`MAX_DURATION_MS` (100 years)
Timestamps (``sent_at_ms``,            0 to :data:`MAX_TIME_MS` (the year 2200); a timer's fire time
``fire_at_ms``)                        also at most 100 years after now
Reasons (cancel, terminate, pause)    at most :data:`MAX_REASON_BYTES`
Search attributes                      at most :data:`MAX_SEARCH_ATTRIBUTES` keys (names), values
                                       at most :data:`MAX_ATTRIBUTE_VALUE_BYTES`
Attempts                               1 to 2**31 - 1
Update ids, update stages              an update id is required (at most :data:`MAX_KEY_BYTES`); the
                                       stage is ``ACCEPTED`` or ``COMPLETED``
=====================================  =============================================================

Temporal holds ids to the same 1,000 bytes (its ``limit.maxIDLength``).
"""

from __future__ import annotations

import re

from ._commands import (
    ActivityHeartbeat,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    CancelWorkflow,
    ChildWorkflowResult,
    Command,
    FireTimer,
    GetResult,
    PauseWorkflow,
    QueryWorkflow,
    ReopenWorkflow,
    ResumeWorkflow,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    UpdateWithStart,
    UpdateWorkflow,
)

__all__ = [
    "MAX_ID_BYTES", "MAX_KEY_BYTES", "MAX_NAME_BYTES", "MAX_TASK_QUEUE_CHARS", "MAX_DURATION_MS", "MAX_TIME_MS",
    "MAX_REASON_BYTES", "MAX_SEARCH_ATTRIBUTES", "MAX_ATTRIBUTE_VALUE_BYTES", "MAX_ATTEMPT",
    "ID_REUSE_POLICIES", "PARENT_CLOSE_POLICIES", "CHILD_OUTCOMES", "UPDATE_STAGES",
    "command_problem", "id_problem", "workflow_id_problem", "name_problem", "task_queue_problem", "duration_problem",
    "time_problem", "HISTORY_WARN_EVENTS", "HISTORY_FAIL_EVENTS", "HISTORY_WARN_BYTES", "HISTORY_FAIL_BYTES",
]

MAX_ID_BYTES = 1000
MAX_KEY_BYTES = 4096
MAX_NAME_BYTES = 1000
MAX_TASK_QUEUE_CHARS = 200
#: 100 years of 365.25 days.
MAX_DURATION_MS = 100 * 36525 * 86_400_000 // 100
#: 2200-01-01T00:00:00Z: far past any real clock, far below 64-bit milliseconds.
MAX_TIME_MS = 7_258_118_400_000
MAX_REASON_BYTES = 32 * 1024
#: The type names of typed search attributes (``aion.common.SearchAttributeIndexedValueType``).
SEARCH_ATTRIBUTE_TYPES = ("Text", "Keyword", "Int", "Double", "Bool", "Datetime", "KeywordList")
MAX_SEARCH_ATTRIBUTES = 100
MAX_ATTRIBUTE_VALUE_BYTES = 2048
MAX_ATTEMPT = 2**31 - 1
#: How long one run's history may grow, by default (Temporal's): past the warnings
#: ``workflow.info().continue_as_new_suggested`` turns true, past the failures the run is
#: terminated. The engine's settings (``AION_HISTORY_*``) and ``runtime.HistoryLimits`` start here.
HISTORY_WARN_EVENTS = 10_240
HISTORY_FAIL_EVENTS = 51_200
HISTORY_WARN_BYTES = 10 * 1024 * 1024
HISTORY_FAIL_BYTES = 50 * 1024 * 1024

ID_REUSE_POLICIES = frozenset({"ALLOW_DUPLICATE", "ALLOW_DUPLICATE_FAILED_ONLY", "REJECT_DUPLICATE",
                               "TERMINATE_IF_RUNNING"})
PARENT_CLOSE_POLICIES = frozenset({"TERMINATE", "ABANDON", "REQUEST_CANCEL"})
CHILD_OUTCOMES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT"})
UPDATE_STAGES = frozenset({"ACCEPTED", "COMPLETED"})

_TASK_QUEUE = re.compile(r"[A-Za-z0-9._-]+")
#: Unicode's control characters (general category Cc): C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _text_problem(what: str, value: object, max_bytes: int, *, required: bool, controls: bool = False) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value:
        return f"{what} is empty" if required else None
    # ASCII (nearly every id and name): as many UTF-8 bytes as characters, and its control
    # characters are exactly its unprintable ones — the checks below without the encode and
    # the regular expression (anything else is checked below).
    if value.isascii() and len(value) <= max_bytes and (controls or value.isprintable()):
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{what} is not valid UTF-8 (it holds a lone surrogate)"
    if size > max_bytes:
        return f"{what} is {size} UTF-8 bytes long, over the limit of {max_bytes} ({value[:40]!r}...)"
    if not controls and (m := _CONTROL.search(value)) is not None:
        return (f"{what} {value[:80]!r} holds the control character U+{ord(m.group()):04X} at index {m.start()} "
                "(NUL and control characters are not allowed)")
    return None


def id_problem(what: str, value: object, *, required: bool = True, max_bytes: int = MAX_KEY_BYTES) -> str | None:
    """Why ``value`` is not a valid identifier (``None`` when it is)."""
    return _text_problem(what, value, max_bytes, required=required)


def workflow_id_problem(value: object, what: str = "workflow id") -> str | None:
    """Why ``value`` is not a valid workflow id (``None`` when it is)."""
    return _text_problem(what, value, MAX_ID_BYTES, required=True)


def name_problem(what: str, value: object) -> str | None:
    """Why ``value`` is not a valid workflow type, signal or query name (``None`` when it is)."""
    return _text_problem(what, value, MAX_NAME_BYTES, required=True)


def task_queue_problem(value: object) -> str | None:
    """Why ``value`` is not a valid task queue name (``None`` when it is)."""
    if not isinstance(value, str):
        return f"task queue must be a string, got {type(value).__name__}"
    if not value or len(value) > MAX_TASK_QUEUE_CHARS or not _TASK_QUEUE.fullmatch(value):
        return (f"task queue {value[:80]!r} is not 1 to {MAX_TASK_QUEUE_CHARS} characters of A-Z, a-z, 0-9, "
                "'.', '_' and '-' (each task queue is a Kafka topic)")
    return None


def duration_problem(what: str, ms: object, *, optional: bool = True) -> str | None:
    """Why ``ms`` is not a valid duration in milliseconds (``None`` when it is; ``None`` is
    valid for an optional duration)."""
    if ms is None and optional:
        return None
    if not isinstance(ms, int) or isinstance(ms, bool):
        return f"{what} must be whole milliseconds, got {type(ms).__name__}"
    if ms <= 0:
        return f"{what} must be more than 0 ms, got {ms}"
    if ms > MAX_DURATION_MS:
        return f"{what} is {ms} ms, over the limit of 100 years ({MAX_DURATION_MS} ms)"
    return None


def time_problem(what: str, ms: object, now_ms: int | None = None) -> str | None:
    """Why ``ms`` is not a valid timestamp in Unix milliseconds (``None`` when it is). With
    ``now_ms``, a time more than 100 years ahead of it is refused too."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return f"{what} must be Unix milliseconds, got {type(ms).__name__}"
    if ms < 0:
        return f"{what} is negative ({ms})"
    if ms > MAX_TIME_MS:
        return f"{what} is {ms}, past the year 2200 ({MAX_TIME_MS})"
    if now_ms is not None and ms - now_ms > MAX_DURATION_MS:
        return f"{what} is {ms}, more than 100 years after now ({now_ms})"
    return None


def _attempt_problem(attempt: object) -> str | None:
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 1 <= attempt <= MAX_ATTEMPT:
        return f"attempt must be 1 to {MAX_ATTEMPT}, got {attempt!r}"
    return None


def _one_of(what: str, value: object, allowed: frozenset[str]) -> str | None:
    if value not in allowed:
        return f"{what} {value!r} is not one of {', '.join(sorted(allowed))}"
    return None


def _start_problem(b: StartWorkflow) -> str | None:
    problem = (name_problem("workflow type", b.workflow_type) or task_queue_problem(b.task_queue)
               or _one_of("id reuse policy", b.id_reuse_policy, ID_REUSE_POLICIES)
               or id_problem("request id", b.request_id, required=False)
               or duration_problem("execution timeout", b.execution_timeout_ms)
               or duration_problem("run timeout", b.run_timeout_ms)
               or _one_of("parent close policy", b.parent_close_policy, PARENT_CLOSE_POLICIES))
    if problem:
        return problem
    if b.parent_workflow_id is not None:
        problem = (workflow_id_problem(b.parent_workflow_id, "parent workflow id")
                   or id_problem("parent run id", b.parent_run_id or "", required=False))
        if problem:
            return problem
    attrs = b.search_attributes
    if len(attrs) > MAX_SEARCH_ATTRIBUTES:
        return f"{len(attrs)} search attributes, over the limit of {MAX_SEARCH_ATTRIBUTES}"
    for key, value in attrs.items():
        problem = (name_problem("search attribute name", key)
                   or _text_problem(f"search attribute {key!r}", value, MAX_ATTRIBUTE_VALUE_BYTES,
                                    required=False, controls=True))
        if problem:
            return problem
    for key, kind in b.search_attribute_types.items():
        if key not in attrs:
            return f"search attribute {key!r} has a type ({kind!r}) but no value"
        if kind not in SEARCH_ATTRIBUTE_TYPES:
            return f"search attribute {key!r} has the unknown type {kind!r} (one of {', '.join(SEARCH_ATTRIBUTE_TYPES)})"
    return None


def _update_problem(b: UpdateWorkflow) -> str | None:
    return (id_problem("update id", b.update_id) or name_problem("update name", b.update_name)
            or id_problem("run id", b.run_id or "", required=False)
            or _one_of("update stage (wait_for_stage)", b.wait_for_stage, UPDATE_STAGES))


def _body_problem(b: object, now_ms: int | None) -> str | None:
    if isinstance(b, StartWorkflow):
        return _start_problem(b)
    if isinstance(b, UpdateWorkflow):
        return _update_problem(b)
    if isinstance(b, UpdateWithStart):
        return _start_problem(b.start) or _update_problem(b.update)
    if isinstance(b, SignalWithStart):
        return _start_problem(b.start) or name_problem("signal name", b.signal_name)
    if isinstance(b, SignalWorkflow):
        return (name_problem("signal name", b.signal_name) or id_problem("signal id", b.signal_id, required=False)
                or id_problem("run id", b.run_id or "", required=False))
    if isinstance(b, (CancelWorkflow, TerminateWorkflow, PauseWorkflow, ResumeWorkflow, ReopenWorkflow)):
        return (id_problem("run id", b.run_id or "", required=False)
                or _text_problem("reason", b.reason, MAX_REASON_BYTES, required=False, controls=True))
    if isinstance(b, QueryWorkflow):
        return name_problem("query name", b.query_name)
    if isinstance(b, GetResult):
        return id_problem("run id", b.run_id or "", required=False)
    if isinstance(b, (ActivityTaskStarted, ActivityTaskCompleted, ActivityTaskFailed, ActivityTaskCancelled,
                      ActivityHeartbeat)):
        return (id_problem("run id", b.run_id) or id_problem("activity id", b.activity_id)
                or _attempt_problem(b.attempt))
    if isinstance(b, ChildWorkflowResult):
        return (id_problem("run id", b.run_id, required=False) or workflow_id_problem(b.child_workflow_id, "child workflow id")
                or _one_of("child outcome", b.outcome, CHILD_OUTCOMES))
    if isinstance(b, FireTimer):
        return (id_problem("run id", b.run_id) or id_problem("timer id", b.timer_id)
                or time_problem("fire time", b.fire_at_ms, now_ms))
    return f"unknown command body {type(b).__name__}"


def command_problem(cmd: Command, now_ms: int | None = None) -> str | None:
    """What is wrong with ``cmd`` (the first field outside its limits, named), or ``None``.

    ``reply_to`` is checked by the engine, which knows which replies topics it answers on.
    """
    problem = (workflow_id_problem(cmd.workflow_id) or id_problem("command id", cmd.command_id)
               or time_problem("sent_at_ms", cmd.sent_at_ms)
               or _body_problem(cmd.body, now_ms))
    if problem is None and cmd.reply_to is not None:
        problem = _text_problem("reply_to", cmd.reply_to, MAX_NAME_BYTES, required=False)
    return problem
