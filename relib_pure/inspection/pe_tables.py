"""PE tables read in bulk with :mod:`struct`: the RVA-to-file map, the export
directory, the import descriptor list and base relocations.

No pefile here. These are the parts where pefile is lenient (it skips what it
cannot read and carries on, so a corrupt table would come back short, not
refused) or slow (one Python object and several method calls per export:
about 50 us each, 1 s for a DLL with 20,000 exports). Each table is checked
against the file before it is unpacked, so a corrupt count fails at once
instead of allocating or looping.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from relib_pure.errors import InspectionError
from relib_pure.model import PEExport

__all__ = ["Data", "Section", "Layout", "ExportTable", "read_exports",
           "count_import_descriptors", "has_base_reloc", "REL_BASED_HIGHLOW",
           "REL_BASED_DIR64"]

Data = bytes | bytearray | mmap.mmap

REL_BASED_HIGHLOW = 3
REL_BASED_DIR64 = 10
_SCN_MEM_EXECUTE = 0x20000000
# Longer than any real symbol name (MSVC caps decorated names at 4 KiB).
_MAX_STRING = 1 << 16
_EXPORT_DIRECTORY = struct.Struct("<IIHHIIIIIII")
_IMPORT_DESCRIPTOR = struct.Struct("<IIIII")


@dataclass(frozen=True)
class Section:
    """One section header: where its raw data lies in the file and in memory."""

    name: str
    virtual_address: int
    virtual_size: int
    raw_size: int
    raw_pointer: int
    characteristics: int


class Layout:
    """Maps RVAs to file offsets and reads checked values at them.

    Only file-backed bytes map: an RVA in a section's zero-filled tail (past
    its raw data) has no file offset. Failures raise ``inspect.malformed``
    naming ``path``.
    """

    def __init__(self, path: str, data: Data, sections: Sequence[Section]) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        self._sections = tuple(sorted(sections, key=lambda s: s.virtual_address))
        self._last: Section | None = None

    def fail(self, message: str) -> NoReturn:
        """Raise ``inspect.malformed`` about this file."""
        raise InspectionError(message, path=self.path, code="inspect.malformed")

    def section_of(self, rva: int) -> Section | None:
        """The section whose memory image holds ``rva``."""
        last = self._last
        if last is not None and _in_memory(last, rva):
            return last
        for section in self._sections:
            if _in_memory(section, rva):
                self._last = section
                return section
        return None

    def offset(self, rva: int, length: int) -> int | None:
        """File offset of ``length`` bytes at ``rva``, or None unless all are in the file."""
        section = self.section_of(rva)
        if section is None or rva + length > section.virtual_address + section.raw_size:
            return None
        at = section.raw_pointer + (rva - section.virtual_address)
        return at if at + length <= self.size else None

    def require(self, rva: int, length: int, what: str) -> int:
        """:meth:`offset`, failing (naming ``what``) unless the bytes are in the file."""
        at = self.offset(rva, length)
        if at is None:
            self.fail(f"{what} at RVA 0x{rva:x} (+{length} bytes) is not in the file")
        return at

    def array(self, rva: int, count: int, code: str, what: str) -> tuple[int, ...]:
        """``count`` little-endian integers of struct ``code`` at ``rva``."""
        if not count:
            return ()
        width = struct.calcsize(code)
        at = self.require(rva, count * width, what)
        return struct.unpack_from(f"<{count}{code}", self.data, at)

    def c_string(self, rva: int, what: str) -> str:
        """The NUL-terminated UTF-8 string at ``rva``, within its section's raw data."""
        at = self.require(rva, 1, what)
        section = self.section_of(rva)
        assert section is not None  # require() found it
        end_of_data = min(section.raw_pointer + section.raw_size, self.size, at + _MAX_STRING)
        end = self.data.find(b"\0", at, end_of_data)
        if end < 0:
            self.fail(f"{what} at RVA 0x{rva:x} has no terminating NUL")
        raw = bytes(self.data[at:end])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} at RVA 0x{rva:x} is not UTF-8: {raw[:40]!r}")

    def c_strings(self, rvas: Sequence[int], what: str) -> list[str]:
        """:meth:`c_string` for many RVAs: those in the section of the first one
        (a name table keeps its strings together) are cut from one copy of it."""
        if not rvas:
            return []
        section = self.section_of(rvas[0])
        if section is None:
            return [self.c_string(rva, what) for rva in rvas]
        start = section.virtual_address
        blob = bytes(self.data[section.raw_pointer:min(section.raw_pointer + section.raw_size,
                                                       self.size)])
        out = []
        for rva in rvas:
            local = rva - start
            end = blob.find(b"\0", local, local + _MAX_STRING) if 0 <= local < len(blob) else -1
            if end < 0:
                out.append(self.c_string(rva, what))  # elsewhere, or broken: the slow path
                continue
            try:
                out.append(blob[local:end].decode("utf-8"))
            except UnicodeDecodeError:
                out.append(self.c_string(rva, what))  # raises with the details
        return out

    def is_code(self, rva: int) -> bool:
        """Whether ``rva`` lies in an executable section (a function, not data)."""
        section = self.section_of(rva)
        return section is not None and bool(section.characteristics & _SCN_MEM_EXECUTE)


