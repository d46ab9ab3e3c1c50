"""aion events tail, aion rebuild, aion replay check (issue 7)."""

from __future__ import annotations

import click  # noqa: F401

from ._main import cli  # noqa: F401
