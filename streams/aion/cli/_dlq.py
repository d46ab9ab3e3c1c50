"""aion dlq list|replay (issue 6)."""

from __future__ import annotations

import click  # noqa: F401

from ._main import cli  # noqa: F401