def _in_memory(section: Section, rva: int) -> bool:
    start = section.virtual_address
    return start <= rva < start + max(section.virtual_size, section.raw_size)


@dataclass(frozen=True)
class ExportTable:
    """The export directory: the DLL's own name and its exports by ordinal."""

    dll_name: str | None
    exports: tuple[PEExport, ...]


def read_exports(layout: Layout, rva: int, size: int) -> ExportTable:
    """Read the export directory at ``rva`` (``size`` bytes, the forwarder range).

    One entry per name, plus one per address-table slot that has no name
    (ordinal-only). A slot holding 0 is not exported: like the loader (and
    objdump, pefile) it yields no entry, even when a name points at it.
    """
    if not rva:
        return ExportTable(None, ())
    at = layout.require(rva, _EXPORT_DIRECTORY.size, "export directory")
    (_flags, _stamp, _major, _minor, name_rva, base, function_count, name_count,
     functions_rva, names_rva, ordinals_rva) = _EXPORT_DIRECTORY.unpack_from(layout.data, at)
    functions = layout.array(functions_rva, function_count, "I", "export address table")
    name_pointers = layout.array(names_rva, name_count, "I", "export name pointer table")
    name_indexes = layout.array(ordinals_rva, name_count, "H", "export ordinal table")
    dll_name = layout.c_string(name_rva, "export directory DLL name") if name_rva else None

    names: dict[int, list[str]] = {}
    for name, index in zip(layout.c_strings(name_pointers, "export name"), name_indexes):
        if index >= function_count:
            layout.fail(f"export name points at slot {index} of a {function_count}-slot "
                        "address table")
        names.setdefault(index, []).append(name)
    exports: list[PEExport] = []
    for index, address in enumerate(functions):
        if not address:
            continue
        # an address inside the export directory is a "DLL.Function" string
        forwarder = (layout.c_string(address, "export forwarder")
                     if rva <= address < rva + size else None)
        slot_names: Sequence[str | None] = names.get(index) or (None,)
        for slot_name in slot_names:
            exports.append(PEExport(ordinal=base + index, name=slot_name, rva=address,
                                    forwarder=forwarder))
    return ExportTable(dll_name, tuple(exports))


def count_import_descriptors(layout: Layout, rva: int) -> int:
    """Number of DLLs in the import directory at ``rva``, every one checked.

    Each descriptor up to the all-zero terminator must name its DLL with a
    readable string and have an import address table.
    """
    if not rva:
        return 0
    count = 0
    while True:
        at = layout.require(rva + _IMPORT_DESCRIPTOR.size * count, _IMPORT_DESCRIPTOR.size,
                            f"import descriptor {count}")
        fields = _IMPORT_DESCRIPTOR.unpack_from(layout.data, at)
        if not any(fields):
            return count
        _lookup, _stamp, _chain, name, first_thunk = fields
        if not name:
            layout.fail(f"import descriptor {count} names no DLL")
        layout.c_string(name, f"import descriptor {count} DLL name")
        if not first_thunk:
            layout.fail(f"import descriptor {count} has no import address table")
        count += 1


def has_base_reloc(layout: Layout, directory_rva: int, directory_size: int, rva: int,
                   kind: int) -> bool:
    """Whether a base relocation of ``kind`` patches ``rva``.

    Walks block headers only (8 bytes each) to the block of ``rva``'s page, so
    a large ``.reloc`` costs a few hops, not a full parse.
    """
    start = layout.offset(directory_rva, directory_size) if directory_rva else None
    if start is None:
        return False
    end = start + directory_size
    page = rva & ~0xFFF
    pos = start
    while pos + 8 <= end:
        block_rva, block_size = struct.unpack_from("<II", layout.data, pos)
        if block_size < 8 or pos + block_size > end:
            return False
        if block_rva == page:
            entries = struct.unpack_from(f"<{(block_size - 8) // 2}H", layout.data, pos + 8)
            return any(e >> 12 == kind and (e & 0xFFF) == rva - page for e in entries)
        pos += block_size
    return False
