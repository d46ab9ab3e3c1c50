"""Deterministic ids derived from names: ``str(uuid.uuid5(uuid.NAMESPACE_URL, name))``, made
without building the two ``UUID`` objects (their validation in ``UUID.__init__`` was most of
the cost of a start's run id)."""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["uuid5_url"]

_URL = uuid.NAMESPACE_URL.bytes


def uuid5_url(name: str) -> str:
    """``str(uuid.uuid5(uuid.NAMESPACE_URL, name))``: SHA-1 of the namespace and the name, its
    first 16 bytes with the version (5) and the RFC 4122 variant bits set, as 8-4-4-4-12 hex."""
    b = bytearray(hashlib.sha1(_URL + name.encode("utf-8")).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
