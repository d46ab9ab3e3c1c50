"""The one conversion between model dataclasses and fastavro's Avro values, in each direction.

Driven by ``dataclasses.fields`` and the type hints of ``aion.model``, checked once against the
Avro record of the same name, then compiled per class into a plain function (no per-call
introspection on the hot path). Shapes understood:

===========================  =====================================  ============================
Python hint                  Avro type                              written / read as
===========================  =====================================  ============================
str int float bool bytes     string long double boolean bytes       as is
X | None                     ["null", X]                            None or X
list[X] / dict[str, X]       array / map                            list / dict
a dataclass                  the record of the same (short) name    dict
Union[D1, D2, ...]           union of those records                 (full name, dict) tuples
===========================  =====================================  ============================

Records inside unions are written with fastavro's tuple notation ``(full name, dict)`` and read
back with ``return_record_name=True`` (``return_record_name_override=True`` keeps
``["null", Record]`` a plain dict), so the right dataclass is chosen without guessing.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, Callable

from ._errors import CodecError

_PRIMITIVES: dict[type, tuple[str, ...]] = {
    str: ("string",),
    int: ("long", "int"),
    float: ("double", "float"),
    bool: ("boolean",),
    bytes: ("bytes",),
}


# ------------------------------------------------------------------ shapes of type hints


@dataclasses.dataclass(frozen=True)
class _Shape:
    kind: str  # prim | record | optional | list | map | union
    py: Any = None  # prim: the type; record: the class
    inner: "_Shape | None" = None
    members: tuple[type, ...] = ()

    @property
    def is_plain(self) -> bool:
        """Whether Python and Avro values are the same object (no conversion needed)."""
        if self.kind == "prim":
            return True
        if self.kind in ("optional", "list", "map"):
            assert self.inner is not None
            return self.inner.is_plain
        return False


def _shape(hint: Any, where: str) -> _Shape:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            inner = rest[0] if len(rest) == 1 else typing.Union[rest]
            return _Shape("optional", inner=_shape(inner, where))
        if all(dataclasses.is_dataclass(a) for a in rest):
            return _Shape("union", members=rest)
        raise TypeError(f"{where}: unions other than of dataclasses are not supported: {hint}")
    if origin is list:
        return _Shape("list", inner=_shape(args[0], where))
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"{where}: Avro maps need str keys, got {hint}")
        return _Shape("map", inner=_shape(args[1], where))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _Shape("record", py=hint)
    if hint in _PRIMITIVES:
        return _Shape("prim", py=hint)
    raise TypeError(f"{where}: no Avro mapping for {hint!r}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


# ------------------------------------------------------------------ Avro side


def collect_records(schema: Any, out: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Every record definition in a parsed (expanded) schema, by full name."""
    if out is None:
        out = {}
    if isinstance(schema, list):
        for s in schema:
            collect_records(s, out)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "error"):
            out.setdefault(schema["name"], schema)
            for f in schema["fields"]:
                collect_records(f["type"], out)
        elif t == "array":
            collect_records(schema["items"], out)
        elif t == "map":
            collect_records(schema["values"], out)
        elif isinstance(t, (dict, list)):
            collect_records(t, out)
    return out


def _type_label(avro: Any) -> str:
    if isinstance(avro, str):
        return avro
    if isinstance(avro, list):
        return "[" + ", ".join(_type_label(a) for a in avro) + "]"
    t = avro.get("type")
    if t in ("record", "error", "enum", "fixed"):
        return str(avro["name"])
    if t == "array":
        return f"array<{_type_label(avro['items'])}>"
    if t == "map":
        return f"map<{_type_label(avro['values'])}>"
    return _type_label(t)


# ------------------------------------------------------------------ compiler


