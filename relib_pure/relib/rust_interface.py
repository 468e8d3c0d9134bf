"""Reading a relib interface trait (``exports.rs`` / ``imports.rs``) into ctypes signatures.

relib's shared crate declares the public functions as a Rust trait::

    pub trait Exports {
        fn add(a: u64, b: u64) -> u64;
        fn ref_ret<'a>(s: RStr<'a>) -> RStr<'a>;
        fn with_default() -> i32 { 1 }   // default bodies produce symbols too
    }

Only what crosses relib's C ABI is accepted: Rust primitives, raw pointers and
references (passed as addresses), ``()``, and ``#[repr(C)]`` structures the
caller declares in Python (``structs={"Point": Point}``); ``RStr``,
``RString`` and ``RVec<u8>`` are known. Anything else is an
:class:`~relib_pure.errors.InspectionError` naming the file, function and type.
The return type's spelling is kept because relib decides boxing on it (§1.5).
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping
from typing import Any

from relib_pure.errors import InspectionError
from relib_pure.relib.layouts import U128, RStr, RString, RVecU8

__all__ = ["parse_rust_trait", "RUST_PRIMITIVES", "rust_type_to_ctype"]

#: Rust primitive spellings -> ctypes types (``u128``/``i128`` as two u64 halves)
RUST_PRIMITIVES: dict[str, Any] = {
    "()": None,
    "bool": ctypes.c_bool,
    "u8": ctypes.c_uint8, "i8": ctypes.c_int8,
    "u16": ctypes.c_uint16, "i16": ctypes.c_int16,
    "u32": ctypes.c_uint32, "i32": ctypes.c_int32,
    "u64": ctypes.c_uint64, "i64": ctypes.c_int64,
    "usize": ctypes.c_size_t, "isize": ctypes.c_ssize_t,
    "f32": ctypes.c_float, "f64": ctypes.c_double,
    "char": ctypes.c_uint32,
    "u128": U128, "i128": U128,
    "c_int": ctypes.c_int, "c_uint": ctypes.c_uint, "c_char": ctypes.c_char,
    "c_void": None,
}

_KNOWN_STRUCTS: dict[str, Any] = {"RStr": RStr, "RString": RString, "RVec<u8>": RVecU8,
                                  "RVecU8": RVecU8}

_LIFETIME = re.compile(r"'[A-Za-z_]\w*\s*,?\s*")
_CHAR_LITERAL = re.compile(r"'(?:\\(?:u\{[0-9A-Fa-f]{1,6}\}|x[0-9A-Fa-f]{2}|.)|[^'\\\n])'")


def _strip_comments(text: str) -> str:
    """Remove ``//`` and (nested) ``/* */`` comments, leaving string literals intact
    and char literals neutral."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif c == "'" and (lit := _CHAR_LITERAL.match(text, i)) is not None:
            # a char literal such as '{' would unbalance the brace matching; a
            # lifetime ('a) never has a closing quote right after one character
            out.append("'c'")
            i = lit.end()
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(" ")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _match(text: str, start: int, open_: str, close: str) -> int:
    """Index just past the bracket closing the one at ``start``; -1 when unbalanced."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _split_top(text: str) -> list[str]:
    """Split on commas outside ``<>``, ``()`` and ``[]``."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for i, c in enumerate(text):
        if c in "<([":
            depth += 1
        elif c in ">)]" and not (c == ">" and i > 0 and text[i - 1] == "-"):
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _normalise(spelling: str) -> str:
    """Drop lifetimes and whitespace noise: ``RStr<'a>`` -> ``RStr``, ``& 'a T`` -> ``&T``."""
    t = _LIFETIME.sub("", spelling)
    t = re.sub(r"<\s*>", "", t)
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\s*([<>,&*])\s*", r"\1", t)
    t = t.replace("*const", "*const ").replace("*mut", "*mut ").replace("&mut", "&mut ")
    return re.sub(r"\s+", " ", t).strip()


def rust_type_to_ctype(spelling: str, structs: Mapping[str, Any] | None = None) -> Any:
    """The ctypes type for a Rust type spelling; ``KeyError`` when it has none."""
    t = _normalise(spelling)
    if t.startswith(("*", "&")):
        inner = t.lstrip("*&").strip()
        for qualifier in ("const ", "mut "):
            if inner.startswith(qualifier):
                inner = inner[len(qualifier):].strip()
        if inner == "str" or inner.startswith("[") or inner.startswith("dyn "):
            raise KeyError(f"{spelling} is a fat pointer, which relib cannot pass")
        return ctypes.c_void_p
    if structs and t in structs:
        return structs[t]
    last = t.rsplit("::", 1)[-1] if "<" not in t else t
    if structs and last in structs:
        return structs[last]
    if last in RUST_PRIMITIVES:
        return RUST_PRIMITIVES[last]
    if last in _KNOWN_STRUCTS:
        return _KNOWN_STRUCTS[last]
    raise KeyError(spelling)


def _fail(path: str, message: str) -> InspectionError:
    return InspectionError(message, path=path, code="inspect.unsupported")


