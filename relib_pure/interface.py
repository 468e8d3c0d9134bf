"""Declaring the functions a host expects a library to export and to import.

An :class:`Interface` lists :class:`Function` declarations with ctypes
signatures. It serves two readers: :func:`relib_pure.compat.check` compares
the declared symbols with the library's (missing / unexpected), and the
runtime host uses the signatures to bind calls.

Three ways to declare one::

    from ctypes import c_int, c_double

    # 1. a dict per direction: name -> (restype, [argtypes])
    api = Interface.from_dict({"add": (c_int, [c_int, c_int])})

    # 2. a class body: methods annotated with ctypes types (the body is unused)
    class Exports:
        def add(a: c_int, b: c_int) -> c_int: ...
        def mean(xs: c_void_p, n: c_size_t) -> c_double: ...

    api = Interface.from_class(Exports, trait="Exports")    # relib trait functions

    # 3. from the Rust trait itself (relib modules)
    api = Interface.from_rust("src/shared.rs", "Exports")

``trait`` marks relib trait functions: their symbol is
``__relib__<trait>_<name>`` (:func:`relib_pure.abi.public_symbol`); without
it the symbol is the plain name.
"""

from __future__ import annotations

import ctypes
import functools
import inspect as _pyinspect
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relib_pure import abi

__all__ = ["Function", "Interface", "symbol_for"]

#: A ctypes type usable as a return or argument type (``None`` = void).
CType = Any


@dataclass(frozen=True)
class Function:
    """One declared function.

    ``restype`` / ``argtypes`` are ctypes types (``None`` restype = void).
    ``trait`` is the last path segment of the relib trait (``"Exports"``),
    ``""`` for a relib function outside any trait (``main``, ``before_unload``,
    exportify functions: ``__relib__<name>``) or ``None`` for a plain C symbol.
    It is the one declaration type of the package: the relib protocol host's
    ``FunctionSpec`` is this class. ``rust_return`` is the return type as
    spelled in Rust (``"u32"``, ``"RString"``), which decides relib's boxing
    (§1.5); ``None`` when unknown.
    """

    name: str
    restype: CType
    argtypes: tuple[CType, ...] = ()
    trait: str | None = None
    rust_return: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "argtypes", tuple(self.argtypes))
        for t in (self.restype, *self.argtypes):
            if t is not None and not _is_ctype(t):
                raise TypeError(f"{self.name}: {t!r} is not a ctypes type")

    @functools.cached_property
    def symbol(self) -> str:
        """The symbol name in the library (see :func:`symbol_for`)."""
        return symbol_for(self)


def symbol_for(fn: Function) -> str:
    """Plain ``fn.name`` (``trait=None``), else relib's mangled name (§1.1):
    ``__relib__<trait>_<name>``, or ``__relib__<name>`` for ``trait=""``."""
    return fn.name if fn.trait is None else abi.public_symbol(fn.trait, fn.name)


def _is_ctype(t: Any) -> bool:
    if not isinstance(t, type):
        return False
    return issubclass(t, (ctypes._SimpleCData, ctypes.Structure, ctypes.Union,  # noqa: SLF001
                          ctypes._Pointer, ctypes.Array, ctypes._CFuncPtr))  # type: ignore[attr-defined]


Spec = Mapping[str, "tuple[CType, Sequence[CType]]"]


