"""Declared signatures against the DWARF: arity, sizes, boxing, struct layouts.

A host declares each function with ctypes types (``Interface.from_dict``,
``from_class``, ``from_rust``, or the relib host's specs); a debug build of the
library says what was compiled (:class:`~relib_pure.model.DebugInfo`). Both
are reduced to the same shape — the scalar leaves a value is made of, as
``(offset, size, class)`` with class ``int``, ``float`` or ``pointer`` — and
compared: a difference there is what makes a call crash or read garbage.
Signedness and names are not compared (the bits travel the same way).

relib's own calling conventions are taken off first: the leading success or
out-pointer, and the box of a boxed return (the DWARF return is then ``*mut
R``, which is compared with the declared ``R``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any, Protocol

from relib_pure.compat.report import _SIGNATURE_CODES, Finding
from relib_pure.model import DebugInfo, DebugSignature, DebugType

__all__ = ["check_signatures", "debug_leaves", "unreadable_dwarf_finding", "Declared",
           "SIGNATURE_ERROR_CODES"]

#: finding codes that mean "the declared signature is not what was compiled"
SIGNATURE_ERROR_CODES = _SIGNATURE_CODES

#: arrays longer than this are compared as one block of their size
_MAX_ARRAY_LEAVES = 64

Leaf = tuple[int, int, str]


class Declared(Protocol):
    """What a declaration must offer (:class:`relib_pure.interface.Function`,
    :class:`relib_pure.relib.signatures.FunctionSpec`)."""

    @property
    def name(self) -> str: ...
    @property
    def restype(self) -> Any: ...
    @property
    def argtypes(self) -> tuple[Any, ...]: ...
    @property
    def symbol(self) -> str: ...


def check_signatures(debug: DebugInfo | None, declared: Iterable[Declared]) -> list[Finding]:
    """Compare each declared function with its DWARF signature.

    Errors (``interface.signature-arity``, ``-type``, ``-layout``) name the
    function, the parameter (1-based, with the library's parameter name when
    the DWARF has one), the declared and the found type. Functions that
    cannot be compared (no DWARF, no entry for the symbol) give one
    ``interface.signatures-unchecked`` info; the ones that agree one
    ``interface.signatures-checked`` info.
    """
    wanted = list(declared)
    if not wanted:
        return []
    if debug is None or debug.status != "ok":
        why = "not read" if debug is None else (debug.message or debug.status)
        return [Finding("interface.signatures-unchecked", "info",
                        f"declared signatures not compared with the library: {why}",
                        {"reason": why, "symbols": [d.symbol for d in wanted]})]
    out: list[Finding] = []
    agreed: list[str] = []
    unchecked: list[str] = []
    for decl in wanted:
        sig = debug.find(decl.symbol)
        if sig is None:
            unchecked.append(decl.symbol)
            continue
        problems = _compare(decl, sig)
        if problems:
            out.extend(problems)
        else:
            agreed.append(decl.symbol)
    if agreed:
        out.append(Finding("interface.signatures-checked", "info",
                           f"{len(agreed)} declared signature(s) agree with the DWARF",
                           {"symbols": agreed}))
    if unchecked:
        out.append(Finding("interface.signatures-unchecked", "info",
                           f"no DWARF entry for {len(unchecked)} declared function(s): "
                           f"{', '.join(unchecked[:5])}", {"reason": "no DWARF entry",
                                                          "symbols": unchecked}))
    return out


def unreadable_dwarf_finding(error: Exception, declared: Iterable[Declared]) -> Finding:
    """The warning for declared signatures whose DWARF could not be read."""
    return Finding("interface.signatures-unchecked", "warning",
                   f"declared signatures not compared: {error}",
                   {"reason": str(error), "code": getattr(error, "code", None),
                    "symbols": [d.symbol for d in declared]})


def _compare(decl: Declared, sig: DebugSignature) -> list[Finding]:
    params = sig.value_params
    found_text = ", ".join(_param_text(i, p.name, p.type) for i, p in enumerate(params, 1))
    if len(decl.argtypes) != len(params):
        return [Finding(
            "interface.signature-arity", "error",
            f"{sig.symbol}: declared {len(decl.argtypes)} parameter(s) "
            f"({', '.join(_ctype_name(t) for t in decl.argtypes) or 'none'}), the library "
            f"has {len(params)} ({found_text or 'none'})",
            {"symbol": sig.symbol, "declared": [_ctype_name(t) for t in decl.argtypes],
             "found": [_found(p.name, p.type) for p in params]})]
    out: list[Finding] = []
    for index, (ctype, param) in enumerate(zip(decl.argtypes, params), 1):
        problem = _mismatch(ctype, param.type)
        if problem is not None:
            code, why = problem
            out.append(Finding(
                code, "error",
                f"{sig.symbol}: parameter {_param_text(index, param.name, None)}: declared "
                f"{_ctype_text(ctype)}, the library has {_debug_text(param.type)}{why}",
                {"symbol": sig.symbol, "parameter": index, "name": param.name,
                 "declared": _ctype_name(ctype), "found": _found(param.name, param.type)}))
    returns = sig.value_return
    boxed = (returns.kind == "pointer" and returns.target is not None
             and decl.restype is not None and _leaves_of_ctype(decl.restype) is not None
             and not _is_pointer_ctype(decl.restype))
    compared = returns.target if boxed and returns.target is not None else returns
    problem = _mismatch(decl.restype, compared)
    if problem is not None:
        code, why = problem
        out.append(Finding(
            code, "error",
            f"{sig.symbol}: return: declared {_ctype_text(decl.restype)}, the library "
            f"{'returns a box of' if boxed else 'returns'} {_debug_text(compared)}{why}",
            {"symbol": sig.symbol, "parameter": None, "declared": _ctype_name(decl.restype),
             "found": _found(None, compared), "boxed": boxed}))
    return out


def _mismatch(ctype: Any, found: DebugType) -> tuple[str, str] | None:
    """``(code, explanation)`` when the declared ctypes type cannot carry ``found``."""
    if ctype is None:
        if found.kind == "void" or found.size == 0:
            return None
        return "interface.signature-type", ""
    if found.kind == "void":
        return "interface.signature-type", ""
    mine = _leaves_of_ctype(ctype)
    theirs = _leaves_of_debug(found)
    if mine is None or theirs is None:
        return None  # an incomplete or opaque type on either side: nothing to compare
    if mine == theirs:
        return None
    aggregate = isinstance(ctype, type) and issubclass(ctype, (ctypes.Structure, ctypes.Union))
    if aggregate and found.kind in ("struct", "union") and ctypes.sizeof(ctype) == found.size:
        return "interface.signature-layout", (
            f": same size, other layout (declared {_leaves_text(mine)}; "
            f"library {_leaves_text(theirs)})")
    if aggregate or found.kind in ("struct", "union"):
        return "interface.signature-type", (
            f" (declared {_leaves_text(mine)}; library {_leaves_text(theirs)})")
    return "interface.signature-type", ""


# -- leaves ----------------------------------------------------------------------------


def debug_leaves(t: DebugType) -> list[tuple[int, int, str]] | None:
    """The ``(offset, size, class)`` scalar leaves a DWARF type is made of
    (``None`` when incomplete or opaque): two types with the same leaves
    travel the same way through a call."""
    return _leaves_of_debug(t)


def _leaves_of_ctype(ctype: Any, base: int = 0, depth: int = 0) -> list[Leaf] | None:
    if depth > 8:
        return None
    size = ctypes.sizeof(ctype)
    if _is_pointer_ctype(ctype):
        return [(base, size, "pointer")]
    if issubclass(ctype, (ctypes.Structure, ctypes.Union)):
        leaves: list[Leaf] = []
        for entry in getattr(ctype, "_fields_", ()):
            fname, ftype = entry[0], entry[1]
            inner = _leaves_of_ctype(ftype, base + getattr(ctype, fname).offset, depth + 1)
            if inner is None:
                return None
            leaves.extend(inner)
        return _normal(leaves)
    if issubclass(ctype, ctypes.Array):
        element = ctype._type_  # noqa: SLF001 - the element type
        if ctype._length_ > _MAX_ARRAY_LEAVES:  # noqa: SLF001
            return [(base, size, "block")]
        leaves = []
        step = ctypes.sizeof(element)
        for i in range(ctype._length_):  # noqa: SLF001
            inner = _leaves_of_ctype(element, base + i * step, depth + 1)
            if inner is None:
                return None
            leaves.extend(inner)
        return _normal(leaves)
    kind = "float" if ctype in (ctypes.c_float, ctypes.c_double, ctypes.c_longdouble) else "int"
    return _normal([(base, size, kind)])


def _leaves_of_debug(t: DebugType, base: int = 0, depth: int = 0) -> list[Leaf] | None:
    if t.size is None or depth > 8 or t.kind == "unknown":
        return None
    if t.size == 0 or t.kind == "void":
        return []
    if t.kind in ("pointer", "function-pointer"):
        return [(base, t.size, "pointer")]
    if t.kind == "float":
        return [(base, t.size, "float")]
    if t.kind in ("signed", "unsigned", "bool", "char", "enum"):
        return _normal([(base, t.size, "int")])
    if t.kind in ("struct", "union"):
        if t.truncated or (not t.fields and t.size):
            return None
        leaves: list[Leaf] = []
        for f in t.fields:
            if f.offset is None:
                return None
            inner = _leaves_of_debug(f.type, base + f.offset, depth + 1)
            if inner is None:
                return None
            leaves.extend(inner)
        return _normal(leaves)
    if t.kind == "array":
        element = t.target
        if element is None or not element.size:
            return [(base, t.size, "block")]
        count = t.size // element.size
        if count > _MAX_ARRAY_LEAVES:
            return [(base, t.size, "block")]
        leaves = []
        for i in range(count):
            inner = _leaves_of_debug(element, base + i * element.size, depth + 1)
            if inner is None:
                return None
            leaves.extend(inner)
        return _normal(leaves)
    return None


def _normal(leaves: list[Leaf]) -> list[Leaf]:
    """Sorted, with 16-byte integers as two 8-byte halves (``u128`` is
    declared as ``U128{lo, hi}``) and a union's overlapping members kept once."""
    out: list[Leaf] = []
    for offset, size, kind in leaves:
        if kind == "int" and size == 16:
            out.extend([(offset, 8, "int"), (offset + 8, 8, "int")])
        elif size:
            out.append((offset, size, kind))
    return sorted(set(out))


