"""``workflow.logger``: a logger that says which workflow speaks and stays quiet in replay.

A workflow's code runs again from the start whenever its run is rebuilt from history (a cache
miss, a rebalance, an engine restart); a plain ``logging`` call would repeat every line each
time. The adapter drops records while the runtime replays recorded history, and adds the run's
ids to each record (``record.aion_workflow``) and, by default, to its message — as Temporal's
``workflow.logger`` does, so code ported from it logs the same way.
"""

from __future__ import annotations

import logging
from typing import Any, MutableMapping

from ._api import NotInWorkflowError, _rt

__all__ = ["WorkflowLoggerAdapter", "logger"]


def _runtime() -> Any:
    """The running workflow's runtime, or None outside workflow code."""
    try:
        return _rt()
    except NotInWorkflowError:
        return None


class WorkflowLoggerAdapter(logging.LoggerAdapter):
    """A :class:`logging.LoggerAdapter` for workflow code.

    - ``log_during_replay`` (default False): whether records are emitted while the runtime
      re-runs code against recorded history.
    - ``workflow_info_on_message`` (default True): append ``({'workflow_id': ..., ...})``
      to the message, so that the context shows with any formatter.
    - ``workflow_info_on_extra`` (default True): set ``record.aion_workflow`` to the same dict,
      for structured formatters.

    Outside workflow code it logs like its base logger, without context.
    """

    def __init__(self, base: logging.Logger, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base, extra or {})
        self.log_during_replay = False
        self.workflow_info_on_message = True
        self.workflow_info_on_extra = True

    @property
    def base_logger(self) -> logging.Logger:
        """The wrapped :class:`logging.Logger` (configure handlers and levels on it)."""
        return self.logger

    def isEnabledFor(self, level: int) -> bool:
        if not self.log_during_replay:
            rt = _runtime()
            if rt is not None and rt.is_replaying():
                return False
        return super().isEnabledFor(level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        rt = _runtime()
        if rt is None:
            return msg, kwargs
        details = workflow_details(rt.info())
        if self.workflow_info_on_message:
            msg = f"{msg} ({details})"
        extra = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        if self.workflow_info_on_extra:
            extra["aion_workflow"] = details
        kwargs["extra"] = extra
        return msg, kwargs


def workflow_details(info: Any) -> dict[str, Any]:
    """The context a workflow's log record carries (deterministic: all from ``workflow.info()``)."""
    return {
        "attempt": info.attempt,
        "run_id": info.run_id,
        "task_queue": info.task_queue,
        "workflow_id": info.workflow_id,
        "workflow_type": info.workflow_type,
    }


#: The logger for workflow code (name ``aion.workflow``).
logger = WorkflowLoggerAdapter(logging.getLogger("aion.workflow"))
