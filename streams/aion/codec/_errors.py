"""The codec's error type."""

from __future__ import annotations

from ..exceptions import AionError


class CodecError(AionError, ValueError):
    """Bytes that cannot be decoded (or a value that cannot be encoded) with the known schemas.

    ``fingerprint`` (hex of the 8 header bytes, as written) or ``schema_id`` (Schema Registry id)
    name the writer schema when the message got that far.
    """

    def __init__(
        self,
        message: str,
        *,
        fingerprint: str | None = None,
        schema_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.schema_id = schema_id


class SchemaLoadError(CodecError):
    """The ``schemas/`` directory, or one of its .avsc files, is missing or not a valid schema."""
