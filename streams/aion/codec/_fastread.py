"""Compiled Avro readers: Avro binary straight to the model's dataclasses, in one pass.

fastavro's ``schemaless_reader`` reads the Avro body into dicts, which ``_convert.py`` then turns
into the model's dataclasses. Per record that costs two passes and fastavro's per-call set-up
(its schema is re-walked on every call), which dominated a rebuild (``aion rebuild`` decodes
every event of a topic) and is a twentieth of the engine's CPU per workflow on its command path.
:func:`compile_reader` compiles a *current* schema once into plain Python functions that read
the Avro binary body straight into the model's dataclasses.

``Codec`` takes this path for the common case only: Avro single-object encoding with the
current schema's fingerprint. Anything else (an older writer schema, the Schema Registry
framing, and any record the fast path cannot read completely) is read the slow way, so the
results and the errors are exactly the codec's.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable

from aion.model import Event

from ._compiling import RecordCompiler, _Unsupported

if TYPE_CHECKING:
    from ._codec import Codec

__all__ = ["compile_reader", "event_reader"]

#: ``read(data, position) -> (value, position after it)``
Reader = Callable[[bytes, int], tuple[Any, int]]




def _long_tail(d: bytes, p: int, b: int) -> tuple[int, int]:
    """The rest of a zig-zag varint whose first byte ``b`` (already consumed) had the high bit."""
    n = b & 0x7F
    shift = 7
    while True:
        b = d[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _size_tail(d: bytes, p: int, b: int) -> tuple[int, int]:
    """A length (zig-zag varint, first byte ``b`` consumed) that is not a one-byte even value."""
    if b < 0x80:
        n = (b >> 1) ^ -(b & 1)
    else:
        n, p = _long_tail(d, p, b)
    if n < 0:
        raise ValueError(f"negative length {n}")
    return n, p


class _Compiler(RecordCompiler):
    """Generates one reader function per named record: ``_r<i>(d, p) -> (object, p)``."""

    prefix = "_r"

    def __init__(self) -> None:
        super().__init__({
            "_long_tail": _long_tail, "_size_tail": _size_tail, "_unpack_d": struct.Struct("<d").unpack_from,
            "_unpack_f": struct.Struct("<f").unpack_from,
        })
        self.named: dict[str, Any] = {}  # record full name -> its schema
        self.tables: dict[str, list[str]] = {}  # union table name -> reader function names

    def record(self, schema: dict[str, Any]) -> str:
        """The reader function of a record (compiled on first sight)."""
        fn, new = self.begin_record(schema)
        if not new:
            return fn
        self.named[schema["name"]] = schema
        lines: list[str] = []
        args: list[str] = []
        for f in schema["fields"]:
            v = self.tmp()
            self.value(f["type"], v, lines, "    ")
            args.append(v)
        body = "\n".join(lines)
        self.src.append(f"def {fn}(d, p):\n{body}\n    return _C{fn}({', '.join(args)}), p\n")
        return fn

    def resolve_tables(self) -> None:
        """After exec: each union table is the tuple of its members' readers."""
        for table, funcs in self.tables.items():
            self.ns[table] = tuple(self.ns[f] for f in funcs)

    def _long(self, v: str, out: list[str], ind: str) -> None:
        out.append(f"{ind}b = d[p]; p += 1")
        out.append(f"{ind}if b < 128: {v} = (b >> 1) ^ -(b & 1)")
        out.append(f"{ind}else: {v}, p = _long_tail(d, p, b)")

    def _size(self, v: str, out: list[str], ind: str) -> None:
        out.append(f"{ind}b = d[p]; p += 1")
        out.append(f"{ind}if not b & 0x81: {v} = b >> 1")
        out.append(f"{ind}else: {v}, p = _size_tail(d, p, b)")

    def _blocks(self, n: str, out: list[str], ind: str) -> None:
        """The loop over an array's or map's blocks, down to the per-item ``for`` (its body
        goes at ``ind`` + 8 spaces): a count per block, 0 ends; a negative count is followed
        by the block's byte size (skipped)."""
        out.append(f"{ind}while True:")
        self._long(n, out, ind + "    ")
        out.append(f"{ind}    if {n} == 0: break")
        out.append(f"{ind}    if {n} < 0:")
        out.append(f"{ind}        {n} = -{n}")
        self._long(self.tmp(), out, ind + "        ")
        out.append(f"{ind}    for _ in range({n}):")

    def value(self, t: Any, v: str, out: list[str], ind: str) -> None:
        """Lines that read one value of Avro type ``t`` from ``d`` at ``p`` into variable ``v``."""
        if isinstance(t, list):
            self.union(t, v, out, ind)
            return
        if isinstance(t, dict):
            kind = t.get("type")
            if kind in ("record", "error"):
                out.append(f"{ind}{v}, p = {self.record(t)}(d, p)")
            elif kind == "array":
                n, x = self.tmp(), self.tmp()
                out.append(f"{ind}{v} = []")
                self._blocks(n, out, ind)
                self.value(t["items"], x, out, ind + "        ")
                out.append(f"{ind}        {v}.append({x})")
            elif kind == "map":
                n, k, x = self.tmp(), self.tmp(), self.tmp()
                out.append(f"{ind}{v} = {{}}")
                self._blocks(n, out, ind)
                self.value("string", k, out, ind + "        ")
                self.value(t["values"], x, out, ind + "        ")
                out.append(f"{ind}        {v}[{k}] = {x}")
            elif isinstance(kind, str) and kind not in ("enum", "fixed") and set(t) <= {"type", "doc"}:
                self.value(kind, v, out, ind)
            else:
                raise _Unsupported(f"Avro type {kind!r}")
            return
        if t in self.named:
            out.append(f"{ind}{v}, p = {self.funcs[t]}(d, p)")
        elif t == "null":
            out.append(f"{ind}{v} = None")
        elif t in ("long", "int"):
            self._long(v, out, ind)
        elif t in ("string", "bytes"):
            n = self.tmp()
            self._size(n, out, ind)
            # A length past the end slices short but moves p past the end for good: the
            # next read or the final length check fails (positions only grow).
            out.append(f"{ind}e = p + {n}")
            out.append(f"{ind}{v} = d[p:e]{'.decode()' if t == 'string' else ''}; p = e")
        elif t == "boolean":
            out.append(f"{ind}b = d[p]; p += 1")
            out.append(f"{ind}if b > 1: raise ValueError('bad boolean')")
            out.append(f"{ind}{v} = b == 1")
        elif t == "double":
            out.append(f"{ind}{v} = _unpack_d(d, p)[0]; p += 8")
        elif t == "float":
            out.append(f"{ind}{v} = _unpack_f(d, p)[0]; p += 4")
        else:
            raise _Unsupported(f"Avro type {t!r}")

    def union(self, branches: list[Any], v: str, out: list[str], ind: str) -> None:
        i = self.tmp()
        self._long(i, out, ind)
        if len(branches) > 3 and all(isinstance(b, dict) and b.get("type") in ("record", "error")
                                     or isinstance(b, str) and b in self.named for b in branches):
            # Many records (an event body): one table look-up instead of a chain of tests.
            funcs = [self.record(b) if isinstance(b, dict) else self.funcs[b] for b in branches]
            table = f"_U{len(self.tables)}"
            self.tables[table] = funcs
            out.append(f"{ind}if {i} < 0: raise IndexError('union index out of range')")
            out.append(f"{ind}{v}, p = {table}[{i}](d, p)")
            return
        for j, branch in enumerate(branches):
            out.append(f"{ind}{'if' if j == 0 else 'elif'} {i} == {j}:")
            self.value(branch, v, out, ind + "    ")
        out.append(f"{ind}else: raise IndexError('union index out of range')")


def compile_reader(schema: dict[str, Any], *, unwrap: bool = False) -> Reader | None:
    """The reader of the record ``schema`` (a current schema, logical types stripped), or None
    when the schema has a shape it does not compile. ``unwrap``: the record is a one-field
    envelope (the task message's ``body``) and the value read is that field's."""
    reader: Reader | None = _Compiler().compile(schema, unwrap, "v", "d, p", "\n    return v, p")
    return reader


def event_reader(codec: "Codec") -> Callable[[bytes], Event]:
    """A function that decodes an event record exactly as ``codec.decode_event`` does (the
    rebuild's reader). The codec reads the current schema's records with a compiled reader
    itself (see the module docs), so this is ``codec.decode_event``."""
    return codec.decode_event
