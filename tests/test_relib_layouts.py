"""abi_stable 0.11 value layouts and host-built owning values (relib_pure.relib.layouts)."""

from __future__ import annotations

import ctypes
import tracemalloc

import pytest

from relib_pure.relib.layouts import RStr, RString, RVecU8
from relib_pure.relib.values import copy_out, to_ctype


def test_rvec_and_rstring_have_abi_stable_layout() -> None:
    # abi_stable 0.11 src/std_types/vec.rs: buffer, length, capacity, vtable
    assert ctypes.sizeof(RVecU8) == 32
    assert [(n, getattr(RVecU8, n).offset) for n, _ in RVecU8._fields_] == [
        ("buffer", 0), ("length", 8), ("capacity", 16), ("vtable", 24)]
    assert ctypes.sizeof(RString) == 32 and RString.inner.offset == 0
    assert ctypes.sizeof(RStr) == 16


def test_host_value_views_writable_buffer_in_place() -> None:
    data = bytearray(b"abc" * 1000)
    value = to_ctype(RVecU8, data)
    assert value.length == value.capacity == 3000 and not value.vtable
    data[0:3] = b"xyz"  # the module would read through buffer: it sees the change
    assert copy_out(RVecU8, value)[:6] == b"xyzabc"


def test_host_value_from_large_bytes_is_not_copied() -> None:
    payload = b"\x01" * (64 << 20)
    tracemalloc.start()
    try:
        value = to_ctype(RVecU8, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value.length == 64 << 20
    assert peak < 1 << 20, f"{peak} bytes allocated for a view of 64 MiB"
    assert ctypes.string_at(value.buffer + (64 << 20) - 4, 4) == b"\x01" * 4


def test_host_string_values() -> None:
    s = to_ctype(RString, "héllo")
    assert s.to_str() == "héllo" and s.inner.length == len("héllo".encode())
    assert to_ctype(RString, b"").inner.length == 0
    assert to_ctype(RString, b"").inner.buffer  # never NULL: Rust's NonNull
    with pytest.raises(ValueError, match="UTF-8"):
        to_ctype(RString, b"\xff\xfe")
    ro = memoryview(b"read-only")
    assert to_ctype(RVecU8, ro).to_bytes() == b"read-only"
    assert to_ctype(RStr, bytearray(b"view")).to_str() == "view"
