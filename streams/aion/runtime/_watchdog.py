"""Deadlock detection: interrupt workflow code that does not yield back to the runtime.

One lazily started daemon thread watches the armed activations. When an activation overruns
its deadline, the watchdog sets the activation's ``fired`` flag and raises
:class:`DeadlockInterrupt` asynchronously in the thread running the workflow code (CPython's
``PyThreadState_SetAsyncExc``), which breaks busy loops in pure-Python code; it repeats every
timeout period until the activation ends. ``disarm`` clears any interrupt still pending, so
no stray exception escapes into the engine. A call blocked inside C code (``time.sleep``) is
interrupted when it returns.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import time
from dataclasses import dataclass

__all__ = ["DeadlockInterrupt", "Armed", "arm", "disarm"]


class DeadlockInterrupt(BaseException):
    """Raised into workflow code that overran the deadlock timeout (never seen by users)."""


@dataclass
class Armed:
    token: int
    thread_id: int
    timeout: float
    deadline: float
    fired: bool = False


_lock = threading.Lock()
_cond = threading.Condition(_lock)
_armed: dict[int, Armed] = {}
_thread: threading.Thread | None = None
_tokens = itertools.count(1)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else ctypes.c_void_p(0)
    )


#: How often the watchdog looks at the armed activations while there are any (seconds).
PERIOD = 0.05
_idle = True


def _watch() -> None:
    # Polls while activations come and go (no notify per activation: a thread switch per
    # workflow step would cost more than the check), sleeps until notified when idle.
    global _idle
    quiet_rounds = 0
    while True:
        with _cond:
            if not _armed:
                quiet_rounds += 1
                if quiet_rounds > 20:
                    _idle = True
                    _cond.wait()
                    _idle = False
                    quiet_rounds = 0
                    continue
            else:
                quiet_rounds = 0
                now = time.monotonic()
                for a in _armed.values():
                    if a.deadline <= now:
                        a.fired = True
                        a.deadline = now + a.timeout
                        _set_async_exc(a.thread_id, DeadlockInterrupt)
            _cond.wait(PERIOD)


def arm(timeout: float) -> Armed:
    """Start watching the calling thread for ``timeout`` seconds."""
    global _thread
    a = Armed(next(_tokens), threading.get_ident(), timeout, time.monotonic() + timeout)
    with _lock:  # the condition's own lock (its __enter__ is a Python call more per activation)
        _armed[a.token] = a
        if _thread is None:
            _thread = threading.Thread(target=_watch, name="aion-deadlock-watchdog", daemon=True)
            _thread.start()
        elif _idle:
            _cond.notify()
    return a


def disarm(a: Armed) -> bool:
    """Stop watching; returns whether the watchdog fired. Clears a still-pending interrupt."""
    with _lock:
        _armed.pop(a.token, None)
        if a.fired:
            _set_async_exc(a.thread_id, None)
    return a.fired
