"""Task tokens: what names one activity attempt outside the worker that runs it.

An activity that completes asynchronously (``activity.raise_complete_async()``) hands its
``activity.info().task_token`` to whatever finishes the work later; that party reports the
outcome with ``client.get_async_activity_handle(task_token=...)``. The token is the attempt's
ids (workflow, run, activity, attempt) as versioned JSON bytes: opaque to users, as Temporal's,
but readable here so that a bad token gets an error naming what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..exceptions import InvalidArgumentError

__all__ = ["TaskToken", "InvalidTaskTokenError", "encode_task_token", "decode_task_token"]

_PREFIX = b"aion-task-token/1:"


class InvalidTaskTokenError(InvalidArgumentError):
    """A task token that no activity attempt of this engine could have produced."""


@dataclass(frozen=True, slots=True)
class TaskToken:
    """The attempt a task token names."""

    workflow_id: str
    run_id: str
    activity_id: str
    attempt: int


def encode_task_token(workflow_id: str, run_id: str, activity_id: str, attempt: int) -> bytes:
    body = json.dumps([workflow_id, run_id, activity_id, attempt], separators=(",", ":"))
    return _PREFIX + body.encode("utf-8")


def decode_task_token(token: bytes) -> TaskToken:
    """The attempt ``token`` names; :class:`InvalidTaskTokenError` when it is not a task token."""
    if isinstance(token, str):
        token = token.encode("utf-8")
    if not isinstance(token, (bytes, bytearray)):
        raise InvalidTaskTokenError(
            f"a task token is bytes (activity.info().task_token), not {type(token).__name__}")
    raw = bytes(token)
    if not raw.startswith(_PREFIX):
        raise InvalidTaskTokenError(
            f"{raw[:40]!r}... is not a task token of Aion Streams: pass the bytes of "
            f"activity.info().task_token unchanged (a token of a Temporal server does not work here)")
    try:
        wf, run, act, attempt = json.loads(raw[len(_PREFIX):].decode("utf-8"))
        if not (isinstance(wf, str) and isinstance(run, str) and isinstance(act, str)
                and isinstance(attempt, int) and wf and attempt >= 1):
            raise ValueError("bad fields")
    except (ValueError, TypeError) as exc:
        raise InvalidTaskTokenError(
            f"task token {raw[:80]!r} is damaged ({exc}): pass the bytes of activity.info().task_token "
            f"unchanged") from None
    return TaskToken(wf, run, act, attempt)
