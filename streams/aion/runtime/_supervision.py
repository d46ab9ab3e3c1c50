"""When a held workflow's task is retried: a deadlocked task waits for other code.

The deadlock watchdog (``_watchdog.py``) interrupts workflow code that does not yield back
within the ``deadlock_timeout`` of its :class:`~aion.workflow.FailurePolicy`. A busy loop in
Python is interrupted at once; a call blocked in C code (``time.sleep(5)``, a blocking socket
read) only when it returns. Either way the step held the engine worker's event loop — every
workflow of that worker — for as long as it ran, and a task retry on the same code would do it
again, at every retry, for as long as the workflow is held.

So a task failure that is a :class:`~aion.exceptions.DeadlockError` records the
``Registry.code_id`` of the code that deadlocked, and when the held workflow's task timer
(``task/<n>``) fires on that same code, the task is **not** retried: nothing is recorded, no
workflow code runs, and the timer is only re-armed (an effect, like a heartbeat timer's), after
as long again as the task has been held — at least the task-retry policy's initial interval,
at most its maximum interval. The first fire handled by other code — an engine worker started
after a deploy or a restart, or one that took the partition over — retries the task as usual
(``MarkerRecorded('aion.resume')``), and ``WorkflowExecution.resume`` retries it at once. A
deadlocking step thus runs at most once per engine worker process (plus explicit resumes),
whatever the retry policy; while it waits, its inputs are recorded as for any held workflow.

Other task failures (an unexpected exception, a divergence, a runtime error) are retried by
their timer as before: they do not block the loop for longer than the step takes.

A run pinned to a build this worker has not loaded (``VersionNotLoadedError``, see
``_versions.py``) is held the same way: its timer fires record nothing while the build is
missing and re-arm (at most every ``MISSING_BUILD_LOOK_MS``); the first fire after the build
is loaded retries the task on that build. Its attempts do not count towards failing the run.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from ..exceptions import DeadlockError, failure_to_exception
from ..model import Event, Failure, WorkflowTaskFailed
from ._state import Run, model_retry, task_timer
from ._versions import code_of
from .effects import ScheduleTimer

__all__ = ["deadlock_code_id", "last_task_failure", "hold_deadlocked_task"]

log = logging.getLogger("aion.runtime")

#: Longest wait between two looks at a run held because its build is not loaded (its task
#: timer re-arms without recording anything, as for a deadlock; see ``_versions.py``).
MISSING_BUILD_LOOK_MS = 10_000


def deadlock_code_id(failure: Failure) -> str | None:
    """The ``code_id`` a deadlock's task failure recorded; None when it is not a deadlock (or
    was recorded without one, by an engine before code ids: such a task is retried as before)."""
    if failure.type != DeadlockError.__name__:
        return None
    exc = failure_to_exception(failure)
    return getattr(exc, "code_id", "") or None


def last_task_failure(history: Sequence[Event], run: Run) -> Event | None:
    """The latest ``WorkflowTaskFailed`` of ``run`` (the one it is held by, while held)."""
    for i in range(len(history) - 1, run.start_index - 1, -1):
        if isinstance(history[i].body, WorkflowTaskFailed):
            return history[i]
    return None


def hold_deadlocked_task(ex: Any, run: Run) -> bool:
    """At a fire of held ``run``'s task timer: True when its task must not be retried because
    its last task failure is a deadlock of this very code (``ex.registry.code_id``); the timer
    is then re-armed (see the module docs). False: retry the task."""
    ev = last_task_failure(ex.history, run)
    if ev is None:
        return False
    tf = ev.body
    assert isinstance(tf, WorkflowTaskFailed)
    code = code_of(ex.registry, run.started)  # the run's build (_versions.py)
    policy = model_retry((code or ex.registry).policy_for(run.workflow_type).task_retry)
    initial = max(1, policy.initial_interval_ms)
    cap = policy.maximum_interval_ms if policy.maximum_interval_ms is not None else 100 * initial
    now = ex._now
    if code is None:
        # Pinned to a build this worker has not loaded: nothing to retry on. Look again soon
        # (at most every MISSING_BUILD_LOOK_MS): the build may be deployed any moment.
        wait = int(min(max(now - ev.recorded_at_ms, initial), MISSING_BUILD_LOOK_MS))
        if ex._fx is not None:
            ex._fx.append(ScheduleTimer(ex.workflow_id, run.run_id, task_timer(run.task_attempt), now + wait))
        log.info("workflow %s (run %s): its build %r is not loaded here; held, next look in %d ms",
                 ex.workflow_id, run.run_id, run.started.code_version, wait)
        return True
    code_id = deadlock_code_id(tf.failure)
    if code_id is None or code_id != getattr(code, "code_id", None):
        return False
    wait = int(min(max(now - ev.recorded_at_ms, initial), max(cap, initial)))
    if ex._fx is not None:
        ex._fx.append(ScheduleTimer(ex.workflow_id, run.run_id, task_timer(run.task_attempt), now + wait))
    log.info("workflow %s (run %s): its task deadlocked on this code (attempt %d); not retried here, "
             "next look in %d ms: a restarted or newly deployed engine worker retries it",
             ex.workflow_id, run.run_id, run.task_attempt, wait)
    return True
