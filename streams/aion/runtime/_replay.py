"""Replay a recorded history against the current code and report the first divergence.

``replay_history(registry, events_or_path)`` replays *every* run segment of one workflow's
history (not only the open one) with fresh instances of the registered code, matching each
command against the recorded command events (see ``_instance``). It never runs activities or
performs effects. The CLI's ``aion replay FILE --workflows MODULE`` is a thin wrapper; Avro
files are decoded by the caller (``aion.codec``) and passed as a list of events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..exceptions import NondeterminismError, WorkflowTypeNotFoundError
from ..model import Event, WorkflowStarted, reopen_ranges, taken_back
from ._execution import WorkflowExecution, replay_into
from ._history_json import load_history
from ._instance import WorkflowInstance
from ._registry import WorkflowCode

__all__ = ["ReplayResult", "replay_history"]


@dataclass
class ReplayResult:
    """The outcome of :func:`replay_history`.

    ``ok`` is True when every run segment replayed without divergence or failure.
    ``divergence`` is the first :class:`NondeterminismError` (its ``seq``, ``expected`` and
    ``found`` say where and what); ``error`` is any other task failure met while replaying
    (the code raised a bug, deadlocked, or its workflow type is not registered).
    """

    workflow_id: str
    events: int
    runs: int
    status: str | None
    divergence: NondeterminismError | None = None
    error: BaseException | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.error is None

    def __str__(self) -> str:
        head = f"workflow {self.workflow_id!r}: {self.events} events, {self.runs} run(s), status {self.status}"
        if self.divergence is not None:
            return f"{head}\nDIVERGED at seq {self.divergence.seq}: {self.divergence}"
        if self.error is not None:
            return f"{head}\nFAILED: {type(self.error).__name__}: {self.error}"
        return f"{head}\nreplayed without divergence"


def replay_history(registry: WorkflowCode, events: Sequence[Event] | str | Path, *, strict: bool = False) -> ReplayResult:
    """Replay ``events`` (a list, or the path of a JSON history file) with the registry's code.

    ``strict=True`` also compares the recorded values of each command (activity inputs,
    results, timer fire times), not only their kind and identity.
    """
    if isinstance(events, (str, Path)):
        events = load_history(events)
    events = list(events)
    if not events:
        raise ValueError("the history is empty: nothing to replay")
    ids = {e.workflow_id for e in events}
    if len(ids) != 1:
        raise ValueError(f"the history mixes several workflow ids ({sorted(ids)}): replay one workflow at a time")
    wf_id = events[0].workflow_id
    for i, e in enumerate(events, start=1):
        if e.seq != events[0].seq + i - 1:
            raise ValueError(f"the history of {wf_id!r} has a gap or disorder at seq {e.seq} (position {i})")
    # The engine state (run boundaries, chain info) comes from applying the events.
    ex = WorkflowExecution(registry, wf_id)
    result = ReplayResult(wf_id, len(events), 0, None)
    segments: list[tuple[int, int]] = []
    for idx, ev in enumerate(events):
        if isinstance(ev.body, WorkflowStarted):
            segments.append((idx, len(events)))
            if len(segments) > 1:
                segments[-2] = (segments[-2][0], idx)
    for start, end in segments:
        ex.history = events[:start]
        ex.next_seq = events[start].seq
        # apply the run's WorkflowStarted to get the run state and chain info
        for ev in events[len(ex.history):start + 1]:
            ex.history.append(ev)
            ex._apply(ev, None)
        run = ex.run
        assert run is not None
        result.runs += 1
        defn = registry.workflow(run.workflow_type)
        if defn is None:
            result.error = WorkflowTypeNotFoundError(
                f"workflow type {run.workflow_type!r} (run {run.run_id}) is not registered: pass the "
                f"module that defines it")
            break
        inst = WorkflowInstance(defn, ex._run_context(run), registry.converter, registry.policy_for(defn.name), registry)
        inst.strict = strict
        # What a reopen took back is replayed to nobody (see ``_lifecycle.py``).
        voids = reopen_ranges(events[start:end])
        voided = (lambda seq: taken_back(seq, voids)) if voids else None
        failure = replay_into(inst, events, start, end, voided=voided)
        inst.dispose()
        if failure is not None:
            if isinstance(failure, NondeterminismError):
                result.divergence = failure
            else:
                result.error = failure
            break
        for ev in events[start + 1:end]:
            ex.history.append(ev)
            if voided is None or not voided(ev.seq):
                ex._apply(ev, None)
    result.status = ex.status
    return result
