"""What ``run --call`` calls: a symbol, its C signature and simple arguments.

Spellings (``relib-pure run --call ...``)::

    plain_bump                  no types declared: int plain_bump(void)
    'plain_add(2, 3)'           literal arguments; their types inferred (int, double, char *)
    plain_add:int(int,int)      declared signature; values from --arg 2 --arg 3
    plain_name:str              declared return type, no arguments

Without a declaration the call is made as ``int f(void)`` (with literal
arguments: ``int f(<their types>)``), C's old implicit rule: the result of a
function that returns something else (or nothing) is then whatever is left
in the return register, and the report says the types were not declared.
Arguments are integers, floats and strings (passed as NUL-terminated UTF-8
``char *``, kept alive for the call); nothing else can be spelled safely
on a command line.
"""

from __future__ import annotations

import ast
import ctypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CallSpec", "ARG_TYPES", "RETURN_TYPES", "parse_call"]

#: argument type names -> ctypes types
ARG_TYPES: dict[str, Any] = {
    "int": ctypes.c_int, "uint": ctypes.c_uint, "int8": ctypes.c_int8, "uint8": ctypes.c_uint8,
    "int16": ctypes.c_int16, "uint16": ctypes.c_uint16, "int32": ctypes.c_int32,
    "uint32": ctypes.c_uint32, "int64": ctypes.c_int64, "uint64": ctypes.c_uint64,
    "long": ctypes.c_long, "ulong": ctypes.c_ulong, "size_t": ctypes.c_size_t,
    "bool": ctypes.c_bool, "float": ctypes.c_float, "double": ctypes.c_double,
    "str": ctypes.c_char_p, "pointer": ctypes.c_void_p,
}
#: return type names -> ctypes types (``void``: none)
RETURN_TYPES: dict[str, Any] = {"void": None, **ARG_TYPES}
#: C spellings accepted for the names above
_ALIASES = {"char*": "str", "char *": "str", "const char*": "str", "const char *": "str",
            "string": "str", "unsigned": "uint", "unsigned int": "uint", "void*": "pointer",
            "void *": "pointer", "i32": "int32", "u32": "uint32", "i64": "int64",
            "u64": "uint64", "f64": "double", "f32": "float", "usize": "size_t"}
_FLOATS = {"float", "double"}
_SIGNED = {"int": 32, "int8": 8, "int16": 16, "int32": 32, "int64": 64, "long": 64}
_UNSIGNED = {"uint": 32, "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "ulong": 64,
             "size_t": 64, "pointer": 64}

_DECLARED = re.compile(r"^(?P<name>[A-Za-z_.$][\w.$]*)\s*:\s*(?P<ret>[^()]+?)\s*"
                       r"(\((?P<args>[^()]*)\))?$")
_LITERALS = re.compile(r"^(?P<name>[A-Za-z_.$][\w.$]*)\s*\((?P<values>.*)\)\s*"
                       r"(:\s*(?P<ret>[^()]+?))?\s*$", re.S)
_BARE = re.compile(r"^[A-Za-z_.$][\w.$]*$")


def _type_name(text: str, table: dict[str, Any], what: str) -> str:
    name = " ".join(text.split())
    name = _ALIASES.get(name, name)
    if name not in table:
        raise ValueError(f"unknown {what} type {text.strip()!r}; known: {', '.join(table)}")
    return name