@dataclass(frozen=True)
class Interface:
    """Functions a library must export (``exports``) and import slots /
    references the host provides for it (``imports``)."""

    exports: tuple[Function, ...] = ()
    imports: tuple[Function, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exports", tuple(self.exports))
        object.__setattr__(self, "imports", tuple(self.imports))
        for kind, funcs in (("export", self.exports), ("import", self.imports)):
            seen: set[str] = set()
            for f in funcs:
                if f.symbol in seen:
                    raise ValueError(f"{kind} {f.symbol!r} is declared twice")
                seen.add(f.symbol)

    # -- constructors -----------------------------------------------------
    @classmethod
    def from_dict(cls, exports: Spec | None = None, imports: Spec | None = None, *,
                  trait: str | None = None, import_trait: str | None = None) -> Interface:
        """Build from ``{name: (restype, [argtypes])}`` mappings.

        ``trait`` applies to the exports, ``import_trait`` to the imports
        (defaults to ``trait``).
        """
        if import_trait is None:
            import_trait = trait
        return cls(exports=_from_mapping(exports or {}, trait),
                   imports=_from_mapping(imports or {}, import_trait))

    @classmethod
    def from_class(cls, exports: type | None = None, imports: type | None = None, *,
                   trait: str | None = None, import_trait: str | None = None) -> Interface:
        """Build from class bodies whose methods carry ctypes annotations.

        Every public function defined in the class body is one declaration
        (other members, such as nested ctypes structures, are skipped):
        parameter annotations are the argtypes (``self`` is not expected),
        the return annotation the restype (missing or ``None`` = void).
        String annotations (``from __future__ import annotations``) are
        resolved in the class body, then in the defining module. A
        ``__trait__`` attribute on the class sets its trait when the keyword
        is not given.
        """
        if import_trait is None:
            import_trait = trait
        return cls(exports=_from_body(exports, trait) if exports is not None else (),
                   imports=_from_body(imports, import_trait) if imports is not None else ())

    @classmethod
    def from_rust(cls, path: str | os.PathLike[str], trait: str,
                  structs: Mapping[str, Any] | None = None) -> Interface:
        """Parse a Rust trait definition (relib's shared interface crate).

        Delegates to :func:`relib_pure.relib.rust_interface.parse_rust_trait`
        (imported on first use; it belongs to the relib protocol host).
        """
        from relib_pure.relib.rust_interface import parse_rust_trait

        result: Interface = parse_rust_trait(path, trait, structs)
        return result

    # -- queries ----------------------------------------------------------
    def merge(self, other: Interface) -> Interface:
        """Both declarations together (``other`` wins on equal symbols)."""
        def join(a: tuple[Function, ...], b: tuple[Function, ...]) -> tuple[Function, ...]:
            taken = {f.symbol for f in b}
            return tuple(f for f in a if f.symbol not in taken) + b
        return Interface(join(self.exports, other.exports), join(self.imports, other.imports))

    def export_symbols(self) -> tuple[str, ...]:
        return tuple(f.symbol for f in self.exports)

    def import_symbols(self) -> tuple[str, ...]:
        return tuple(f.symbol for f in self.imports)

    def find(self, name_or_symbol: str) -> Function | None:
        """The export or import declared under that name or symbol."""
        for f in (*self.exports, *self.imports):
            if name_or_symbol in (f.name, f.symbol):
                return f
        return None

    def __len__(self) -> int:
        return len(self.exports) + len(self.imports)


def _from_mapping(spec: Spec, trait: str | None) -> tuple[Function, ...]:
    funcs = []
    for name, sig in spec.items():
        if isinstance(sig, Function):
            funcs.append(sig)
            continue
        try:
            restype, argtypes = sig
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected (restype, [argtypes]), got {sig!r}") from None
        funcs.append(Function(name, restype, tuple(argtypes), trait))
    return tuple(funcs)


def _from_body(body: type, trait: str | None) -> tuple[Function, ...]:
    if trait is None:
        trait = getattr(body, "__trait__", None)
    funcs = []
    for name, member in vars(body).items():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        # Only functions declare: a nested class (a ctypes Structure used in
        # the signatures) is callable too, but it is a type, not a function.
        if name.startswith("_") or not isinstance(member, types.FunctionType):
            continue
        funcs.append(_from_callable(name, member, trait, dict(vars(body))))
    return tuple(funcs)


def _from_callable(name: str, fn: Callable[..., Any], trait: str | None,
                   namespace: dict[str, Any] | None = None) -> Function:
    try:
        # names of the class body (a nested Structure) resolve like module names
        hints = typing.get_type_hints(fn, localns=namespace)
    except Exception as e:  # noqa: BLE001 - any failure resolving annotations is a declaration error
        raise TypeError(f"{name}: cannot resolve annotations: {e}") from e
    params = _pyinspect.signature(fn).parameters
    argtypes = []
    for pname in params:
        if pname not in hints:
            raise TypeError(f"{name}: parameter {pname!r} has no ctypes annotation")
        argtypes.append(hints[pname])
    restype = hints.get("return")
    if restype is type(None):
        restype = None
    return Function(name, restype, tuple(argtypes), trait)
