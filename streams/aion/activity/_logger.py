"""``activity.logger``: a logger that says which attempt of which activity speaks.

Attempts of many workflows run side by side in one worker; without their ids a log line cannot
be traced back to its workflow. The adapter adds them to each record (``record.aion_activity``)
and, by default, to its message — as Temporal's ``activity.logger`` does, so code ported from it
logs the same way. Activities are not replayed, so nothing is suppressed.
"""

from __future__ import annotations

import logging
from typing import Any, MutableMapping

from ._context import ActivityInfo, current

__all__ = ["ActivityLoggerAdapter", "logger", "activity_details"]


class ActivityLoggerAdapter(logging.LoggerAdapter):
    """A :class:`logging.LoggerAdapter` for activity code.

    - ``activity_info_on_message`` (default True): append ``({'activity_id': ..., ...})`` to
      the message.
    - ``activity_info_on_extra`` (default True): set ``record.aion_activity`` to the same dict.

    Outside an activity attempt it logs like its base logger, without context.
    """

    def __init__(self, base: logging.Logger, extra: dict[str, Any] | None = None) -> None:
        super().__init__(base, extra or {})
        self.activity_info_on_message = True
        self.activity_info_on_extra = True

    @property
    def base_logger(self) -> logging.Logger:
        """The wrapped :class:`logging.Logger` (configure handlers and levels on it)."""
        return self.logger

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        ctx = current.get()
        if ctx is None:
            return msg, kwargs
        details = activity_details(ctx.info)
        if self.activity_info_on_message:
            msg = f"{msg} ({details})"
        extra = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        if self.activity_info_on_extra:
            extra["aion_activity"] = details
        kwargs["extra"] = extra
        return msg, kwargs


def activity_details(info: ActivityInfo) -> dict[str, Any]:
    """The context an activity's log record carries."""
    return {
        "activity_id": info.activity_id,
        "activity_type": info.activity_type,
        "attempt": info.attempt,
        "task_queue": info.task_queue,
        "workflow_id": info.workflow_id,
        "workflow_run_id": info.run_id,
        "workflow_type": info.workflow_type,
    }


#: The logger for activity code (name ``aion.activity``).
logger = ActivityLoggerAdapter(logging.getLogger("aion.activity"))
