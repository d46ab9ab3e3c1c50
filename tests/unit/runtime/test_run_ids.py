"""The runtime's deterministic ids (run ids of starts, continue-as-new and retry/cron runs,
long children's ids) are ``str(uuid.uuid5(uuid.NAMESPACE_URL, name))``, made without the
``UUID`` objects: the same text for every kind of name."""

from __future__ import annotations

import random
import uuid

from aion.runtime._run_ids import uuid5_url


def test_the_ids_are_uuid5s_text() -> None:
    rng = random.Random(5)
    names = ["", "aion:w:c", "aion:order-1:1f6a7c9e-6b0e-4d1a-9c53-0f0b3d2c1e88", "é日本\U0001f600", "x" * 5000]
    names += ["".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 60))) for _ in range(500)]
    for name in names:
        assert uuid5_url(name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name)), name
