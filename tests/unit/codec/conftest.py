"""Fixtures of the codec tests (samples live in codec_samples.py)."""

from __future__ import annotations

import pytest

from aion.codec import Codec


@pytest.fixture(scope="session")
def codec() -> Codec:
    return Codec()
