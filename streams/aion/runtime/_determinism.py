"""Non-deterministic calls in workflow code, named when the workflow is registered.

``random.random()``, ``datetime.now()``, ``time.time()`` or ``uuid.uuid4()`` in a workflow give
another value on every replay: the run goes on "fine" and may take another branch when it is
replayed after a restart. When a workflow class is registered (every engine worker's
``Registry``, ``WorkflowEnvironment``, ``aion replay``), its source is read and every call of one
of these functions is logged as a warning on ``aion.workflow.determinism``: the call, the file
and line, and its deterministic replacement; once per place and process. Names are resolved
through the workflow module's own imports (``import datetime as dt; dt.datetime.now()``, ``from
time import time; time()``). Nothing is patched and nothing runs differently (no sandbox: the
workflow's imports work as anywhere, and nothing slows the workflow's steps down).

What it does not see: calls in helper functions outside the class, and functions reached through
a variable. ``aion replay --strict`` catches what those feed into a command.
"""

from __future__ import annotations

import ast
import inspect
import logging
import random
import sys
import textwrap
from types import ModuleType
from typing import Any

log = logging.getLogger("aion.workflow.determinism")

_CLOCK = "workflow.now()"
#: Fully qualified function -> its deterministic replacement.
_REPLACEMENTS = {
    "datetime.datetime.now": _CLOCK, "datetime.datetime.utcnow": _CLOCK, "datetime.datetime.today": _CLOCK,
    "datetime.date.today": "workflow.now().date()",
    "time.time": "workflow.time()", "time.time_ns": "workflow.time()", "time.localtime": _CLOCK,
    "time.gmtime": _CLOCK,
    "uuid.uuid1": "workflow.uuid4()", "uuid.uuid4": "workflow.uuid4()",
    "os.urandom": "workflow.random().randbytes(n)", "secrets.token_hex": "workflow.random()",
}

_said: set[tuple[str, int]] = set()


def _qualified(obj: Any) -> str | None:
    if isinstance(obj, ModuleType):
        return obj.__name__
    if getattr(obj, "__self__", None) is getattr(random, "_inst", None) and callable(obj):
        return f"random.{obj.__name__}"  # from random import random, randint ...
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return None


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _replacement(name: str) -> str | None:
    if name in _REPLACEMENTS:
        return _REPLACEMENTS[name]
    if name.startswith("random.") and name.count(".") == 1 and name != "random.Random":
        return f"workflow.random().{name.split('.', 1)[1]}()"
    return None


def non_deterministic_calls(cls: type) -> list[tuple[str, int, str, str]]:
    """``(file, line, call, replacement)`` of each non-deterministic call in ``cls``'s source."""
    try:
        lines, first = inspect.getsourcelines(cls)
        file = inspect.getsourcefile(cls) or "?"
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):  # no source (built in a REPL, zipped without source)
        return []
    names = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts = _dotted(node.func)
        if not parts or parts[0] not in names:
            continue
        head = _qualified(names[parts[0]])
        if head is None:
            continue
        name = ".".join([head, *parts[1:]])
        instead = _replacement(name)
        if instead is not None:
            found.append((file, first + node.lineno - 1, ".".join(parts) + "()", instead))
    return found


def warn_non_deterministic(cls: type, workflow_type: str) -> None:
    """Log each non-deterministic call of ``cls`` once per place and process."""
    try:
        calls = non_deterministic_calls(cls)
    except Exception as exc:  # never let the check stop a registration
        log.debug("determinism check of %s skipped: %s", workflow_type, exc)
        return
    for file, line, call, instead in calls:
        if (file, line) in _said:
            continue
        _said.add((file, line))
        log.warning("workflow %s calls %s at %s:%d: not deterministic, a replay would see another value; "
                    "use %s", workflow_type, call, file, line, instead)
