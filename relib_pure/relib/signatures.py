"""Declared signatures of public relib functions, in one normal form.

Users declare exports and imports as a small Python mapping
``{"name": (restype, [argtypes...])}`` (``restype`` ``None`` for ``()``), as a
sequence of :class:`FunctionSpec`, or as an interface object (anything with a
``functions`` attribute or mapping of such entries, e.g.
:class:`relib_pure.interface.Interface`, built from a Rust trait file by
:func:`relib_pure.relib.rust_interface.parse_rust_trait`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from relib_pure.interface import Function

__all__ = ["FunctionSpec", "relib_spec", "normalize_specs"]


#: the package's one declaration type (:class:`relib_pure.interface.Function`); in
#: this layer ``trait=""`` names relib functions outside any trait (``__relib__main``)
FunctionSpec = Function


def relib_spec(name: str, restype: Any = None, argtypes: Iterable[Any] = (),
               trait: str | None = "", rust_return: str | None = None) -> Function:
    """A relib function declaration; ``trait=None`` (no trait) means ``""`` here."""
    return Function(name, restype, tuple(argtypes), "" if trait is None else trait, rust_return)


def _from_entry(name: str, entry: Any, trait: str | None) -> Function:
    if isinstance(entry, Function):
        return entry if entry.trait is not None else relib_spec(
            entry.name, entry.restype, entry.argtypes, trait, entry.rust_return)
    if isinstance(entry, tuple) and len(entry) == 2:
        restype, argtypes = entry
        return relib_spec(name, restype, tuple(argtypes), trait)
    restype = getattr(entry, "restype", None)
    argtypes = getattr(entry, "argtypes", None)
    if argtypes is None:
        raise TypeError(f"cannot read a signature for {name!r} from {entry!r}")
    return relib_spec(getattr(entry, "name", name), restype, tuple(argtypes),
                      getattr(entry, "trait", None) or trait,
                      getattr(entry, "rust_return", None))


def normalize_specs(decl: Any, default_trait: str | None) -> tuple[Function, ...]:
    """Read a declaration (see the module docstring) into ``FunctionSpec`` tuples.

    ``default_trait`` (``"Exports"``/``"Imports"``) applies to entries that do
    not name their trait; an interface object's own ``trait`` wins.
    """
    if decl is None:
        return ()
    trait = getattr(decl, "trait", None) or default_trait
    funcs = getattr(decl, "functions", None)
    if funcs is not None:
        decl = funcs
    if isinstance(decl, Mapping):
        return tuple(_from_entry(str(name), entry, trait) for name, entry in decl.items())
    if isinstance(decl, Iterable) and not isinstance(decl, (str, bytes)):
        out = []
        for entry in decl:
            name = getattr(entry, "name", None)
            if name is None:
                raise TypeError(f"signature entry without a name: {entry!r}")
            out.append(_from_entry(name, entry, trait))
        return tuple(out)
    raise TypeError(f"unsupported interface declaration: {decl!r}")
