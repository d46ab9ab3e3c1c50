"""The Avro codec: model dataclasses <-> framed Avro bytes."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from io import BytesIO
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

from fastavro import schemaless_reader, schemaless_writer

from aion import model
from aion.model import ActivityTask, CancelActivityTask, Command, DeploymentRecord, Event, EventKey, Reply

from ._convert import Converter, collect_records
from ._errors import CodecError
from ._fastread import Reader, compile_reader
from ._fastwrite import Writer, record_writer
from ._schemas import ROOT_SCHEMAS, SchemaSet, WriterSchema, _strip_logical_types, load_schema_set

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

#: Avro single-object encoding: 2-byte marker, 8-byte CRC-64-AVRO fingerprint (little-endian).
SINGLE_OBJECT_MARKER = b"\xc3\x01"
_SO_HEADER_LEN = 10
#: Confluent wire format: magic byte 0, 4-byte big-endian schema id.
CONFLUENT_MAGIC = 0
_CF_HEADER_LEN = 5

Task = Union[ActivityTask, CancelActivityTask]

_ROOT_CLASSES: dict[str, type] = {
    "event": Event,
    "event_key": EventKey,
    "command": Command,
    "reply": Reply,
    "deployment": DeploymentRecord,
}
_TASK_MEMBERS: tuple[type, ...] = model.TASK_TYPES

#: Registry subjects per kind, after the subject prefix (TopicNameStrategy-like).
_SUBJECTS: dict[str, str] = {
    "event": "events-value",
    "event_key": "events-key",
    "command": "commands-value",
    "reply": "replies-value",
    "task": "activity-tasks-value",
    "deployment": "deployments-value",
}


def _java_long(fingerprint: bytes) -> int:
    return int.from_bytes(fingerprint, "little", signed=True)


@lru_cache(maxsize=16)
def _converter(schemas: SchemaSet) -> Converter:
    """Compiled conversions for one schema set (checked against its current records)."""
    records: dict[str, dict[str, Any]] = {}
    for ws in schemas.current.values():
        collect_records(ws.parsed, records)
    names: dict[type, str] = {}
    for fullname in records:
        cls = getattr(model, fullname.rsplit(".", 1)[1], None)
        if isinstance(cls, type):
            names[cls] = fullname
    return Converter(names, records)


@lru_cache(maxsize=16)
def _compiled(schemas: SchemaSet) -> tuple[dict[str, Writer], dict[str, tuple[bytes, Reader]]]:
    """The compiled writer and reader (with the single-object header it reads) of each kind's
    current schema, where the schema compiles; once per schema set (compiling takes ~50 ms)."""
    writers: dict[str, Writer] = {}
    readers: dict[str, tuple[bytes, Reader]] = {}
    for kind, ws in schemas.current.items():
        schema = _strip_logical_types(json.loads(ws.schema_json))
        writer = record_writer(schema, unwrap=kind == "task")
        if writer is not None:
            writers[kind] = writer
        reader = compile_reader(schema, unwrap=kind == "task")
        if reader is not None:
            readers[kind] = (SINGLE_OBJECT_MARKER + ws.fingerprint, reader)
    return writers, readers


class Codec:
    """Encodes and decodes Aion's Kafka records (events, event keys, commands, replies, tasks).

    By default each message is Avro single-object encoded: ``C3 01`` + the writer schema's
    CRC-64-AVRO fingerprint (8 bytes, little-endian) + the Avro binary body. With a
    ``registry_url`` (or ``registry_client``) it uses the Confluent wire format instead: ``00`` +
    4-byte big-endian schema id + body, registering the current schemas under
    ``<subject_prefix>.<events|commands|replies|activity-tasks>-value`` (and ``.events-key``).
    Decoding accepts both framings.

    Older writer schemas are found by fingerprint in ``schemas/history/<version>/`` and in
    ``extra_schemas_dirs`` (overlays over ``schemas/``: a file there replaces the current file of
    the same name) and are resolved to the current schemas (Avro schema evolution).
    """

    def __init__(
        self,
        *,
        schemas_dir: str | os.PathLike[str] | None = None,
        extra_schemas_dirs: Iterable[str | os.PathLike[str]] = (),
        registry_url: str | None = None,
        registry_client: "SchemaRegistryClient | None" = None,
        registry_config: dict[str, Any] | None = None,
        subject_prefix: str = "aion",
    ) -> None:
        self._schemas = load_schema_set(schemas_dir, extra_schemas_dirs)
        conv = _converter(self._schemas)
        self._current: dict[str, WriterSchema] = dict(self._schemas.current)
        self._by_fp = self._schemas.by_fingerprint

        self._enc: dict[str, Callable[[Any], Any]] = {k: conv.encoder(c) for k, c in _ROOT_CLASSES.items()}
        self._dec: dict[str, Callable[[Any], Any]] = {k: conv.decoder(c) for k, c in _ROOT_CLASSES.items()}
        task_enc = conv.union_encoder(_TASK_MEMBERS)
        task_dec = conv.union_decoder(_TASK_MEMBERS)
        self._enc["task"] = lambda t: {"body": task_enc(t)}
        self._dec["task"] = lambda d: task_dec(d["body"])
        # The compiled one-pass writers and readers of the current schemas (_fastwrite.py,
        # _fastread.py): the common case's fast path; everything else takes the way above.
        fast_enc, fast_dec = _compiled(self._schemas)
        self._fast_enc: dict[str, Writer] = dict(fast_enc)
        self._fast_dec: dict[str, tuple[bytes, Reader]] = dict(fast_dec)

        # Registry mode.
        if registry_client is None and registry_url is not None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            conf = dict(registry_config or {})
            conf["url"] = registry_url
            registry_client = SchemaRegistryClient.new_client(conf)
        self._registry = registry_client
        self._subject_prefix = subject_prefix
        self._by_id: dict[int, WriterSchema] = {}
        self._headers: dict[str, bytes] = {}
        if self._registry is None:
            self._headers = {k: SINGLE_OBJECT_MARKER + ws.fingerprint for k, ws in self._current.items()}

    # ------------------------------------------------------------------ public API

    @property
    def uses_registry(self) -> bool:
        """Whether messages are written in the Confluent Schema Registry wire format."""
        return self._registry is not None

    def schema_json(self, kind: str) -> str:
        """The current writer schema of ``kind`` as self-contained Avro JSON.

        ``kind``: ``event``, ``event_key``, ``command``, ``reply`` or ``task``.
        """
        return self._writer(kind).schema_json

    def fingerprint(self, kind: str) -> bytes:
        """The CRC-64-AVRO fingerprint (8 bytes, little-endian) of the current ``kind`` schema."""
        return self._writer(kind).fingerprint

    def subject(self, kind: str) -> str:
        """The Schema Registry subject the ``kind`` schema is registered under."""
        self._writer(kind)
        return f"{self._subject_prefix}.{_SUBJECTS[kind]}"

    def encode_event(self, event: Event) -> bytes:
        return self._encode("event", event)

    def decode_event(self, data: bytes) -> Event:
        return self._decode("event", data)

    def encode_event_key(self, key: EventKey) -> bytes:
        return self._encode("event_key", key)

    def decode_event_key(self, data: bytes) -> EventKey:
        return self._decode("event_key", data)

    def encode_command(self, command: Command) -> bytes:
        return self._encode("command", command)

    def decode_command(self, data: bytes) -> Command:
        return self._decode("command", data)

    def encode_reply(self, reply: Reply) -> bytes:
        return self._encode("reply", reply)

    def decode_reply(self, data: bytes) -> Reply:
        return self._decode("reply", data)

    def encode_deployment(self, record: DeploymentRecord) -> bytes:
        """A record of the deployments topic (a deployed package or a type's routing)."""
        return self._encode("deployment", record)

    def decode_deployment(self, data: bytes) -> DeploymentRecord:
        return self._decode("deployment", data)

    def encode_task(self, task: Task) -> bytes:
        return self._encode("task", task)

    def decode_task(self, data: bytes) -> Task:
        return self._decode("task", data)

    # ------------------------------------------------------------------ internals

    def _writer(self, kind: str) -> WriterSchema:
        try:
            return self._current[kind]
        except KeyError:
            raise CodecError(f"unknown message kind {kind!r}; use one of {sorted(ROOT_SCHEMAS)}") from None

    def _encode(self, kind: str, value: Any) -> bytes:
        header = self._headers.get(kind) or self._register(kind)
        fast = self._fast_enc.get(kind)
        if fast is not None:
            out = [header]
            try:
                fast(value, out.append)
                return b"".join(out)
            except Exception:  # noqa: BLE001 - the way below writes it or says what is wrong
                pass
        ws = self._current[kind]
        try:
            record = self._enc[kind](value)
            buf = BytesIO()
            buf.write(header)
            schemaless_writer(buf, ws.parsed, record)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(
                f"cannot encode {type(value).__name__} as {ws.name}: {exc}. "
                "Check the field types against aion.model."
            ) from exc
        return buf.getvalue()

    def _decode(self, kind: str, data: bytes) -> Any:
        fast = self._fast_dec.get(kind)
        if fast is not None and type(data) is bytes and data.startswith(fast[0]):
            try:
                value, end = fast[1](data, _SO_HEADER_LEN)
                if end == len(data):
                    return value
            except Exception:  # noqa: BLE001 - the way below reads it again and says what is wrong
                pass
        reader = self._current[kind]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"cannot decode {reader.name} from {type(data).__name__}: expected bytes")
        if len(data) >= _SO_HEADER_LEN and data[0] == 0xC3 and data[1] == 0x01:
            writer = self._by_fp.get(bytes(data[2:_SO_HEADER_LEN]))
            if writer is None:
                fp = bytes(data[2:_SO_HEADER_LEN])
                raise CodecError(
                    f"cannot decode {reader.name}: the writer schema with CRC-64-AVRO fingerprint "
                    f"{fp.hex()} (Java long {_java_long(fp)}) is not a known schema (known: "
                    f"{', '.join(sorted(w.fingerprint.hex() + ' ' + w.name for w in self._by_fp.values()))}). "
                    "If it is an older version of Aion's schemas, keep its .avsc files under "
                    "schemas/history/<version>/ or pass Codec(extra_schemas_dirs=[...]); "
                    "otherwise the record was not written by Aion.",
                    fingerprint=fp.hex(),
                )
            offset = _SO_HEADER_LEN
        elif len(data) >= _CF_HEADER_LEN and data[0] == CONFLUENT_MAGIC:
            writer = self._registry_schema(int.from_bytes(data[1:_CF_HEADER_LEN], "big"), reader.name)
            offset = _CF_HEADER_LEN
        else:
            raise CodecError(
                f"cannot decode {reader.name}: {len(data)} bytes starting with "
                f"{bytes(data[:10]).hex() or '(nothing)'} are neither Avro single-object encoded "
                "(c301 + fingerprint) nor in the Schema Registry wire format (00 + schema id). "
                "Was the record written by Aion's codec?"
            )
        if writer.name != reader.name:
            raise CodecError(
                f"expected {reader.name} but the bytes hold {writer.name} "
                f"(fingerprint {writer.fingerprint.hex()}): wrong topic or wrong decode method?",
                fingerprint=writer.fingerprint.hex(),
            )
        try:
            buf = BytesIO(data)
            buf.seek(offset)
            record = schemaless_reader(
                buf,
                writer.parsed,
                None if writer is reader else reader.parsed,
                return_record_name=True,
                return_record_name_override=True,
            )
            if buf.tell() != len(data):
                raise CodecError(
                    f"corrupt {reader.name} record: {len(data) - buf.tell()} bytes left after the "
                    f"body (fingerprint {writer.fingerprint.hex()})",
                    fingerprint=writer.fingerprint.hex(),
                )
            return self._dec[kind](record)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(
                f"corrupt {reader.name} record ({len(data)} bytes, writer schema "
                f"{writer.fingerprint.hex()} from {writer.source}): "
                f"{type(exc).__name__}: {exc}",
                fingerprint=writer.fingerprint.hex(),
            ) from exc

    # ------------------------------------------------------------------ registry

    def _register(self, kind: str) -> bytes:
        if self._registry is None:  # pragma: no cover - headers are pre-built without a registry
            raise AssertionError(kind)
        from confluent_kafka.schema_registry import Schema

        ws = self._current[kind]
        subject = self.subject(kind)
        try:
            schema_id = self._registry.register_schema(subject, Schema(ws.schema_json, "AVRO"))
        except Exception as exc:
            raise CodecError(
                f"cannot register {ws.name} under subject {subject} in the schema registry: {exc}. "
                "Check the registry URL/credentials, and its compatibility setting if an older "
                "version is registered there."
            ) from exc
        self._by_id[schema_id] = ws
        header = bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
        self._headers[kind] = header
        return header

    def _registry_schema(self, schema_id: int, expected: str) -> WriterSchema:
        ws = self._by_id.get(schema_id)
        if ws is not None:
            return ws
        if self._registry is None:
            raise CodecError(
                f"cannot decode {expected}: the bytes are in the Schema Registry wire format "
                f"(schema id {schema_id}) but this codec has no registry; configure "
                "AION_SCHEMA_REGISTRY_URL / Codec(registry_url=...)",
                schema_id=schema_id,
            )
        try:
            registered = self._registry.get_schema(schema_id)
        except Exception as exc:
            raise CodecError(
                f"cannot decode {expected}: schema id {schema_id} is not in the schema registry "
                f"({exc}). Is this codec using the same registry as the producer?",
                schema_id=schema_id,
            ) from exc
        if (registered.schema_type or "AVRO") != "AVRO" or not registered.schema_str:
            raise CodecError(
                f"cannot decode {expected}: schema id {schema_id} is a "
                f"{registered.schema_type} schema, not Avro",
                schema_id=schema_id,
            )
        try:
            parsed = WriterSchema.from_json(json.loads(registered.schema_str), f"registry schema id {schema_id}")
        except Exception as exc:
            raise CodecError(
                f"cannot decode {expected}: registry schema id {schema_id} is not a usable "
                f"self-contained Avro record schema: {exc}",
                schema_id=schema_id,
            ) from exc
        ws = self._by_fp.get(parsed.fingerprint, parsed)
        self._by_id[schema_id] = ws
        return ws
