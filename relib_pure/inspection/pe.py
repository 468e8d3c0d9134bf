"""PE (Windows DLL) reader: bytes -> :class:`~relib_pure.model.LibraryInfo`.

The only module of relib_pure that imports :mod:`pefile`. It parses the
headers and just the export and import directories (``fast_load`` plus
``parse_data_directories``); the relib compilation info is resolved with one
lookup in the base relocation directory instead of parsing all of it.

EXE files are refused with ``inspect.not-a-library``, like ELF executables: a
relib module is always a DLL, and an EXE cannot be loaded as one.

pefile is lenient by design (it records problems as warnings and carries on),
which suits malware triage but not an inspector that must say why a file
cannot be trusted. So this module checks the file's extent itself (every
section's raw data and the COFF symbol table must lie inside the file) and
turns pefile's warnings about the export and import tables into errors.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pefile

from relib_pure import abi
from relib_pure.errors import InspectionError, RelibError
from relib_pure.inspection.relib_info import (MAX_COMPILATION_INFO_LEN,
                                             classify_relib_symbols, decode_compilation_info)
from relib_pure.model import CompilationInfo, LibraryInfo, PEExport, PEImport, PEInfo, RelibInfo

__all__ = ["read_pe", "PE_MACHINES"]

logger = logging.getLogger(__name__)

#: IMAGE_FILE_HEADER.Machine -> normalised architecture name (as for ELF).
PE_MACHINES: dict[int, str] = {
    0x014C: "i386",
    0x8664: "x86_64",
    0xAA64: "aarch64",
    0x01C0: "arm",
    0x01C4: "arm",
}

_IMAGE_FILE_DLL = 0x2000
_PE32_MAGIC = 0x10B
_PE32_PLUS_MAGIC = 0x20B
_DIR_EXPORT = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]
_DIR_IMPORT = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]
_DIR_BASERELOC = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_BASERELOC"]
_REL_BASED_HIGHLOW = 3
_REL_BASED_DIR64 = 10
_COFF_SYMBOL_SIZE = 18
_SCN_MEM_EXECUTE = 0x20000000
# pefile's default (8192) would call a big Rust DLL's export table corrupt.
_MAX_EXPORTS = 1 << 20
# Exceptions pefile lets escape on hostile bytes besides its own PEFormatError.
_PARSE_ERRORS = (pefile.PEFormatError, struct.error, IndexError, KeyError, ValueError,
                 OverflowError, UnicodeError)


Data = bytes | bytearray | memoryview | mmap.mmap


def read_pe(path: str, data: Data) -> LibraryInfo:
    """Read a PE DLL whose bytes are ``data`` (``path`` names it in errors).

    Raises :class:`~relib_pure.errors.InspectionError` with code
    ``inspect.truncated``, ``inspect.malformed``, ``inspect.unknown-format``
    (an ``MZ`` file without a PE header), ``inspect.unsupported`` (NE/LE/LX/TE
    images, or a PE of a machine this reader does not know) or
    ``inspect.not-a-library`` (an EXE).
    """
    size = len(data)
    _check_dos_header(path, data, size)
    with _pefile_errors(path):
        pe = pefile.PE(data=data, fast_load=True, max_symbol_exports=_MAX_EXPORTS)
    # No pe.close(): for caller-owned data it only runs gc.collect(), which costs
    # milliseconds per call in a process holding many objects.
    with _pefile_errors(path):
        return _read(path, pe, data, size)


def _read(path: str, pe: pefile.PE, data: Data, size: int) -> LibraryInfo:
    fh = pe.FILE_HEADER
    oh = getattr(pe, "OPTIONAL_HEADER", None)
    if oh is None:
        _fail(path, "PE file has no optional header", size, _nt_headers_end(pe))
    if oh.Magic == _PE32_PLUS_MAGIC:
        bits = 64
    elif oh.Magic == _PE32_MAGIC:
        bits = 32
    else:
        raise InspectionError(f"unknown optional header magic 0x{oh.Magic:x}", path=path,
                              code="inspect.malformed")
    machine = PE_MACHINES.get(fh.Machine)
    if machine is None:
        raise InspectionError(f"PE machine 0x{fh.Machine:04x} is not supported", path=path,
                              code="inspect.unsupported")
    if not fh.Characteristics & _IMAGE_FILE_DLL:
        raise InspectionError("PE executable (EXE), not a DLL", path=path,
                              code="inspect.not-a-library")
    _check_extent(path, pe, data, size)

    before = len(pe.get_warnings())
    pe.parse_data_directories(directories=[_DIR_EXPORT, _DIR_IMPORT])
    _check_table_warnings(path, pe.get_warnings()[before:])

    _check_export_directory(path, pe, size)
    _check_import_descriptors(path, pe, data, size)
    exports = _exports(path, pe, data, size)
    imports = _imports(path, pe)
    needed = tuple(dict.fromkeys(imp.dll for imp in imports))
    dll_name = _export_dll_name(pe)
    info = PEInfo(
        machine=machine,
        subsystem=_subsystem(oh.Subsystem),
        characteristics=_flag_names(fh.Characteristics, pefile.image_characteristics,
                                    "IMAGE_FILE_"),
        dll_characteristics=_flag_names(oh.DllCharacteristics, pefile.dll_characteristics,
                                        "IMAGE_DLLCHARACTERISTICS_"),
        image_base=oh.ImageBase,
        timestamp=fh.TimeDateStamp,
        dll_name=dll_name,
        exports=exports,
        imports=imports,
    )
    relib = _relib_info(path, pe, data, size, bits, exports)
    return LibraryInfo(
        path=path,
        format="pe",
        machine=machine,
        bits=bits,
        endianness="little",
        os="windows",
        file_size=size,
        sha256=hashlib.sha256(data).hexdigest(),
        soname=dll_name,
        needed=needed,
        pe=info,
        relib=relib,
    )


# -- errors ---------------------------------------------------------------------------------


@contextmanager
def _pefile_errors(path: str) -> Iterator[None]:
    """Turn whatever pefile raises on hostile bytes into an InspectionError."""
    try:
        yield
    except RelibError:
        raise
    except pefile.PEFormatError as e:
        text = str(e.value if hasattr(e, "value") else e).strip("'\"")
        code = "inspect.malformed"
        if "Probably a" in text:  # NE, LE, LX or TE: real formats, not ours
            code = "inspect.unsupported"
        elif "less than expected" in text or "missing" in text or "not found" in text:
            code = "inspect.truncated"
        raise InspectionError(f"bad PE file: {text}", path=path, code=code) from e
    except _PARSE_ERRORS as e:
        raise InspectionError(f"corrupt PE structure ({type(e).__name__}: {e})", path=path,
                              code="inspect.malformed") from e


def _fail(path: str, what: str, size: int, needed_end: int) -> NoReturn:
    """Raise ``truncated`` when the file is shorter than ``needed_end``, else ``malformed``."""
    if needed_end > size:
        raise InspectionError(f"{what}: needs {needed_end} bytes, file has {size}", path=path,
                              code="inspect.truncated")
    raise InspectionError(what, path=path, code="inspect.malformed")


def _check_dos_header(path: str, data: Data, size: int) -> None:
    if size < 0x40:
        raise InspectionError(f"DOS header cut short ({size} of 64 bytes)", path=path,
                              code="inspect.truncated")
    if bytes(data[0:2]) != b"MZ":
        raise InspectionError("no MZ signature", path=path, code="inspect.unknown-format")
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    # the PE signature plus the 20-byte file header must be present
    if e_lfanew + 24 > size:
        raise InspectionError(
            f"e_lfanew 0x{e_lfanew:x} points past the end of the file ({size} bytes)",
            path=path, code="inspect.truncated")
    signature = bytes(data[e_lfanew:e_lfanew + 4])
    if signature[:2] in (b"NE", b"LE", b"LX"):
        raise InspectionError(f"{signature[:2].decode()} executable (16-bit Windows or OS/2),"
                              " not PE", path=path, code="inspect.unsupported")
    if signature != b"PE\0\0":
        raise InspectionError("MZ file without a PE header (DOS program?)", path=path,
                              code="inspect.unknown-format")
    (sections,) = struct.unpack_from("<H", data, e_lfanew + 6)
    (optional_size,) = struct.unpack_from("<H", data, e_lfanew + 20)
    headers_end = e_lfanew + 24 + optional_size + 40 * sections
    if headers_end > size:
        raise InspectionError(f"PE headers and section table need {headers_end} bytes, file has"
                              f" {size}", path=path, code="inspect.truncated")


def _nt_headers_end(pe: pefile.PE) -> int:
    fh = pe.FILE_HEADER
    return int(pe.DOS_HEADER.e_lfanew) + 24 + int(fh.SizeOfOptionalHeader)


def _check_extent(path: str, pe: pefile.PE, data: Data, size: int) -> None:
    """Every structure the headers declare must lie inside the file."""
    fh = pe.FILE_HEADER
    table_end = _nt_headers_end(pe) + 40 * fh.NumberOfSections
    if len(pe.sections) != fh.NumberOfSections:
        _fail(path, f"section table holds {len(pe.sections)} of {fh.NumberOfSections} "
              "declared sections", size, table_end)
    for section in pe.sections:
        if section.SizeOfRawData and section.PointerToRawData:
            end = section.PointerToRawData + section.SizeOfRawData
            if end > size:
                name = _section_name(section)
                _fail(path, f"section {name} raw data ends at {end}", size, end)
    if fh.PointerToSymbolTable and fh.NumberOfSymbols:
        # MinGW keeps a COFF symbol table followed by its string table at the end
        sym_end = fh.PointerToSymbolTable + fh.NumberOfSymbols * _COFF_SYMBOL_SIZE
        if sym_end + 4 > size:
            _fail(path, f"COFF symbol table ends at {sym_end + 4}", size, sym_end + 4)
        (strtab_size,) = struct.unpack_from("<I", data, sym_end)
        if sym_end + strtab_size > size:
            _fail(path, f"COFF string table ends at {sym_end + strtab_size}", size,
                  sym_end + strtab_size)


def _check_table_warnings(path: str, warnings: list[str]) -> None:
    """pefile gives up on a corrupt export/import table with a warning: make it an error."""
    for text in warnings:
        lowered = text.lower()
        # pefile also warns on malware-triage heuristics (a DLL importing just
        # LoadLibrary and GetProcAddress "looks packed"): those are valid files.
        heuristic = "typical of packed" in lowered
        if ("export" in lowered or "import" in lowered) and not heuristic:
            raise InspectionError(f"corrupt table: {text}", path=path,
                                  code="inspect.malformed")
        logger.debug("%s: pefile: %s", path, text)


# -- tables ---------------------------------------------------------------------------------


def _name(path: str, raw: bytes | None, what: str) -> str | None:
    if raw is None:
        return None
    if raw == b"*invalid*":  # pefile's marker for a name that is not a valid identifier
        raise InspectionError(f"invalid {what} name", path=path, code="inspect.malformed")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InspectionError(f"{what} name {raw!r} is not UTF-8", path=path,
                              code="inspect.malformed") from e


def _directory(pe: pefile.PE, index: int) -> tuple[int, int]:
    """(RVA, size) of data directory ``index``; (0, 0) when the header has fewer."""
    entries = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    if index >= len(entries):
        return 0, 0
    return int(entries[index].VirtualAddress), int(entries[index].Size)


def _check_export_directory(path: str, pe: pefile.PE, size: int) -> None:
    """The export arrays and the DLL name must lie in the file.

    pefile clamps a table that runs off its section and reads on, which turns
    a corrupt count into a list of invented exports.
    """
    directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if directory is None:
        return
    d = directory.struct
    arrays = (("address table", d.AddressOfFunctions, 4 * d.NumberOfFunctions),
              ("name pointer table", d.AddressOfNames, 4 * d.NumberOfNames),
              ("ordinal table", d.AddressOfNameOrdinals, 2 * d.NumberOfNames))
    for what, rva, length in arrays:
        if length and _rva_to_offset(pe, rva, length, size) is None:
            raise InspectionError(f"export {what} at RVA 0x{rva:x} (+{length} bytes) is not in "
                                  "the file", path=path, code="inspect.malformed")
    if d.Name and _c_string(pe, d.Name, size) is None:
        raise InspectionError(f"export directory DLL name at RVA 0x{d.Name:x} is not in the "
                              "file", path=path, code="inspect.malformed")


def _check_import_descriptors(path: str, pe: pefile.PE, data: Data, size: int) -> None:
    """Every import descriptor up to the null one must name a DLL and an address table.

    pefile silently drops a descriptor whose name it cannot read, which would
    hide a whole DLL from ``needed``.
    """
    rva, _ = _directory(pe, _DIR_IMPORT)
    if not rva:
        return
    count = 0
    while True:
        at = _rva_to_offset(pe, rva + 20 * count, 20, size)
        if at is None:
            raise InspectionError(f"import descriptor {count} at RVA 0x{rva + 20 * count:x} is "
                                  "not in the file", path=path, code="inspect.malformed")
        _oft, _stamp, _chain, name, first_thunk = struct.unpack_from("<IIIII", data, at)
        if not any(struct.unpack_from("<IIIII", data, at)):
            break
        if not name or _c_string(pe, name, size) is None:
            raise InspectionError(f"import descriptor {count}: DLL name at RVA 0x{name:x} is "
                                  "not in the file", path=path, code="inspect.malformed")
        if not first_thunk:
            raise InspectionError(f"import descriptor {count} has no import address table",
                                  path=path, code="inspect.malformed")
        count += 1
    parsed = len(getattr(pe, "DIRECTORY_ENTRY_IMPORT", ()))
    if parsed != count:
        raise InspectionError(f"import table holds {count} DLLs, {parsed} readable", path=path,
                              code="inspect.malformed")


def _c_string(pe: pefile.PE, rva: int, size: int) -> int | None:
    """File offset of a NUL-terminated string at ``rva``, or None if it runs off the file."""
    at = _rva_to_offset(pe, rva, 1, size)
    if at is None:
        return None
    section_end = next(s.PointerToRawData + s.SizeOfRawData for s in pe.sections
                       if s.VirtualAddress <= rva < s.VirtualAddress + s.SizeOfRawData)
    end = pe.__data__.find(b"\0", at, min(section_end, size))
    return at if end >= 0 else None


def _exports(path: str, pe: pefile.PE, data: Data, size: int) -> tuple[PEExport, ...]:
    directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if directory is None:
        if _directory(pe, _DIR_EXPORT)[0]:
            raise InspectionError("export directory could not be read", path=path,
                                  code="inspect.malformed")
        return ()
    out = [
        PEExport(ordinal=sym.ordinal, name=_name(path, sym.name, "export"), rva=sym.address,
                 forwarder=_name(path, sym.forwarder, "forwarder"))
        for sym in directory.symbols
    ]
    named = sum(1 for e in out if e.name is not None)
    declared = directory.struct.NumberOfNames
    # pefile silently skips named entries whose address is 0, and stops at the
    # first name it dislikes: only the first is harmless
    if named + _null_named_exports(pe, data, size) != declared:
        raise InspectionError(f"export table declares {declared} names, {named} readable",
                              path=path, code="inspect.malformed")
    out.sort(key=lambda e: e.ordinal)
    return tuple(out)


def _null_named_exports(pe: pefile.PE, data: Data, size: int) -> int:
    """How many named exports point at address 0 (checked in bulk: the tables
    were already found to lie in the file)."""
    d = pe.DIRECTORY_ENTRY_EXPORT.struct
    if not d.NumberOfNames:
        return 0
    ordinals_at = _rva_to_offset(pe, d.AddressOfNameOrdinals, 2 * d.NumberOfNames, size)
    functions_at = _rva_to_offset(pe, d.AddressOfFunctions, 4 * d.NumberOfFunctions, size)
    if ordinals_at is None or functions_at is None:
        return 0
    ordinals = struct.unpack_from(f"<{d.NumberOfNames}H", data, ordinals_at)
    functions = struct.unpack_from(f"<{d.NumberOfFunctions}I", data, functions_at)
    return sum(1 for o in ordinals if o < len(functions) and functions[o] == 0)


def _imports(path: str, pe: pefile.PE) -> tuple[PEImport, ...]:
    # pefile leaves the attribute unset for a table holding only its null
    # terminator; _check_import_descriptors already matched the count.
    entries = getattr(pe, "DIRECTORY_ENTRY_IMPORT", ())
    out: list[PEImport] = []
    for entry in entries:
        dll = _name(path, entry.dll, "imported DLL")
        assert dll is not None
        for sym in entry.imports:
            if sym.import_by_ordinal:
                # pefile fills in a guessed name from its own ordinal table: not in the file
                out.append(PEImport(dll=dll, name=None, ordinal=sym.ordinal))
            else:
                out.append(PEImport(dll=dll, name=_name(path, sym.name, "import")))
    return tuple(out)


def _export_dll_name(pe: pefile.PE) -> str | None:
    directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if directory is None or not directory.struct.Name:
        return None
    raw = pe.get_string_at_rva(directory.struct.Name)
    return raw.decode("utf-8", errors="replace") if raw else None


def _subsystem(value: int) -> str:
    name = pefile.SUBSYSTEM_TYPE.get(value)
    if not isinstance(name, str):
        return f"0x{value:x}"
    return name.removeprefix("IMAGE_SUBSYSTEM_")


def _flag_names(value: int, table: list[tuple[str, int]], prefix: str) -> tuple[str, ...]:
    names = [name.removeprefix(prefix) for name, bit in table if value & bit]
    return tuple(dict.fromkeys(names))


def _section_name(section: object) -> str:
    raw: bytes = section.Name  # type: ignore[attr-defined]
    return raw.rstrip(b"\0").decode("latin-1")


# -- relib ----------------------------------------------------------------------------------


def _relib_info(path: str, pe: pefile.PE, data: Data, size: int, bits: int,
                exports: tuple[PEExport, ...]) -> RelibInfo | None:
    names = [e.name for e in exports if e.name is not None and e.forwarder is None]
    # A PE export table does not say function or data: the section does. relib's
    # import slots are data (function pointers the host overwrites).
    code_names = {e.name for e in exports
                  if e.name is not None and e.forwarder is None and _is_code(pe, e.rva)}
    info_export = next((e for e in exports
                        if e.name == abi.COMPILATION_INFO_SYMBOL and e.forwarder is None), None)
    if info_export is None and not any(n.startswith(abi.PUBLIC_PREFIX) for n in names):
        return None
    compilation: CompilationInfo | None = None
    error: str | None = None
    if info_export is None:
        error = f"{abi.COMPILATION_INFO_SYMBOL} is not exported"
    else:
        try:
            raw, source = _read_compilation_string(path, pe, data, size, bits, info_export.rva)
            compilation = decode_compilation_info(raw, source)
        except InspectionError as e:
            error = e.message
    return classify_relib_symbols(names, code_names, compilation, error)


def _read_compilation_string(path: str, pe: pefile.PE, data: Data, size: int, bits: int,
                             rva: int) -> tuple[str, str]:
    """The compilation-info text behind the ``{ptr, len}`` export at ``rva``.

    The pointer field holds an absolute VA that the loader rebases through a
    DIR64 (HIGHLOW for PE32) base relocation: ImageBase is subtracted to get
    the string's RVA.
    """
    word = 8 if bits == 64 else 4
    offset = _rva_to_offset(pe, rva, 2 * word, size)
    if offset is None:
        raise InspectionError(f"compilation info at RVA 0x{rva:x} is not in the file",
                              path=path, code="inspect.malformed")
    fmt = "<QQ" if word == 8 else "<II"
    ptr, length = struct.unpack_from(fmt, data, offset)
    image_base = pe.OPTIONAL_HEADER.ImageBase
    if length > MAX_COMPILATION_INFO_LEN:
        raise InspectionError(f"compilation info length {length} is implausible", path=path,
                              code="inspect.malformed")
    if ptr < image_base:
        raise InspectionError(f"compilation info pointer 0x{ptr:x} lies below the image base",
                              path=path, code="inspect.malformed")
    text_offset = _rva_to_offset(pe, ptr - image_base, length, size)
    if text_offset is None:
        raise InspectionError(f"compilation info string at VA 0x{ptr:x} is not in the file",
                              path=path, code="inspect.malformed")
    raw = bytes(data[text_offset:text_offset + length])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InspectionError("compilation info is not UTF-8", path=path,
                              code="inspect.malformed") from e
    kind = _REL_BASED_DIR64 if word == 8 else _REL_BASED_HIGHLOW
    source = "pe-basereloc" if _has_base_reloc(pe, data, size, rva, kind) else "in-place"
    return text, source


def _is_code(pe: pefile.PE, rva: int) -> bool:
    for section in pe.sections:
        if section.VirtualAddress <= rva < section.VirtualAddress + max(
                section.Misc_VirtualSize, section.SizeOfRawData):
            return bool(section.Characteristics & _SCN_MEM_EXECUTE)
    return False


def _rva_to_offset(pe: pefile.PE, rva: int, length: int, size: int) -> int | None:
    """File offset of ``length`` bytes at ``rva``, or None unless all are file-backed."""
    for section in pe.sections:
        start = section.VirtualAddress
        if start <= rva and rva + length <= start + section.SizeOfRawData:
            offset = section.PointerToRawData + (rva - start)
            if offset + length <= size:
                return int(offset)
            return None
    return None


def _has_base_reloc(pe: pefile.PE, data: Data, size: int, rva: int, kind: int) -> bool:
    """Whether a base relocation of ``kind`` patches ``rva``.

    Walks block headers only (8 bytes each) to the block of ``rva``'s page, so
    a large ``.reloc`` costs a few hops, not a full parse.
    """
    dir_rva, dir_size = _directory(pe, _DIR_BASERELOC)
    start = _rva_to_offset(pe, dir_rva, dir_size, size)
    if not dir_rva or start is None:
        return False
    end = start + dir_size
    page = rva & ~0xFFF
    pos = start
    while pos + 8 <= end:
        block_rva, block_size = struct.unpack_from("<II", data, pos)
        if block_size < 8 or pos + block_size > end:
            return False
        if block_rva == page:
            entries = struct.unpack_from(f"<{(block_size - 8) // 2}H", data, pos + 8)
            return any(e >> 12 == kind and (e & 0xFFF) == rva - page for e in entries)
        pos += block_size
    return False
