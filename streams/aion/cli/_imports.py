"""Importing the user's workflow and activity modules the way ``python -m`` does.

A console script's ``sys.path`` starts with the folder of the script (``…/bin``), not the
current directory, so ``aion worker --workflows myapp.workflows`` run next to ``myapp/`` could
not find it. The current directory goes first on the path, as with ``python -m`` and
``faust -A``. A failed import names its real cause: a module that is not there, a dependency
of it that is missing, or an error raised while it ran.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType
from typing import Iterable

from ._errors import UsageError


def put_cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_user_modules(names: Iterable[str], kind: str) -> list[ModuleType]:
    """Import ``names`` (``kind``: "workflow" or "activity", for the messages), or raise
    :class:`UsageError` saying why one of them cannot be imported."""
    put_cwd_on_path()
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and (name == missing or name.startswith(missing + ".")):
                raise UsageError(
                    f"cannot import {kind} module {name!r}: there is no module {missing!r} in the current "
                    f"directory ({os.getcwd()}) or among the installed packages. Run aion from the folder "
                    f"that holds {missing.split('.')[0]}/ (or {missing.split('.')[0]}.py), or install your "
                    "project into this environment."
                ) from None
            raise UsageError(
                f"cannot import {kind} module {name!r}: it imports {missing!r}, which is not installed "
                f"in this environment ({sys.executable}); install it (pip install ...) and start again."
            ) from None
        except Exception as exc:
            where = _where(exc)
            raise UsageError(
                f"cannot import {kind} module {name!r}: importing it raised {type(exc).__name__}: {exc}"
                + (f" ({where})" if where else "")
            ) from None
    return modules


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc`` (or of a SyntaxError's own position)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return ""  # str(SyntaxError) already says file and line
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"
