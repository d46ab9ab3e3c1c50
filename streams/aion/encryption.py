"""Payload encryption: a converter that encrypts every payload before it leaves the process
(as Temporal's ``PayloadCodec``), AES-256-GCM from the ``cryptography`` package.

What is encrypted: every :class:`~aion.model.Payload` — workflow inputs and results, activity
inputs and results, signal, query and update arguments and answers, heartbeat details, failure
details. The events topic, the dead-letter topic, the engine's tables and the replies hold only
ciphertext: ``content_type`` ``binary/encrypted;key=<key id>`` and ``data`` = 12-byte nonce +
ciphertext of the original payload (its content type and bytes), authenticated with the key
id. What stays readable, because the engine must read it: ids, workflow/activity/signal
names, timer times, statuses, search attributes (the visibility index filters on them) and
failure messages and types (exception text: keep secrets out of it).

Keys: ``AION_PAYLOAD_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"`` — the first is the one
new payloads use; the others still decrypt what they encrypted (rotate by putting a new key
first; drop an old key once no history needs it). Every process that runs workflow or
activity code, and every client that reads results, needs the keys: the engine workers run
workflow code. With ``AION_PAYLOAD_KEYS`` set, :func:`aion.converter.default_converter` is an
:class:`EncryptingConverter` in every process (client, CLI, engine and activity workers).
``python -m aion.encryption new-key`` prints a fresh key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from typing import Any, Mapping

from .converter import DataConverter, PayloadConversionError
from .exceptions import AionError
from .model import Payload

__all__ = ["EncryptingConverter", "EncryptionKeyError", "ENCRYPTED", "keys_from_env", "new_key"]

ENCRYPTED = "binary/encrypted"
ENV = "AION_PAYLOAD_KEYS"


class EncryptionKeyError(AionError, ValueError):
    """A payload key setting that cannot be used (its text says which and how to fix it)."""


def new_key() -> str:
    """A fresh 256-bit key, base64 (for ``AION_PAYLOAD_KEYS``)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def keys_from_env(environ: Mapping[str, str] | None = None) -> list[tuple[str, bytes]] | None:
    """The keys of ``AION_PAYLOAD_KEYS`` (first = current), or None when it is not set."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not text:
        return None
    keys: list[tuple[str, bytes]] = []
    for item in text.split(","):
        kid, sep, b64 = item.strip().partition(":")
        if not sep or not kid:
            raise EncryptionKeyError(f"{ENV}: {item.strip()[:12]!r}... is not KEY_ID:BASE64_KEY; write "
                                     f"'k1:<base64 of 32 bytes>' (python -m aion.encryption new-key prints one)")
        try:
            key = base64.b64decode(b64, validate=True)
        except ValueError:
            raise EncryptionKeyError(f"{ENV}: the key of {kid!r} is not base64") from None
        if len(key) != 32:
            raise EncryptionKeyError(f"{ENV}: the key of {kid!r} has {len(key)} bytes; AES-256 needs 32")
        keys.append((kid, key))
    return keys


class EncryptingConverter(DataConverter):
    """A :class:`~aion.converter.DataConverter` whose payloads are AES-256-GCM ciphertext (see the
    module docs). ``keys``: ``[(key id, 32-byte key), ...]``, the first encrypts."""

    def __init__(self, keys: list[tuple[str, bytes]], inner: DataConverter | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise EncryptionKeyError("EncryptingConverter needs at least one key")
        self._inner = inner or DataConverter()
        self._current = keys[0][0]
        self._aead = {kid: AESGCM(key) for kid, key in keys}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "EncryptingConverter":
        keys = keys_from_env(environ)
        if keys is None:
            raise EncryptionKeyError(f"{ENV} is not set: nothing to encrypt with")
        return cls(keys)

    def encrypt(self, p: Payload) -> Payload:
        nonce = secrets.token_bytes(12)
        plain = json.dumps({"t": p.content_type}).encode() + b"\n" + p.data
        kid = self._current
        return Payload(f"{ENCRYPTED};key={kid}", nonce + self._aead[kid].encrypt(nonce, plain, kid.encode()))

    def decrypt(self, p: Payload) -> Payload:
        if not p.content_type.startswith(ENCRYPTED):
            return p
        kid = p.content_type.partition(";key=")[2]
        aead = self._aead.get(kid)
        if aead is None:
            raise PayloadConversionError(
                f"payload encrypted with key {kid!r}, which this process does not have: add it to {ENV}")
        from cryptography.exceptions import InvalidTag

        try:
            plain = aead.decrypt(p.data[:12], p.data[12:], kid.encode())
        except InvalidTag:
            raise PayloadConversionError(f"payload encrypted with key {kid!r} does not decrypt: it was altered, "
                                         f"or {ENV} holds another key under that id") from None
        head, _, data = plain.partition(b"\n")
        return Payload(json.loads(head)["t"], data)

    def to_payload(self, value: Any) -> Payload:
        return self.encrypt(self._inner.to_payload(value))

    def from_payload(self, payload: Payload, hint: Any = None) -> Any:
        return self._inner.from_payload(self.decrypt(payload), hint)


def _main(argv: list[str]) -> int:
    if argv[1:] == ["new-key"]:
        print(new_key())
        return 0
    print("usage: python -m aion.encryption new-key", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
