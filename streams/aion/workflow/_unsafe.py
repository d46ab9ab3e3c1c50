"""``workflow.unsafe``: the escape hatches of Temporal's sandbox, for code ported from it.

Temporal runs workflow code in a sandbox that re-imports modules per run; its users wrap imports
of activity modules and libraries in ``with workflow.unsafe.imports_passed_through():`` so the
sandbox shares them. Aion Streams has no sandbox (determinism is the workflow event loop's and
the replay checks' business), so those blocks do nothing here — they exist so that ported code
imports and runs unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from ._api import is_replaying as _is_replaying

__all__ = ["unsafe"]


class unsafe:  # noqa: N801 - spelled like Temporal's namespace
    """Namespace of sandbox-related helpers (``workflow.unsafe.imports_passed_through()``)."""

    @staticmethod
    @contextlib.contextmanager
    def imports_passed_through() -> Iterator[None]:
        """Accepted for Temporal compatibility: imports inside run as ordinary imports (no
        sandbox re-imports modules here). Usable at module level and in workflow code."""
        yield

    @staticmethod
    @contextlib.contextmanager
    def sandbox_unrestricted() -> Iterator[None]:
        """Accepted for Temporal compatibility: without a sandbox there is nothing to lift."""
        yield

    @staticmethod
    def in_sandbox() -> bool:
        """Always False: Aion Streams runs workflow code without a sandbox."""
        return False

    @staticmethod
    def is_sandbox_unrestricted() -> bool:
        """Always True: nothing restricts workflow code (stay deterministic by discipline:
        clocks, randomness and I/O go through ``workflow.now``/``random`` and activities)."""
        return True

    @staticmethod
    def is_replaying() -> bool:
        """True while the runtime re-runs the code against recorded history (as
        :func:`aion.workflow.is_replaying`); raises ``NotInWorkflowError`` outside a workflow."""
        return _is_replaying()

    @staticmethod
    def is_replaying_history_events() -> bool:
        """The same as :meth:`is_replaying` (the runtime replays only history events)."""
        return _is_replaying()
