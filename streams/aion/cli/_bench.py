"""aion bench (issue 8)."""

from __future__ import annotations

import click  # noqa: F401

from ._main import cli  # noqa: F401
