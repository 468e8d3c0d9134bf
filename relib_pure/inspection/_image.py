"""Bounds-checked random access to the bytes of one library file.

Every offset a reader takes from the file is untrusted. :class:`Image` is the
one place that checks an (offset, size) pair against the file before reading,
so a hostile header turns into an :class:`~relib_pure.errors.InspectionError`
naming the structure, never an ``IndexError`` or a short read.

A hostile header may also declare tables as big as the file (a sparse file
can be 64 GB on no disk): nothing here copies a whole table. Strings are
looked up in place, tables are unpacked a bounded chunk at a time, and the
tables a reader walks entry by entry are capped at :data:`MAX_TABLE_ENTRIES`
(``inspect.too-large``), so time and memory stay bounded by what a real
library holds, not by what a header claims.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from itertools import chain
from typing import NoReturn, Union

from relib_pure.errors import InspectionError

__all__ = ["Buffer", "Image", "StringTable", "MAX_TABLE_ENTRIES", "MAX_NAME"]

#: What readers accept as file contents: ``bytes`` or a read-only ``mmap``.
Buffer = Union[bytes, bytearray, mmap.mmap]

#: Entries of one table (symbols, relocations, hash buckets, headers) a reader
#: walks at most. The biggest real libraries hold a few hundred thousand.
MAX_TABLE_ENTRIES = 1 << 22
#: Longest string (symbol name, path) looked up: C++ and Rust names reach a
#: few kilobytes, nothing real comes near this.
MAX_NAME = 1 << 20
# bytes copied per step when unpacking a table (below malloc's mmap threshold:
# a copy is never a mapping of its own)
_CHUNK = 64 << 10


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

    def check_count(self, count: int, what: str, limit: int = MAX_TABLE_ENTRIES) -> int:
        """``count`` if a reader may walk that many entries of ``what``, else fail."""
        if count > limit:
            self.fail(f"{what} declares {count} entries, more than the {limit} this reader "
                      "walks (no real library comes near)", "inspect.too-large")
        return count

    def read(self, offset: int, size: int, what: str) -> bytes:
        """``size`` bytes at ``offset`` (a copy, so no view pins an mmap).

        For small structures only: tables go through :meth:`rows`.
        """
        self.check(offset, size, what)
        return bytes(self.data[offset:offset + size])

    def unpack(self, layout: struct.Struct, offset: int, what: str) -> tuple[int, ...]:
        """Unpack one ``layout`` at ``offset``."""
        self.check(offset, layout.size, what)
        values: tuple[int, ...] = layout.unpack_from(self.data, offset)
        return values

    def rows(self, offset: int, count: int, layout: struct.Struct, what: str,
             limit: int = MAX_TABLE_ENTRIES) -> Iterator[tuple[int, ...]]:
        """The ``count`` entries of ``layout`` at ``offset``, in order.

        Checked against the file, then against ``limit`` entries, first; copied
        a chunk at a time (a view of an ``mmap`` would pin it until released,
        and a copy of the whole table is what a hostile size exploits).
        """
        size = count * layout.size
        self.check(offset, size, what)
        self.check_count(count, what, limit)
        step = max(1, _CHUNK // layout.size) * layout.size
        end = offset + size
        data = self.data
        return chain.from_iterable(layout.iter_unpack(data[at:min(at + step, end)])
                                   for at in range(offset, end, step))

    def c_string(self, offset: int, end: int, what: str) -> bytes:
        """The NUL-terminated bytes at ``offset``, which must end before ``end``."""
        stop = self.data.find(b"\0", offset, min(end, offset + MAX_NAME))
        if stop < 0 or offset < 0:
            self.fail(f"{what} at offset {offset:#x} is not NUL-terminated within its "
                      "extent")
        return bytes(self.data[offset:stop])


class StringTable:
    """A NUL-terminated string table (``.dynstr``), read in place in the file.

    ``start``/``end`` are its file extent (checked against the file); lookups
    search the terminator inside it, so a table declared 60 GB long costs
    nothing until a name is read, and each name at most :data:`MAX_NAME`.
    """

    __slots__ = ("image", "start", "end", "what")

    def __init__(self, image: Image, offset: int, size: int, what: str) -> None:
        image.check(offset, size, what)
        self.image = image
        self.start = offset
        self.end = offset + size
        self.what = what

    def get(self, offset: int) -> str:
        """The string at ``offset``; a missing terminator is a malformed table."""
        at = self.start + offset
        stop = self.image.data.find(b"\0", at, min(self.end, at + MAX_NAME)) \
            if 0 <= offset else -1
        if stop < 0:
            self.image.fail(f"{self.what}: string at offset {offset:#x} is outside the table "
                            f"or not NUL-terminated")
        # Names are bytes to the loader; keep undecodable ones readable, not fatal.
        return self.image.data[at:stop].decode("utf-8", "backslashreplace")
