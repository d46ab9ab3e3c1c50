"""What the compiled Avro readers (``_fastread.py``) and writers (``_fastwrite.py``) share: one
generated function per named record of a current schema, compiled from source in a namespace
of their own, and the driver that compiles a schema (or a one-field envelope's field)."""

from __future__ import annotations

from typing import Any

from aion import model


class _Unsupported(Exception):
    """The schema uses an Avro type the compilers do not handle (the codec's slow way is used)."""


class RecordCompiler:
    """Generates a function per named record; subclasses write the bodies (``record``,
    ``value``) and fix up the namespace after it ran (``resolve_tables``)."""

    #: the prefix of the generated functions' names (``_r0``, ``_w3``, ...)
    prefix = "_f"

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns
        self.funcs: dict[str, str] = {}  # record full name -> function name
        self.src: list[str] = []
        self._tmp = 0

    def tmp(self) -> str:
        """A fresh local name for the generated code."""
        self._tmp += 1
        return f"_t{self._tmp}"

    def begin_record(self, schema: dict[str, Any]) -> tuple[str, bool]:
        """The function name of record ``schema`` and whether it is new (its body is to be
        written; its model class is ``_C<name>`` in the namespace)."""
        name = schema["name"]
        if name in self.funcs:
            return self.funcs[name], False
        cls = getattr(model, name.rsplit(".", 1)[1], None)
        if not isinstance(cls, type):
            raise _Unsupported(f"no model class for record {name}")
        fn = f"{self.prefix}{len(self.funcs)}"
        self.funcs[name] = fn
        self.ns[f"_C{fn}"] = cls
        return fn, True

    def record(self, schema: dict[str, Any]) -> str:
        raise NotImplementedError

    def value(self, t: Any, v: str, out: list[str], ind: str) -> None:
        raise NotImplementedError

    def resolve_tables(self) -> None:
        """After the source ran: what the generated functions look up at run time."""

    def compile(self, schema: dict[str, Any], unwrap: bool, var: str, signature: str, ret: str) -> Any:
        """The function of ``schema`` (``unwrap``: of its one field, as ``def _top(signature)``
        handling ``var`` and ending with ``ret``), or None when it has a shape not compiled."""
        try:
            if unwrap:
                (field,) = schema["fields"]
                lines: list[str] = []
                self.value(field["type"], var, lines, "    ")
                self.src.append(f"def _top({signature}):\n" + "\n".join(lines) + ret + "\n")
                top = "_top"
            else:
                top = self.record(schema)
        except (_Unsupported, ValueError):
            return None
        exec("\n".join(self.src), self.ns)  # noqa: S102 - generated from our own schemas
        self.resolve_tables()
        return self.ns[top]
