"""Whether a signal's arguments fit its handler, checked before the signal is recorded.

A signal is recorded (``SignalReceived``) and then delivered as ``handler(workflow, *args)``
with its payloads decoded to the handler's parameter types. Arguments that cannot make that
call — too many or too few, or a payload that does not decode as its parameter's type — would
only fail inside the run, once recorded, and every replay would fail the same way. The engine
refuses such a signal instead (``SignalArgumentsError`` to the sender, dead-lettered without a
``reply_to``; see ``_commands.py``): nothing is recorded and the run goes on.

:func:`signal_args_problem` is pure: it decodes the payloads as the delivery does
(``WorkflowInstance._deliver_signal``) and binds them to the handler's signature.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

from ..converter import hints_of
from ..model import Payload

__all__ = ["signal_args_problem"]


def _signature(fn: Any) -> inspect.Signature | None:
    """The handler's signature without its ``self`` (None when Python cannot tell it)."""
    try:
        return _signature_cached(fn)
    except TypeError:  # unhashable callable
        return _signature_of(fn)


@functools.lru_cache(maxsize=4096)
def _signature_cached(fn: Any) -> inspect.Signature | None:
    return _signature_of(fn)


def _signature_of(fn: Any) -> inspect.Signature | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]  # the workflow object, passed by the delivery
    # Annotations as written (``from __future__ import annotations`` makes them strings, which
    # the signature would show quoted), and no return annotation: ``add(sku: str, qty: int = 1)``.
    params = [p.replace(annotation=_Written(p.annotation)) if isinstance(p.annotation, str) else p
              for p in params]
    return sig.replace(parameters=params, return_annotation=inspect.Signature.empty)


class _Written(str):
    """An annotation kept as text, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _takes(sig: inspect.Signature) -> str:
    ps = list(sig.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in ps):
        least = sum(1 for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    and p.default is p.empty)
        return f"at least {least} argument{'s' if least != 1 else ''}"
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    most = len(positional)
    least = sum(1 for p in positional if p.default is p.empty)
    n = f"{least}" if least == most else f"{least} to {most}"
    return f"{n} argument{'s' if most != 1 else ''}"


def signal_args_problem(workflow_type: str, signal_name: str, handler: Any, args: Sequence[Payload],
                        converter: Any) -> str | None:
    """Why ``args`` cannot be delivered to ``handler`` (a ``@workflow.signal`` method of
    ``workflow_type``), or None when they fit: the message names the handler's parameters,
    what was sent, and Python's own complaint."""
    sig = _signature(handler)
    what = f"signal {signal_name!r} of workflow type {workflow_type!r}"
    try:
        values = converter.from_payloads(list(args), hints_of(handler, skip_self=True))
    except Exception as e:  # noqa: BLE001 - any decoding failure is the sender's
        return (f"{what}: its arguments cannot be decoded for the handler {signal_name}{sig or '(...)'}: "
                f"{type(e).__name__}: {e}")
    if sig is None:
        return None
    try:
        sig.bind(*values)
    except TypeError as e:
        n = len(values)
        return (f"{what} takes {_takes(sig)} {signal_name}{sig} but was sent {n} argument"
                f"{'s' if n != 1 else ''}: {e}; the signal is refused and the workflow goes on")
    return None