def _infer(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -2**31 <= value < 2**31 else "int64"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "str"
    raise ValueError(f"argument {value!r} is not an integer, float or string")


def _convert(text: str, type_name: str) -> Any:
    """An ``--arg`` string as a value of the declared type."""
    try:
        if type_name in _FLOATS:
            return float(text)
        if type_name == "bool":
            return text.lower() in ("1", "true", "yes")
        if type_name == "str":
            return text
        return int(text, 0)
    except ValueError:
        raise ValueError(f"--arg {text!r} is not a {type_name}") from None


def _guess(text: str) -> Any:
    """An ``--arg`` string without a declared type: integer, float, else string."""
    for convert in (lambda t: int(t, 0), float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _check_range(value: Any, type_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        if type_name in _SIGNED or type_name in _UNSIGNED:
            raise ValueError(f"argument {value!r} is not an integer ({type_name})")
        return
    if type_name in _SIGNED:
        bits = _SIGNED[type_name]
        if not -2**(bits - 1) <= value < 2**(bits - 1):
            raise ValueError(f"argument {value} does not fit {type_name}")
    elif type_name in _UNSIGNED:
        if not 0 <= value < 2**_UNSIGNED[type_name]:
            raise ValueError(f"argument {value} does not fit {type_name}")


@dataclass(frozen=True)
class CallSpec:
    """A parsed ``--call``: ``declared`` says whether the types were given
    (else the call is ``int f(...)`` with the literals' types)."""

    symbol: str
    restype: str
    argtypes: tuple[str, ...] = ()
    args: tuple[Any, ...] = ()
    declared: bool = False

    @property
    def signature(self) -> str:
        """``int plain_add(int, int)``."""
        params = ", ".join(self.argtypes) or "void"
        return f"{self.restype} {self.symbol}({params})"

    def ctypes_signature(self) -> tuple[Any, tuple[Any, ...]]:
        return RETURN_TYPES[self.restype], tuple(ARG_TYPES[t] for t in self.argtypes)

    def call_args(self) -> tuple[Any, ...]:
        """The arguments as ctypes takes them (strings as NUL-terminated UTF-8)."""
        return tuple(a.encode() if isinstance(a, str) else a for a in self.args)

    def text(self) -> str:
        """The ``NAME:RET(T,...)`` spelling (values go separately, as ``--arg``)."""
        return f"{self.symbol}:{self.restype}({','.join(self.argtypes)})"

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "restype": self.restype,
                "argtypes": list(self.argtypes), "args": list(self.args),
                "declared": self.declared, "signature": self.signature}


def parse_call(text: str, args: Sequence[str] = (), restype: str | None = None) -> CallSpec:
    """Parse a ``--call`` spelling with its ``--arg`` values and ``--restype``
    (see the module docstring); a ``ValueError`` says what is wrong."""
    text = text.strip()
    declared_ret = restype is not None
    if restype is not None:
        restype = _type_name(restype, RETURN_TYPES, "return")
    m = _DECLARED.match(text)
    if m:
        ret = _type_name(m["ret"], RETURN_TYPES, "return")
        if restype is not None and restype != ret:
            raise ValueError(f"--restype {restype} contradicts {text!r}")
        types = tuple(_type_name(t, ARG_TYPES, "argument")
                      for t in (m["args"] or "").split(",") if t.strip())
        if len(args) != len(types):
            raise ValueError(f"{m['name']} takes {len(types)} argument(s) ({', '.join(types) or 'void'}), "
                             f"{len(args)} --arg given")
        values = tuple(_convert(a, t) for a, t in zip(args, types))
        for v, t in zip(values, types):
            _check_range(v, t)
        return CallSpec(m["name"], ret, types, values, declared=True)
    m = _LITERALS.match(text)
    if m:
        if args:
            raise ValueError(f"give the arguments either in {text!r} or as --arg, not both")
        inner = m["values"].strip()
        try:
            parsed = ast.literal_eval(f"({inner},)") if inner else ()
        except (ValueError, SyntaxError):
            raise ValueError(f"cannot read the arguments of {text!r}: use integers, floats "
                             f"and quoted strings") from None
        types = tuple(_infer(v) for v in parsed)
        ret = restype or "int"
        if m["ret"]:
            ret = _type_name(m["ret"], RETURN_TYPES, "return")
            declared_ret = True
        return CallSpec(m["name"], ret, types, tuple(parsed), declared=declared_ret)
    if _BARE.match(text):
        values = tuple(_guess(a) for a in args)
        return CallSpec(text, restype or "int", tuple(_infer(v) for v in values), values,
                        declared=declared_ret)
    raise ValueError(f"cannot read --call {text!r}: use NAME, 'NAME(1, 2.5, \"s\")' or "
                     f"NAME:RET(TYPE,...) with --arg")