def _trait_body(text: str, trait: str, path: str) -> str:
    for m in re.finditer(r"\btrait\s+" + re.escape(trait) + r"\b", text):
        brace = text.find("{", m.end())
        if brace < 0:
            break
        end = _match(text, brace, "{", "}")
        if end < 0:
            raise InspectionError(f"trait {trait} has an unbalanced body", path=path,
                                  code="inspect.malformed")
        return text[brace + 1:end - 1]
    raise InspectionError(f"no trait named {trait!r} in the file", path=path,
                          code="inspect.malformed")


def _functions(body: str, path: str, trait: str) -> list[tuple[str, list[tuple[str, str]], str]]:
    """``(name, [(param, type)], return spelling)`` for each fn of a trait body."""
    found: list[tuple[str, list[tuple[str, str]], str]] = []
    i = 0
    while True:
        m = re.compile(r"\bfn\s+([A-Za-z_]\w*)").search(body, i)
        if m is None:
            return found
        name = m.group(1)
        j = m.end()
        while j < len(body) and body[j].isspace():
            j += 1
        if j < len(body) and body[j] == "<":
            j = _match(body, j, "<", ">")
        paren = body.find("(", j)
        close = _match(body, paren, "(", ")") if paren >= 0 else -1
        if close < 0:
            raise InspectionError(f"{trait}::{name}: unbalanced parameter list", path=path,
                                  code="inspect.malformed")
        params = []
        for raw in _split_top(body[paren + 1:close - 1]):
            if raw.lstrip("&").strip().startswith(("self", "mut self")):
                raise _fail(path, f"{trait}::{name} takes self; relib interface functions "
                                  "are associated functions")
            pname, sep, ptype = raw.partition(":")
            if not sep:
                raise InspectionError(f"{trait}::{name}: cannot read parameter {raw!r}",
                                      path=path, code="inspect.malformed")
            params.append((pname.strip(), ptype.strip()))
        k = close
        end_sig = len(body)
        for stop in (";", "{"):
            pos = body.find(stop, k)
            if 0 <= pos < end_sig:
                end_sig = pos
        tail = body[k:end_sig]
        tail = re.split(r"\bwhere\b", tail)[0].strip()
        ret = tail[2:].strip() if tail.startswith("->") else "()"
        found.append((name, params, ret))
        if end_sig < len(body) and body[end_sig] == "{":
            nxt = _match(body, end_sig, "{", "}")
            i = len(body) if nxt < 0 else nxt
        else:
            i = end_sig + 1


def parse_rust_trait(path: str | os.PathLike[str], trait: str,
                     structs: Mapping[str, Any] | None = None, *,
                     kind: str | None = None) -> Any:
    """Read trait ``trait`` of the Rust file ``path`` into a :class:`relib_pure.interface.Interface`.

    ``structs`` maps the names of the caller's ``#[repr(C)]`` structures to
    ctypes ``Structure`` classes. ``kind`` is ``"exports"`` or ``"imports"``;
    by default a trait whose name contains "Import" declares imports, any other
    exports. Symbols follow §1.1 (``__relib__<trait>_<fn>``, trait = last path
    segment).
    """
    from relib_pure.interface import Function, Interface

    fspath = os.fspath(path)
    try:
        with open(fspath, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InspectionError("the interface file does not exist", path=fspath,
                              code="inspect.not-found") from None
    except UnicodeDecodeError as e:
        raise InspectionError(f"the interface file is not UTF-8 text: {e}", path=fspath,
                              code="inspect.malformed") from e
    except OSError as e:
        raise InspectionError(f"cannot read the interface file: {e.strerror}", path=fspath,
                              code="inspect.io") from e
    short_trait = trait.rsplit("::", 1)[-1]
    body = _trait_body(_strip_comments(text), short_trait, fspath)
    funcs = []
    for name, params, ret in _functions(body, fspath, short_trait):
        def convert(spelling: str, what: str) -> Any:
            try:
                return rust_type_to_ctype(spelling, structs)
            except KeyError as e:
                reason = e.args[0] if e.args and e.args[0] != spelling else (
                    "not a Rust primitive, raw pointer or declared #[repr(C)] struct; pass "
                    "structs={'Name': ctypes.Structure subclass}")
                raise _fail(fspath, f"{short_trait}::{name}: {what} type {spelling!r}: "
                                    f"{reason}") from None
        argtypes = tuple(convert(t, f"parameter {p!r}") for p, t in params)
        if any(a is None for a in argtypes):
            raise _fail(fspath, f"{short_trait}::{name}: a parameter of type () cannot be passed")
        restype = convert(ret, "return")
        funcs.append(Function(name, restype, argtypes, short_trait, _normalise(ret)))
    if kind is None:
        kind = "imports" if "import" in short_trait.lower() else "exports"
    if kind == "imports":
        return Interface(imports=tuple(funcs))
    if kind == "exports":
        return Interface(exports=tuple(funcs))
    raise ValueError(f"kind must be 'exports' or 'imports', not {kind!r}")