class Converter:
    """Compiled encoders/decoders for every dataclass reachable from some root classes.

    ``names`` maps each dataclass to the full name of its Avro record; ``records`` holds the
    Avro record definitions (from the current schemas) used to check that they mirror the model.
    """

    def __init__(self, names: dict[type, str], records: dict[str, dict[str, Any]]) -> None:
        self._names = names
        self._records = records
        self._ns: dict[str, Any] = {"_CodecError": CodecError}
        self._done: set[type] = set()
        self._unions: dict[tuple[type, ...], tuple[str, str]] = {}
        self._pending: list[type] = []

    # public ---------------------------------------------------------------

    def encoder(self, cls: type) -> Callable[[Any], dict[str, Any]]:
        self._compile(cls)
        return self._ns[self._enc_name(cls)]

    def decoder(self, cls: type) -> Callable[[dict[str, Any]], Any]:
        self._compile(cls)
        return self._ns[self._dec_name(cls)]

    def union_encoder(self, members: tuple[type, ...]) -> Callable[[Any], tuple[str, dict[str, Any]]]:
        for m in members:
            self._compile(m)
        return self._ns[self._union(members)[0]]

    def union_decoder(self, members: tuple[type, ...]) -> Callable[[tuple[str, dict[str, Any]]], Any]:
        for m in members:
            self._compile(m)
        return self._ns[self._union(members)[1]]

    # names in the generated namespace -------------------------------------

    @staticmethod
    def _enc_name(cls: type) -> str:
        return f"_enc_{cls.__module__.replace('.', '_')}_{cls.__qualname__}"

    @staticmethod
    def _dec_name(cls: type) -> str:
        return f"_dec_{cls.__module__.replace('.', '_')}_{cls.__qualname__}"

    def _fullname(self, cls: type) -> str:
        try:
            return self._names[cls]
        except KeyError:
            raise CodecError(
                f"{cls.__module__}.{cls.__qualname__} has no Avro record in schemas/: add "
                f"<namespace>.{cls.__name__}.avsc mirroring its fields"
            ) from None

    def _union(self, members: tuple[type, ...]) -> tuple[str, str]:
        """Names of the (encode, decode) helpers for a union of records, created on demand."""
        key = members
        if key not in self._unions:
            i = len(self._unions)
            enc_table = f"_UE{i}"
            dec_table = f"_UD{i}"
            labels = ", ".join(m.__name__ for m in members)
            src = (
                f"def _uenc{i}(x):\n"
                f"    try:\n"
                f"        n, f = {enc_table}[type(x)]\n"
                f"    except KeyError:\n"
                f"        raise _CodecError('cannot encode ' + type(x).__name__ + "
                f"': expected one of {labels}') from None\n"
                f"    return (n, f(x))\n"
                f"def _udec{i}(x):\n"
                f"    return {dec_table}[x[0]](x[1])\n"
            )
            exec(src, self._ns)  # noqa: S102 - generated from type hints, no user input
            self._ns[enc_table] = {}
            self._ns[dec_table] = {}
            self._unions[key] = (f"_uenc{i}", f"_udec{i}")
            for m in members:
                self._pending.append(m)
            self._fill_union_tables()
        return self._unions[key]

    def _fill_union_tables(self) -> None:
        # Filled lazily: a union's members may still be compiling (recursive types).
        for members, (uenc, _udec) in self._unions.items():
            i = uenc[len("_uenc"):]
            enc_t, dec_t = self._ns[f"_UE{i}"], self._ns[f"_UD{i}"]
            for m in members:
                en, dn = self._enc_name(m), self._dec_name(m)
                if en in self._ns and m not in enc_t:
                    enc_t[m] = (self._fullname(m), self._ns[en])
                    dec_t[self._fullname(m)] = self._ns[dn]

    # compile one class (and everything it reaches) --------------------------

    def _compile(self, cls: type) -> None:
        if cls in self._done:
            return
        self._pending.append(cls)
        while self._pending:
            c = self._pending.pop()
            if c in self._done:
                continue
            self._done.add(c)
            self._compile_one(c)
        self._fill_union_tables()

    def _compile_one(self, cls: type) -> None:
        fullname = self._fullname(cls)
        record = self._records.get(fullname)
        if record is None:
            raise CodecError(f"schemas/ has no record {fullname} for {cls.__qualname__}")
        avro_fields = record["fields"]
        py_fields = dataclasses.fields(cls)
        py_names = [f.name for f in py_fields]
        avro_names = [f["name"] for f in avro_fields]
        if py_names != avro_names:
            raise CodecError(
                f"Avro record {fullname} does not mirror {cls.__qualname__}: fields "
                f"{avro_names} vs dataclass fields {py_names}; edit schemas/{fullname}.avsc"
            )
        hints = _hints(cls)
        self._ns[f"_cls_{id(cls)}"] = cls
        enc_items, dec_items = [], []
        for f, af in zip(py_fields, avro_fields):
            where = f"{cls.__qualname__}.{f.name}"
            shape = _shape(hints[f.name], where)
            self._check(shape, af["type"], f"{fullname}.{f.name}")
            enc_items.append(f"{f.name!r}: {self._enc_expr(shape, 'o.' + f.name)}")
            dec_items.append(f"{f.name}={self._dec_expr(shape, f'd[{f.name!r}]')}")
        src = (
            f"def {self._enc_name(cls)}(o):\n"
            f"    return {{{', '.join(enc_items)}}}\n"
            f"def {self._dec_name(cls)}(d):\n"
            f"    return _cls_{id(cls)}({', '.join(dec_items)})\n"
        )
        exec(src, self._ns)  # noqa: S102 - generated from type hints, no user input

    def _enc_expr(self, s: _Shape, v: str) -> str:
        if s.is_plain:
            return v
        if s.kind == "record":
            self._pending.append(s.py)
            return f"{self._enc_name(s.py)}({v})"
        if s.kind == "optional":
            assert s.inner is not None
            inner = s.inner
            if inner.kind == "record":  # in a union with null: tuple notation names the branch
                self._pending.append(inner.py)
                body = f"({self._fullname(inner.py)!r}, {self._enc_name(inner.py)}({v}))"
            else:
                body = self._enc_expr(inner, v)
            return f"(None if {v} is None else {body})"
        if s.kind == "list":
            assert s.inner is not None
            return f"[{self._enc_expr(s.inner, '_x')} for _x in {v}]"
        if s.kind == "map":
            assert s.inner is not None
            return f"{{_k: {self._enc_expr(s.inner, '_x')} for _k, _x in {v}.items()}}"
        if s.kind == "union":
            return f"{self._union(s.members)[0]}({v})"
        raise AssertionError(s)

    def _dec_expr(self, s: _Shape, v: str) -> str:
        if s.is_plain:
            return v
        if s.kind == "record":
            return f"{self._dec_name(s.py)}({v})"
        if s.kind == "optional":
            assert s.inner is not None
            return f"(None if {v} is None else {self._dec_expr(s.inner, v)})"
        if s.kind == "list":
            assert s.inner is not None
            return f"[{self._dec_expr(s.inner, '_x')} for _x in {v}]"
        if s.kind == "map":
            assert s.inner is not None
            return f"{{_k: {self._dec_expr(s.inner, '_x')} for _k, _x in {v}.items()}}"
        if s.kind == "union":
            return f"{self._union(s.members)[1]}({v})"
        raise AssertionError(s)

    # the schema must mirror the model --------------------------------------

    def _check(self, s: _Shape, avro: Any, where: str) -> None:
        def fail(expected: str) -> CodecError:
            return CodecError(
                f"Avro field {where} has type {_type_label(avro)}, but the model needs "
                f"{expected}; edit the .avsc file to mirror the dataclass"
            )

        if isinstance(avro, dict) and avro.get("type") not in ("record", "error", "array", "map", "enum", "fixed"):
            avro = avro["type"]  # {"type": "long", ...} annotated primitive
        if s.kind == "prim":
            if avro not in _PRIMITIVES[s.py]:
                raise fail(" or ".join(_PRIMITIVES[s.py]))
        elif s.kind == "record":
            name = avro if isinstance(avro, str) else avro.get("name") if isinstance(avro, dict) else None
            if name != self._fullname(s.py):
                raise fail(f"record {self._fullname(s.py)}")
        elif s.kind == "optional":
            assert s.inner is not None
            if not (isinstance(avro, list) and avro and avro[0] == "null"):
                raise fail('a union with "null" first (default null)')
            rest = avro[1:]
            if s.inner.kind == "union":
                self._check(s.inner, rest, where)
            elif len(rest) != 1:
                raise fail("[\"null\", <one type>]")
            else:
                self._check(s.inner, rest[0], where)
        elif s.kind in ("list", "map"):
            assert s.inner is not None
            avro_kind = "array" if s.kind == "list" else "map"
            if not (isinstance(avro, dict) and avro.get("type") == avro_kind):
                raise fail(avro_kind)
            self._check(s.inner, avro["items" if s.kind == "list" else "values"], where + "[]")
        elif s.kind == "union":
            if not isinstance(avro, list):
                raise fail("a union of records")
            names = [a if isinstance(a, str) else a.get("name") for a in avro]
            wanted = [self._fullname(m) for m in s.members]
            if sorted(names) != sorted(wanted):
                raise fail(f"the union {wanted}")
