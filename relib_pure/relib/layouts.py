"""ctypes layouts of relib's ``repr(C)`` types and of its callback prototypes.

Only x86_64/aarch64 Linux layouts (8-byte ``usize``) are described; see
``shared/relib-abi.md`` §3 and §8. The value types at the bottom (``RStr``,
``RString``, ``RVecU8``, ``U128``) are the ptr+len views and abi_stable 0.11's
owning buffers that relib interfaces commonly pass; copying them out into Python
objects is done by :func:`relib_pure.relib.values.copy_out`.
"""

from __future__ import annotations

import ctypes
from ctypes import (CFUNCTYPE, Structure, c_bool, c_size_t, c_uint64, c_void_p,
                    string_at)
from typing import Any, Union

__all__ = [
    "StableLayout",
    "Allocation",
    "RawSlice",
    "Str",
    "RStr",
    "RString",
    "RVecU8",
    "BufferLike",
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
    def from_bytes(cls, data: BufferLike) -> RStr:
        """A view of ``data`` (``str`` is UTF-8 encoded); the buffer lives with the view.

        ``bytes`` and writable buffers are viewed in place, not copied.
        """
        address, length, keep = _host_buffer(data)
        view = cls(address, length)
        view._keep = keep  # the module reads the bytes after this call returns
        return view

    def to_bytes(self) -> bytes:
        """A copy of the bytes the view points to."""
        return string_at(self.ptr, self.len) if self.len else b""

    def to_str(self) -> str:
        """A copy of the text (strict UTF-8: relib views are always valid UTF-8)."""
        return self.to_bytes().decode("utf-8")


class RVecU8(Structure):
    """abi_stable 0.11's ``RVec<u8>``: ``{buffer, length, capacity, vtable}`` (32 bytes).

    The vtable is a prefix-type reference to the owner's ``destructor``,
    ``grow_capacity_to`` and ``shrink_to_fit``. Values the module returns carry
    the module's vtable; a value the host builds with :meth:`from_buffer_of`
    carries none (NULL), which is sound only where relib copies it: relib 0.3+
    clones a boxed import return (reading ``buffer`` and ``length``) and then
    hands the box back through the post slot, so the module never drops it.
    """

    _fields_ = [("buffer", c_void_p), ("length", c_size_t), ("capacity", c_size_t),
                ("vtable", c_void_p)]

    def to_bytes(self) -> bytes:
        """A copy of the contents."""
        return string_at(self.buffer, self.length) if self.length else b""

    @classmethod
    def from_buffer_of(cls, data: BufferLike) -> RVecU8:
        """A host-owned value viewing ``data``'s bytes; ``data`` lives with the value.

        ``bytes`` and writable buffers (``bytearray``, writable ``memoryview``,
        ctypes arrays) are viewed in place, so a 200 MB return is not copied
        here at all; ``str`` is UTF-8 encoded and read-only views are copied
        once.
        """
        address, length, keep = _host_buffer(data)
        value = cls(address, length, length, None)
        value._keep = keep  # the module reads the bytes after the callback returned
        return value


class RString(Structure):
    """abi_stable 0.11's ``RString``: ``{inner: RVec<u8>}`` (32 bytes), UTF-8."""

    _fields_ = [("inner", RVecU8)]

    def to_bytes(self) -> bytes:
        """A copy of the UTF-8 bytes."""
        data: bytes = self.inner.to_bytes()
        return data

    def to_str(self) -> str:
        """A copy of the text (strict UTF-8: an ``RString`` is always valid UTF-8)."""
        return self.to_bytes().decode("utf-8")

    @classmethod
    def from_buffer_of(cls, data: BufferLike) -> RString:
        """A host-owned value with ``data`` as text (see :meth:`RVecU8.from_buffer_of`).

        Bytes are checked to be UTF-8 first: Rust code may rely on it.
        """
        if not isinstance(data, str):
            try:
                str(memoryview(data), "utf-8") if not isinstance(data, bytes) else data.decode()
            except UnicodeDecodeError as e:
                raise ValueError(f"an RString must be UTF-8: {e}") from None
        inner = RVecU8.from_buffer_of(data)
        value = cls(inner)  # copies the 32 bytes; the buffer is kept below
        value._keep = inner._keep
        return value


#: what :meth:`RVecU8.from_buffer_of` accepts
BufferLike = Union[bytes, bytearray, memoryview, str, "ctypes.Array[Any]"]


def _host_buffer(data: BufferLike) -> tuple[int | None, int, Any]:
    """``(address, length, object to keep alive)`` of ``data``'s bytes, copying only if needed."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        if not data:
            return _DANGLING, 0, data
        # c_char_p over bytes points at the object's own storage: no copy
        return ctypes.cast(ctypes.c_char_p(data), c_void_p).value, len(data), data
    view = memoryview(data)
    if not view.c_contiguous:
        raise ValueError("the buffer is not contiguous")
    length = view.nbytes
    if not length:
        return _DANGLING, 0, data
    if view.readonly:
        copy = view.tobytes()
        return ctypes.cast(ctypes.c_char_p(copy), c_void_p).value, length, copy
    array = (ctypes.c_char * length).from_buffer(view.cast("B"))
    return ctypes.addressof(array), length, (array, data)


#: Rust's ``NonNull::dangling()`` for u8: empty vectors never hold NULL
_DANGLING = 1


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
