"""Bounds-checked random access to the bytes of one library file.

Every offset a reader takes from the file is untrusted. :class:`Image` is the
one place that checks an (offset, size) pair against the file before reading,
so a hostile header turns into an :class:`~relib_pure.errors.InspectionError`
naming the structure, never an ``IndexError`` or a short read.
"""

from __future__ import annotations

import mmap
import struct
from typing import NoReturn, Union

from relib_pure.errors import InspectionError

__all__ = ["Buffer", "Image"]

#: What readers accept as file contents: ``bytes`` or a read-only ``mmap``.
Buffer = Union[bytes, bytearray, mmap.mmap]


class Image:
    """The bytes of one file plus its path (for error messages)."""

    __slots__ = ("path", "data", "size")

    def __init__(self, path: str, data: Buffer) -> None:
        self.path = path
        self.data = data
        self.size = len(data)

    def fail(self, message: str, code: str = "inspect.malformed") -> NoReturn:
        """Raise an :class:`InspectionError` about this file."""
        raise InspectionError(message, path=self.path, code=code)

    def check(self, offset: int, size: int, what: str) -> None:
        """Fail unless ``size`` bytes at ``offset`` lie inside the file."""
        if offset < 0 or size < 0:
            self.fail(f"{what} has a negative offset or size ({offset:#x}, {size})")
        if offset + size > self.size:
            self.fail(f"{what} at offset {offset:#x} (+{size} bytes) lies beyond the end of "
                      f"the file ({self.size} bytes)", "inspect.truncated")

    def read(self, offset: int, size: int, what: str) -> bytes:
        """``size`` bytes at ``offset`` (a copy, so no view pins an mmap)."""
        self.check(offset, size, what)
        return bytes(self.data[offset:offset + size])

    def unpack(self, layout: struct.Struct, offset: int, what: str) -> tuple[int, ...]:
        """Unpack one ``layout`` at ``offset``."""
        self.check(offset, layout.size, what)
        values: tuple[int, ...] = layout.unpack_from(self.data, offset)
        return values


class StringTable:
    """A NUL-terminated string table (``.dynstr``) held as bytes."""

    __slots__ = ("image", "blob", "what")

    def __init__(self, image: Image, offset: int, size: int, what: str) -> None:
        self.image = image
        self.blob = image.read(offset, size, what)
        self.what = what

    def get(self, offset: int) -> str:
        """The string at ``offset``; a missing terminator is a malformed table."""
        blob = self.blob
        end = blob.find(b"\0", offset)
        if end < 0 or offset < 0:
            self.image.fail(f"{self.what}: string at offset {offset:#x} is outside the table "
                            f"or not NUL-terminated")
        # Names are bytes to the loader; keep undecodable ones readable, not fatal.
        return blob[offset:end].decode("utf-8", "backslashreplace")