def _is_pointer_ctype(ctype: Any) -> bool:
    return ctype in (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_wchar_p) or (
        isinstance(ctype, type) and issubclass(ctype, (ctypes._Pointer,  # noqa: SLF001
                                                       ctypes._CFuncPtr)))  # type: ignore[attr-defined]


# -- text ------------------------------------------------------------------------------


def _ctype_name(ctype: Any) -> str:
    return "None (void)" if ctype is None else getattr(ctype, "__name__", repr(ctype))


def _ctype_text(ctype: Any) -> str:
    if ctype is None:
        return "no return value (void)"
    return f"{_ctype_name(ctype)} ({ctypes.sizeof(ctype)} bytes)"


def _debug_text(t: DebugType) -> str:
    if t.kind == "void":
        return f"{t.typedef or t.name} (no value)"
    size = f"{t.size} bytes" if t.size is not None else "size unknown"
    return f"{t.typedef or t.name} ({size}, {t.kind})"


def _param_text(index: int, name: str | None, t: DebugType | None) -> str:
    label = f"{index} {name!r}" if name else str(index)
    return f"{label}: {t.typedef or t.name}" if t is not None else label


def _found(name: str | None, t: DebugType) -> dict[str, Any]:
    return {"name": name, "type": t.typedef or t.name, "kind": t.kind, "size": t.size}


def _leaves_text(leaves: list[Leaf]) -> str:
    return ", ".join(f"{kind} {size}@{offset}" for offset, size, kind in leaves) or "empty"
