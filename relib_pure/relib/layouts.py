"""ctypes layouts of relib's ``repr(C)`` types and of its callback prototypes.

Only x86_64/aarch64 Linux layouts (8-byte ``usize``) are described; see
``shared/relib-abi.md`` §3 and §8. The value types at the bottom (``RStr``,
``RString``, ``RVecU8``, ``U128``) are the ptr+len views and owning buffers that
relib interfaces commonly pass; copying them out into Python objects is done by
:func:`relib_pure.relib.values.copy_out`.
"""

from __future__ import annotations

import ctypes
from ctypes import (CFUNCTYPE, Structure, c_bool, c_size_t, c_uint64, c_void_p,
                    string_at)

__all__ = [
    "StableLayout",
    "Allocation",
    "RawSlice",
    "Str",
    "RStr",
    "RString",
    "RVecU8",
    "U128",
    "ALLOCATION_SIZE",
    "ALLOCATOR_OP_SIZE",
    "ON_ALLOC",
    "ON_CACHED_ALLOCS",
    "UNRECOVERABLE",
    "UNRECOVERABLE_WITH_ID",
    "EPRINTLN",
    "IS_PTR_ALLOCATED",
    "POST_CALLBACK",
    "init_argtypes",
]


class StableLayout(Structure):
    """``{size: usize, align: usize}`` (16 bytes), passed by value."""

    _fields_ = [("size", c_size_t), ("align", c_size_t)]


class Allocation(Structure):
    """``{ptr, StableLayout}`` (24 bytes): one entry of the list given to ``exit``."""

    _fields_ = [("ptr", c_void_p), ("layout", StableLayout)]


class RawSlice(Structure):
    """``{ptr: *const T, len: usize}`` (16 bytes), passed by value.

    An empty slice may carry a dangling pointer such as ``0x8``: read ``ptr``
    only when ``len > 0``.
    """

    _fields_ = [("ptr", c_void_p), ("len", c_size_t)]


class Str(RawSlice):
    """relib's internal UTF-8 ``Str`` (a ``RawSlice<u8>``), not NUL-terminated."""

    def to_str(self) -> str:
        """The text, with invalid UTF-8 replaced (callers print it, never parse it)."""
        if not self.len:
            return ""
        return string_at(self.ptr, self.len).decode("utf-8", "replace")


#: size of one ``Allocation`` in the packed ``exit`` list
ALLOCATION_SIZE = ctypes.sizeof(Allocation)
#: size of one ``AllocatorOp`` (tag u32, 4 padding bytes, Allocation)
ALLOCATOR_OP_SIZE = 32


class RStr(Structure):
    """A borrowed UTF-8 view ``{ptr: *const u8, len: usize}`` (abi_stable's ``RStr`` shape).

    Build one for a call with :meth:`from_bytes`, which keeps the Python buffer
    alive as long as the ``RStr`` object itself.
    """

    _fields_ = [("ptr", c_void_p), ("len", c_size_t)]

    @classmethod
    def from_bytes(cls, data: bytes | str) -> RStr:
        """A view of ``data`` (``str`` is UTF-8 encoded); the buffer lives with the view."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        buf = ctypes.create_string_buffer(raw, len(raw) or 1)
        view = cls(ctypes.cast(buf, c_void_p).value, len(raw))
        view._keep = buf  # the module reads the bytes after this call returns
        return view

    def to_bytes(self) -> bytes:
        """A copy of the bytes the view points to."""
        return string_at(self.ptr, self.len) if self.len else b""

    def to_str(self) -> str:
        """A copy of the text (strict UTF-8: relib views are always valid UTF-8)."""
        return self.to_bytes().decode("utf-8")


class RString(Structure):
    """An owning UTF-8 buffer ``{ptr, len, cap}`` allocated by the module."""

    _fields_ = [("ptr", c_void_p), ("len", c_size_t), ("cap", c_size_t)]

    def to_bytes(self) -> bytes:
        return string_at(self.ptr, self.len) if self.len else b""

    def to_str(self) -> str:
        return self.to_bytes().decode("utf-8")


class RVecU8(Structure):
    """An owning byte buffer ``{ptr, len, cap}`` allocated by the module."""

    _fields_ = [("ptr", c_void_p), ("len", c_size_t), ("cap", c_size_t)]

    def to_bytes(self) -> bytes:
        return string_at(self.ptr, self.len) if self.len else b""


class U128(Structure):
    """``u128``/``i128`` as two little-endian u64 halves.

    Usable as an argument of calls *into* a module (register passing matches);
    ctypes cannot return it from a callback.
    """

    _fields_ = [("lo", c_uint64), ("hi", c_uint64)]

    @property
    def value(self) -> int:
        return int(self.lo) | (int(self.hi) << 64)

    @classmethod
    def from_int(cls, value: int) -> U128:
        value &= (1 << 128) - 1
        return cls(value & 0xFFFF_FFFF_FFFF_FFFF, value >> 64)


# Internal import prototypes (§1.4, §8).
ON_ALLOC = CFUNCTYPE(None, c_uint64, c_void_p, StableLayout)
ON_CACHED_ALLOCS = CFUNCTYPE(None, c_uint64, RawSlice)
UNRECOVERABLE = CFUNCTYPE(None, Str)
UNRECOVERABLE_WITH_ID = CFUNCTYPE(None, c_uint64, Str)
EPRINTLN = CFUNCTYPE(None, Str)
IS_PTR_ALLOCATED = CFUNCTYPE(c_bool, c_uint64, c_void_p)
#: ``void __post…(R*)``: the host's release function for a boxed import return
POST_CALLBACK = CFUNCTYPE(None, c_void_p)


def init_argtypes(with_alloc_tracker_flag: bool) -> list[type]:
    """``init(thread, id[, enable_alloc_tracker])`` argument types."""
    types: list[type] = [c_size_t, c_uint64]
    if with_alloc_tracker_flag:
        types.append(c_bool)
    return types
