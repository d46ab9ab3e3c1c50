"""One error root: every public exception class defined in ``aion`` derives from
:class:`aion.exceptions.AionError`, so ``except AionError`` catches whatever Aion raises on
purpose. Found by walking every module of the package, so a new stray fails here.

The classes that used to be builtin errors keep that builtin as a second base, so existing
``except ValueError`` / ``except RuntimeError`` / ``except TypeError`` clauses still catch them.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from types import ModuleType

import pytest

import aion
from aion.exceptions import AionError

#: Deliberately not AionError (and not even Exception): control flow that user code must not
#: swallow with ``except Exception``. Name -> why.
CONTROL_FLOW: dict[str, str] = {
    "aion.workflow._api.ContinueAsNewError": (
        "raised by workflow.continue_as_new() to end the run; a BaseException so that "
        "`except Exception` in workflow code lets it through to the runtime"
    ),
    "aion.runtime._watchdog.DeadlockInterrupt": (
        "raised asynchronously into workflow code that overran the deadlock timeout; a "
        "BaseException so that `except Exception` in workflow code cannot swallow it (users see "
        "DeadlockError, which is an AionError)"
    ),
    "aion.activity._context.CompleteAsyncError": (
        "raised by activity.raise_complete_async() to end the activity function without an "
        "outcome; a BaseException so that `except Exception` in activity code lets it through "
        "to the worker (as Temporal's)"
    ),
}

#: Modules that need an optional dependency (none today: every dependency is required).
OPTIONAL_MODULES: dict[str, str] = {}


def _modules() -> list[ModuleType]:
    out = [aion]
    for info in pkgutil.walk_packages(aion.__path__, "aion."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it runs the command
        try:
            out.append(importlib.import_module(info.name))
        except ImportError:
            if info.name in OPTIONAL_MODULES:
                continue
            raise
    return out


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined (not just imported) in an aion module, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    for mod in _modules():
        for name, value in vars(mod).items():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == mod.__name__:
                found[f"{mod.__name__}.{value.__qualname__}"] = value
    return found


CLASSES = _exception_classes()
PUBLIC = {q: c for q, c in CLASSES.items() if not c.__name__.startswith("_")}


def test_the_walk_finds_the_errors_of_every_part() -> None:
    for q in ("aion.exceptions.AionError", "aion.codec._errors.CodecError", "aion.common.topics.TopicConfigError",
              "aion.common.settings.SettingsError", "aion.client._errors.TopicMissingError",
              "aion.cli._errors.CliError", "aion.testing._environment.WorkflowTaskFailedError",
              *CONTROL_FLOW):
        assert q in PUBLIC, q


def test_every_public_exception_derives_from_aion_error() -> None:
    strays = [
        f"{q}({', '.join(b.__name__ for b in c.__bases__)})"
        for q, c in sorted(PUBLIC.items())
        if not issubclass(c, AionError) and q not in CONTROL_FLOW
    ]
    assert not strays, (
        "exception classes that do not derive from aion.exceptions.AionError (make the builtin "
        "the second base, e.g. class E(AionError, ValueError)): " + "; ".join(strays)
    )


@pytest.mark.parametrize("qualname", sorted(CONTROL_FLOW))
def test_control_flow_exceptions_stay_outside_exception(qualname: str) -> None:
    cls = PUBLIC[qualname]
    assert issubclass(cls, BaseException) and not issubclass(cls, Exception), CONTROL_FLOW[qualname]


def test_cancelled_error_is_asyncios_own() -> None:
    from aion.exceptions import CancelledError

    assert CancelledError is asyncio.CancelledError


def test_client_errors_live_in_one_module() -> None:
    elsewhere = [q for q in PUBLIC if q.startswith("aion.client.") and not q.startswith("aion.client._errors.")]
    assert not elsewhere, f"client errors belong in aion/client/_errors.py: {elsewhere}"


@pytest.mark.parametrize(
    "qualname, builtin",
    [
        ("aion.codec._errors.CodecError", ValueError),
        ("aion.codec._errors.SchemaLoadError", ValueError),
        ("aion.converter.PayloadConversionError", ValueError),
        ("aion.common.settings.SettingsError", ValueError),
        ("aion.common.schedule_spec.ScheduleSpecError", ValueError),
        ("aion.worker._activities.ActivityRegistrationError", ValueError),
        ("aion.exceptions.InvalidArgumentError", ValueError),
        ("aion.client._errors.TopicMissingError", RuntimeError),
        ("aion.client._errors.NotAWorkflowError", TypeError),
        ("aion.client._errors.RPCTimeoutError", TimeoutError),
        ("aion.runtime._loop.WorkflowLoopError", RuntimeError),
        ("aion.activity._context.NotInActivityError", RuntimeError),
        ("aion.workflow._api.NotInWorkflowError", RuntimeError),
        ("aion.testing._checker.InvariantViolationError", AssertionError),
    ],
)
def test_former_builtin_errors_keep_their_builtin_base(qualname: str, builtin: type[BaseException]) -> None:
    assert issubclass(PUBLIC[qualname], builtin)


def test_old_import_places_still_work() -> None:
    from aion import client
    from aion.client import _errors, _events, _names, _replies, _schedules
    from aion.common import kafka as _kafka
    from aion.engine import _schedules as engine_schedules
    from aion.cli._errors import CliError

    assert _replies.TopicMissingError is client.TopicMissingError is _errors.TopicMissingError
    assert _events.ConsumerGroupActiveError is client.ConsumerGroupActiveError is _errors.ConsumerGroupActiveError
    assert _kafka.DeliveryError is _errors.DeliveryError
    assert _names.NotAWorkflowError is _errors.NotAWorkflowError
    assert _schedules.ScheduleNotFoundError is client.ScheduleNotFoundError is _errors.ScheduleNotFoundError
    assert _schedules.ScheduleAlreadyExistsError is client.ScheduleAlreadyExistsError
    assert _schedules.ScheduleSpecError is engine_schedules.ScheduleSpecError
    assert issubclass(CliError, __import__("click").ClickException)


def test_messages_print_as_before() -> None:
    """AionError's __str__ is ``self.message``: the classes with their own constructors keep
    the text they built."""
    from aion.cli._errors import CliError, ExitCode, UsageError
    from aion.codec import CodecError
    from aion.engine._txn import Aborted, Fenced

    assert str(CodecError("bad bytes", fingerprint="ab")) == "bad bytes"
    a = Aborted(3, "refused", 2)
    assert (str(a), a.partition, a.reason, a.record) == ("partition 3: refused", 3, "refused", 2)
    assert str(Fenced(1, "fenced")) == "partition 1: fenced"
    u = UsageError("bad argument")
    assert (str(u), u.format_message(), u.exit_code) == ("bad argument", "bad argument", 2)
    assert CliError("x", ExitCode.NOT_FOUND).exit_code == 5
