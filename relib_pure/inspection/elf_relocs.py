"""Targeted reads of an ELF library's dynamic relocations.

Two questions only, each answered without walking every relocation when that
can be avoided (librustc_driver has ~120,000):

- which addend does the RELATIVE relocation of one address carry? The first
  ``DT_RELACOUNT`` entries are the RELATIVE ones, sorted by offset, so a
  binary search finds it; an aligned ``find`` of the packed address over the
  table is the fallback when the table is not sorted that way.
- does the library use initial-exec TLS (``R_X86_64_TPOFF64`` and friends)?
  Only the entries after the RELATIVE block can hold those.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from relib_pure.inspection._image import Image

__all__ = ["RelocTable", "RelocTables", "find_relative_addend", "has_relocation_type"]


@dataclass(frozen=True)
class RelocTable:
    """One dynamic relocation table: file offset, byte size, entry layout and
    the number of leading RELATIVE entries (``DT_REL[A]COUNT``, 0 if absent)."""

    offset: int
    size: int
    layout: struct.Struct
    relative_count: int

    @property
    def count(self) -> int:
        return self.size // self.layout.size


@dataclass(frozen=True)
class RelocTables:
    """The relocation tables a library's dynamic section declares."""

    rela: RelocTable | None
    rel: RelocTable | None
    has_relr: bool

    def tables(self) -> tuple[RelocTable, ...]:
        return tuple(t for t in (self.rela, self.rel) if t is not None)


def make_table(image: Image, offset: int, size: int, bits: int, endian: str, *,
               with_addend: bool, entry_size: int | None, relative_count: int) -> RelocTable:
    """Describe a REL/RELA table, checking it lies inside the file."""
    word = "Q" if bits == 64 else "I"
    signed = "q" if bits == 64 else "i"
    layout = struct.Struct(endian + word + word + (signed if with_addend else ""))
    what = "RELA table" if with_addend else "REL table"
    if entry_size is not None and entry_size != layout.size:
        image.fail(f"{what} entries are {entry_size} bytes, expected {layout.size}")
    image.check(offset, size, what)
    image.check_count(size // layout.size, what)
    return RelocTable(offset, size - size % layout.size, layout, relative_count)


def _type_of(info: int, bits: int) -> int:
    return info & 0xFFFFFFFF if bits == 64 else info & 0xFF


def find_relative_addend(image: Image, table: RelocTable, vaddr: int, bits: int,
                         relative_type: int | None) -> int | None:
    """The addend of the RELATIVE relocation at ``vaddr`` in a RELA table, or
    ``None`` if the table has no relocation there."""
    entry = _find_entry(image, table, vaddr)
    if entry is None:
        return None
    _offset, info, addend = entry
    kind = _type_of(info, bits)
    if relative_type is not None and kind != relative_type:
        image.fail(f"the relocation at {vaddr:#x} is of type {kind}, not RELATIVE")
    return addend


def _find_entry(image: Image, table: RelocTable, vaddr: int) -> tuple[int, ...] | None:
    layout, base = table.layout, table.offset
    step = layout.size
    data = image.data
    lo, hi = 0, min(table.relative_count, table.count)
    while lo < hi:
        mid = (lo + hi) // 2
        entry: tuple[int, ...] = layout.unpack_from(data, base + mid * step)
        if entry[0] < vaddr:
            lo = mid + 1
        elif entry[0] > vaddr:
            hi = mid
        else:
            return entry
    # Not in the sorted RELATIVE block: search the packed offset in the whole
    # table at C speed, keeping only hits on an entry boundary.
    needle = struct.pack(layout.format[:2], vaddr)
    end = base + table.size
    at = data.find(needle, base, end)
    while at >= 0:
        if (at - base) % step == 0:
            found: tuple[int, ...] = layout.unpack_from(data, at)
            return found
        at = data.find(needle, at + 1, end)
    return None


def has_relocation_type(image: Image, tables: RelocTables, types: frozenset[int],
                        bits: int) -> bool:
    """Whether any REL/RELA entry past the RELATIVE block has one of ``types``."""
    if not types:
        return False
    mask = 0xFFFFFFFF if bits == 64 else 0xFF
    for table in tables.tables():
        first = min(table.relative_count, table.count)
        rows = image.rows(table.offset + first * table.layout.size, table.count - first,
                          table.layout, "relocation table")
        if {entry[1] & mask for entry in rows} & types:
            return True
    return False
