"""Moving values across the relib boundary: copying module values out, building host values.

relib's Rust host *clones* a returned value before releasing it (the ``__post``
call). Python cannot run Rust's ``Clone``, so values are copied out by type:
primitives by value, ptr+len views and owning buffers (``RStr``, ``RString``,
``RVecU8``) as Python ``str``/``bytes`` (the contents are copied before post
frees them), other ``repr(C)`` structures as a byte copy (POD only).
"""

from __future__ import annotations

import ctypes
from ctypes import Structure
from typing import Any

from relib_pure.relib.layouts import U128, RStr, RString, RVecU8

__all__ = ["copy_out", "copy_from_address", "to_ctype", "is_struct"]


def is_struct(ctype: Any) -> bool:
    """Whether ``ctype`` is a ctypes ``Structure`` type (needs by-value/boxed handling)."""
    return isinstance(ctype, type) and issubclass(ctype, Structure)


def copy_out(ctype: Any, value: Any) -> Any:
    """A Python value that stays valid after the module frees ``value``'s memory.

    ``value`` is what ctypes produced for ``ctype`` (a Python int/float/bool for
    simple types, an instance for structures).
    """
    if ctype is None:
        return None
    if isinstance(value, U128):
        return value.value
    if isinstance(value, (RStr, RString)):
        return value.to_str()
    if isinstance(value, RVecU8):
        return value.to_bytes()
    if isinstance(value, Structure):
        return type(value).from_buffer_copy(value)
    if isinstance(value, ctypes._SimpleCData):  # e.g. an element read from memory
        return value.value
    return value


def copy_from_address(ctype: Any, address: int) -> Any:
    """Copy a ``ctype`` value out of module memory at ``address``."""
    if ctype is None:
        return None
    raw = ctype.from_address(address)
    if is_struct(ctype):
        return copy_out(ctype, raw)
    return raw.value


def to_ctype(ctype: Any, value: Any) -> Any:
    """Turn a Python value into an instance of ``ctype`` for the module.

    ``bytes``/``str`` become an ``RStr`` view, and ``str``, ``bytes``,
    ``bytearray``, ``memoryview`` or a ctypes array a host-owned ``RString`` /
    ``RVecU8`` (viewed in place where possible); their buffers live as long as
    the returned object, so keep that object alive while the module may read
    it. An ``int`` becomes ``U128``; instances of ``ctype`` pass through.
    """
    if isinstance(value, ctype):
        return value
    if ctype is RStr and isinstance(value, (bytes, bytearray, memoryview, str)):
        return RStr.from_bytes(value)
    if ctype in (RString, RVecU8) and isinstance(value, (bytes, bytearray, memoryview, str,
                                                         ctypes.Array)):
        return ctype.from_buffer_of(value)
    if ctype is U128 and isinstance(value, int):
        return U128.from_int(value)
    if is_struct(ctype) and isinstance(value, tuple):
        return ctype(*value)
    return ctype(value)
