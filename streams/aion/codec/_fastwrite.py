"""Compiled Avro writers: model dataclasses straight to Avro binary, in one pass.

``Codec`` encodes a record in two passes: the model's dataclasses become fastavro's dicts
(``_convert.py``), then fastavro's ``schemaless_writer`` walks them with its per-call set-up
(schema look-ups, a buffer, the named types). On the engine's batch path — every event, its
key, every task and reply it writes — that was about a tenth of the engine's CPU per
workflow (issue 19). :func:`record_writer` compiles a *current* schema once into plain
Python functions that write the dataclasses' fields as Avro binary directly.

Avro's binary encoding of a value is unique (zig-zag varints, one block per non-empty array
or map, the union branch's index), so the bytes are the ones fastavro writes; the unit tests
compare both on samples of every model type. Only values of the shapes the model declares
take this path: anything the generated code cannot write (a wrong type, a union member it
does not know, an integer out of range) raises inside it, and ``Codec`` then encodes the
value the slow way — which writes it or raises the codec's own error, exactly as before.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from ._compiling import RecordCompiler, _Unsupported

__all__ = ["Writer", "record_writer"]

#: ``write(value, append)``: appends the Avro binary of ``value`` with ``append``.
Writer = Callable[[Any, Callable[[bytes], Any]], None]

#: zig-zag varints of 0..63 (one byte each): lengths and small longs, the common case.
_SMALL = tuple(bytes([n << 1]) for n in range(64))
_MIN_LONG, _MAX_LONG = -(1 << 63), (1 << 63) - 1




def _long(n: int) -> bytes:
    """The zig-zag varint of a long (Avro ``long``/``int``)."""
    if not _MIN_LONG <= n <= _MAX_LONG:
        raise OverflowError(f"{n} is out of the range of an Avro long")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class _Compiler(RecordCompiler):
    """Generates one writer per named record: ``_w<i>(o, a)`` appends ``o``'s encoding with
    ``a`` (a list's ``append``)."""

    prefix = "_w"

    def __init__(self) -> None:
        super().__init__({"_long": _long, "_S": _SMALL, "_pack_d": struct.Struct("<d").pack,
                          "_pack_f": struct.Struct("<f").pack})

    def record(self, schema: dict[str, Any]) -> str:
        """The writer function of a record (compiled on first sight)."""
        fn, new = self.begin_record(schema)
        if not new:
            return fn
        lines: list[str] = []
        for f in schema["fields"]:
            v = self.tmp()
            lines.append(f"    {v} = o.{f['name']}")
            self.value(f["type"], v, lines, "    ")
        self.src.append(f"def {fn}(o, a):\n" + ("\n".join(lines) or "    pass") + "\n")
        return fn

    def _long(self, v: str, out: list[str], ind: str) -> None:
        out.append(f"{ind}a(_S[{v}] if 0 <= {v} < 64 else _long({v}))")

    def value(self, t: Any, v: str, out: list[str], ind: str) -> None:
        """Lines that write value ``v`` of Avro type ``t``."""
        if isinstance(t, list):
            self.union(t, v, out, ind)
            return
        if isinstance(t, dict):
            kind = t.get("type")
            if kind in ("record", "error"):
                out.append(f"{ind}{self.record(t)}({v}, a)")
            elif kind in ("array", "map"):
                x = self.tmp()
                out.append(f"{ind}if {v}:")
                self._long(f"len({v})", out, ind + "    ")
                if kind == "array":
                    out.append(f"{ind}    for {x} in {v}:")
                else:
                    k = self.tmp()
                    out.append(f"{ind}    for {k}, {x} in {v}.items():")
                    self.value("string", k, out, ind + "        ")
                self.value(t["items" if kind == "array" else "values"], x, out, ind + "        ")
                out.append(f"{ind}a(b'\\x00')")
            elif isinstance(kind, str) and kind not in ("enum", "fixed") and set(t) <= {"type", "doc"}:
                self.value(kind, v, out, ind)
            else:
                raise _Unsupported(f"Avro type {kind!r}")
            return
        if t in self.funcs:
            out.append(f"{ind}{self.funcs[t]}({v}, a)")
        elif t == "null":
            out.append(f"{ind}if {v} is not None: raise TypeError('null expected')")
        elif t in ("long", "int"):
            self._long(v, out, ind)
        elif t == "string":
            s = self.tmp()
            out.append(f"{ind}{s} = {v}.encode()")
            self._long(f"len({s})", out, ind)
            out.append(f"{ind}a({s})")
        elif t == "bytes":
            out.append(f"{ind}if type({v}) is not bytes: raise TypeError('bytes expected')")
            self._long(f"len({v})", out, ind)
            out.append(f"{ind}a({v})")
        elif t == "boolean":
            out.append(f"{ind}a(b'\\x01' if {v} else b'\\x00')")
        elif t == "double":
            out.append(f"{ind}a(_pack_d({v}))")
        elif t == "float":
            out.append(f"{ind}a(_pack_f({v}))")
        else:
            raise _Unsupported(f"Avro type {t!r}")

    def _is_record(self, b: Any) -> bool:
        return isinstance(b, dict) and b.get("type") in ("record", "error") or isinstance(b, str) and b in self.funcs

    def union(self, branches: list[Any], v: str, out: list[str], ind: str) -> None:
        """``["null", X]`` (an optional value) and unions of records (an event's body, a task),
        optionally with ``"null"`` first: the branch's index, then the value."""
        rest = branches[1:] if branches and branches[0] == "null" else branches
        if len(branches) == 2 and len(rest) == 1:
            out.append(f"{ind}if {v} is None: a(b'\\x00')")
            out.append(f"{ind}else:")
            out.append(f"{ind}    a(b'\\x02')")
            self.value(rest[0], v, out, ind + "    ")
            return
        if not rest or not all(self._is_record(b) for b in rest):
            raise _Unsupported(f"union {branches!r}")
        table = f"_U{self.tmp()}"
        base = len(branches) - len(rest)
        entries = {}
        for j, b in enumerate(rest, start=base):
            fn = self.record(b) if isinstance(b, dict) else self.funcs[b]
            entries[fn] = (_SMALL[j] if j < 64 else _long(j), fn)
        self.ns[f"{table}_src"] = entries  # function names until exec; resolved by _resolve_tables
        if base:
            out.append(f"{ind}if {v} is None: a(b'\\x00')")
            out.append(f"{ind}else:")
            ind += "    "
        i, w = self.tmp(), self.tmp()
        out.append(f"{ind}{i}, {w} = {table}[type({v})]")
        out.append(f"{ind}a({i}); {w}({v}, a)")

    def resolve_tables(self) -> None:
        """After exec: each union table maps the member's class to (index bytes, writer)."""
        for key in [k for k in self.ns if k.endswith("_src")]:
            entries = self.ns.pop(key)
            self.ns[key[:-4]] = {self.ns[f"_C{fn}"]: (idx, self.ns[fn]) for fn, (idx, _) in entries.items()}


def record_writer(schema: dict[str, Any], *, unwrap: bool = False) -> Writer | None:
    """A function ``write(value, append)`` that appends the Avro binary of a model value of the
    record ``schema`` (a current schema, logical types stripped), or None when the schema has
    a shape it does not compile. ``unwrap``: the record is a one-field envelope (the task
    message's ``body``) and the value is that field's."""
    writer: Writer | None = _Compiler().compile(schema, unwrap, "o", "o, a", "")
    return writer
