"""The deterministic runtime: workflow history + one new command -> new events + effects.

No Kafka here; the engine (``aion.engine``) and the test environment (``aion.testing``) both
drive it through this contract::

    from aion.runtime import Registry, WorkflowExecution, Step, effects, replay_history

    registry = Registry(workflows=[Order], activities=[charge])
    ex = WorkflowExecution.new(registry, "order-1")               # nothing recorded yet
    step = ex.handle(command, now_ms)                             # -> Step(events, effects)
    ex = WorkflowExecution.from_history(registry, "order-1", events)   # rebuild by replay
    reply = ex.query(query_command)                               # never appends history
    ex.next_seq, ex.run_id, ex.status, ex.workflow_type, ex.history, ex.held

- ``Step.events`` continue the history gaplessly (``recorded_at_ms=now_ms``,
  ``command_id=command.command_id``); ``Step.effects`` (:mod:`aion.runtime.effects`) may be
  performed only after those events are durable. Replies are ``SendReply`` effects.
- Everything the workflow waits on is a durable timer announced by ``ScheduleTimer`` and
  answered by a ``FireTimer`` command; fires of timers that are not live are ignored. Timer
  ids: user timers ``"1"``, ``"2"``, ... per run; ``a/<activity>/close``,
  ``a/<activity>/<attempt>/{s2s,s2c,retry,hb/<gen>}`` for activities; ``wf/exec``, ``wf/run``
  for workflow timeouts; ``task/<attempt>`` for retrying a held workflow.
- ``handle`` raises only for a bug of the runtime itself; its in-memory state is then
  unreliable: drop the execution and rebuild it with ``from_history``.
- ``from_history`` never raises for the workflow's sake: a divergence or a failing replay leaves
  it ``held`` with ``load_failure`` set, and the next step records ``WorkflowTaskFailed``.
  ``ex.resume(command_id, now_ms)`` retries a held workflow at once (after a deploy).
- ``ex.recovery_effects(now_ms)`` lists the effects to re-issue after a crash between
  "events durable" and "effects performed" (timers, undelivered attempts, child starts).
- ``replay_history(registry, events_or_json_path)`` replays every run of a recorded history
  against the current code and reports the first divergence (:class:`ReplayResult`).

Where the semantics live: ``_execution.py`` (the step, the run's lifecycle, supervision, and
the dispatch of commands and events to the rooms), its rooms ``_commands.py`` (client commands,
refusals, result waiters), ``_activities.py`` (the activity machine), ``_children.py`` (child
workflows), ``_updates.py`` (updates), the shared state and timer ids in ``_state.py``, ``_activation.py`` (inputs,
command events and the replay of a run), ``_instance.py`` (the code of one run and the replay
matching rules), ``_loop.py`` (the deterministic event loop), ``_watchdog.py`` (deadlock
detection), ``_history_json.py`` (the JSON history format).
"""

from . import effects
from ._execution import MAX_WAITERS, Step, WorkflowExecution
from ._history_json import dump_history, events_from_json, events_to_json, load_history
from ._registry import HistoryLimits, Registry
from ._replay import ReplayResult, replay_history
from ._updates import MAX_UPDATES_IN_FLIGHT, MAX_UPDATES_PER_RUN

__all__ = [
    "Registry",
    "HistoryLimits",
    "WorkflowExecution",
    "Step",
    "MAX_WAITERS",
    "MAX_UPDATES_IN_FLIGHT",
    "MAX_UPDATES_PER_RUN",
    "effects",
    "ReplayResult",
    "replay_history",
    "load_history",
    "dump_history",
    "events_to_json",
    "events_from_json",
]
