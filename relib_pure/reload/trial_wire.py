"""Values of relib import calls that cross between a trial child and the host.

A trial child runs a new version's ``main`` in a fresh interpreter; the host's
Python implementations of the module's imports live in the host. A call whose
arguments and result are plain data crosses as one JSON line each way: numbers,
booleans and ``None`` as they are, ``RStr`` arguments and results as their
bytes, ``str``/``bytes`` results (owning ``RString``/``RVec<u8>`` returns) as
text or base64. Anything else (pointers, other structures) refers to memory
of one process and cannot cross: the child answers such a call with zero
itself, and says so in the trial result.
"""

from __future__ import annotations

import base64
import ctypes
from typing import Any

from relib_pure.relib.layouts import RStr, RString, RVecU8

__all__ = ["crosses", "encode", "decode"]

_PRIMITIVE = (bool, int, float)
# results that cross: none, a borrowed string, an owning string or byte vector
_PLAIN_RESULTS = (None, RStr, RString, RVecU8)


def crosses(restype: Any, argtypes: list[Any]) -> bool:
    """Whether a call of this signature can be answered by the host."""
    if restype not in _PLAIN_RESULTS and not _is_simple(restype):
        return False
    return all(t is RStr or _is_simple(t) for t in argtypes)


def _is_simple(t: Any) -> bool:
    # ctypes' fundamental types (c_int, c_double, c_bool...) have a one-letter code
    code = getattr(t, "_type_", None)
    return isinstance(code, str) and len(code) == 1 and code not in "PzZOX"


def encode(value: Any) -> Any:
    """``value`` as JSON data (``TypeError`` when it cannot cross)."""
    if value is None or isinstance(value, _PRIMITIVE):
        return value
    if isinstance(value, ctypes._SimpleCData):
        return encode(value.value)
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, RStr):
        return {"rstr": base64.b64encode(value.to_bytes()).decode("ascii")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"a {type(value).__name__} cannot cross to another process")


def decode(data: Any) -> Any:
    """The value :func:`encode` made ``data`` from (an ``RStr`` over a copy of its bytes)."""
    if not isinstance(data, dict):
        return data
    if "str" in data:
        return str(data["str"])
    raw = base64.b64decode(str(data.get("rstr", data.get("bytes", ""))))
    if "rstr" in data:
        return RStr.from_bytes(raw)
    return raw
