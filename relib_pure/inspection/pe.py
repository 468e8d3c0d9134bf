"""PE (Windows DLL) reader: bytes -> :class:`~relib_pure.model.LibraryInfo`.

The only module of relib_pure that imports :mod:`pefile`, which reads the
headers, the section table and the import thunks (``fast_load`` plus the
import directory alone). The export directory, the import descriptor list and
the base relocation covering the relib compilation info are read in bulk by
:mod:`relib_pure.inspection.pe_tables`: a lookup by page instead of a parse of
every relocation, and one ``struct`` call per table instead of one object per
export.

EXE files are refused with ``inspect.not-a-library``, like ELF executables: a
relib module is always a DLL, and an EXE cannot be loaded as one.

pefile is lenient by design (it records problems as warnings and carries on),
which suits malware triage but not an inspector that must say why a file
cannot be trusted. So this module checks the file's extent itself (the
headers, every section's raw data, the certificate table and the COFF symbol
table must lie inside the file), counts the import descriptors before pefile reads them, and turns
pefile's warnings about the import table into errors.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pefile  # type: ignore[import-untyped]  # pefile ships no stubs

from relib_pure import abi
from relib_pure.errors import InspectionError, RelibError
from relib_pure.inspection.pe_tables import (REL_BASED_DIR64, REL_BASED_HIGHLOW, Data, Layout,
                                             Section, count_import_descriptors,
                                             has_base_reloc, read_exports)
from relib_pure.inspection.relib_info import (MAX_COMPILATION_INFO_LEN,
                                             classify_relib_symbols, decode_compilation_info)
from relib_pure.model import (CompilationInfo, ImportedSymbol, LibraryInfo, PEExport, PEImport,
                              PEInfo, RelibInfo, Symbol)

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
_DIR_SECURITY = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]
_COFF_SYMBOL_SIZE = 18
_import_limit_lock = threading.Lock()
# Exceptions pefile lets escape on hostile bytes besides its own PEFormatError.
_PARSE_ERRORS = (pefile.PEFormatError, struct.error, IndexError, KeyError, ValueError,
                 OverflowError, UnicodeError)


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
        pe = pefile.PE(data=data, fast_load=True)
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

    layout = Layout(path, data, [_section(s) for s in pe.sections])
    export_rva, export_size = _directory(pe, _DIR_EXPORT)
    table = read_exports(layout, export_rva, export_size)
    imports = _imports(path, pe, layout)
    needed = tuple(dict.fromkeys(imp.dll for imp in imports))
    dll_name = table.dll_name
    exports = tuple(sorted(table.exports, key=lambda e: (e.ordinal, e.name or "")))
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
    relib = _relib_info(pe, layout, bits, exports)
    return LibraryInfo(
        path=path,
        format="pe",
        machine=machine,
        bits=bits,
        endianness="little",
        os="windows",
        file_size=size,
        sha256="",  # relib_pure.inspection hashes the file (bounded, concurrently)
        soname=dll_name,
        needed=needed,
        exports=_symbols(layout, exports),
        imports=tuple(_imported(i) for i in imports),
        pe=info,
        relib=relib,
    )


# -- the format-neutral symbol lists ---------------------------------------------------------

_SCN_MEM_EXECUTE = 0x20000000


def _symbols(layout: Layout, exports: tuple[PEExport, ...]) -> tuple[Symbol, ...]:
    """Named exports as :class:`Symbol`, so ``info.exports`` reads the same for
    ELF and PE: code or data by the section the RVA lies in."""
    out = []
    for e in exports:
        if e.name is None:
            continue
        if e.forwarder is not None:
            kind = "forwarder"
        else:
            section = layout.section_of(e.rva)
            code = section is not None and bool(section.characteristics & _SCN_MEM_EXECUTE)
            kind = "func" if code else "object"
        out.append(Symbol(name=e.name, kind=kind, binding="global", visibility="default",
                          size=0, value=e.rva, ordinal=e.ordinal))
    return tuple(out)


def _imported(imp: PEImport) -> ImportedSymbol:
    name = imp.name if imp.name is not None else f"#{imp.ordinal}"
    return ImportedSymbol(name=name, kind="notype", weak=False, library=imp.dll,
                          ordinal=imp.ordinal)


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
    # the certificate table (Authenticode) is the one directory given by file offset
    cert_offset, cert_size = _directory(pe, _DIR_SECURITY)
    if cert_offset and cert_offset + cert_size > size:
        _fail(path, f"certificate table ends at {cert_offset + cert_size}", size,
              cert_offset + cert_size)
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


def _section(section: pefile.SectionStructure) -> Section:
    return Section(name=_section_name(section), virtual_address=section.VirtualAddress,
                   virtual_size=section.Misc_VirtualSize, raw_size=section.SizeOfRawData,
                   raw_pointer=section.PointerToRawData,
                   characteristics=section.Characteristics)


def _imports(path: str, pe: pefile.PE, layout: Layout) -> tuple[PEImport, ...]:
    """Imports per DLL, by name or ordinal, in table order.

    pefile decodes the thunks (PE32 and PE32+); the descriptors are counted
    first because pefile silently drops one whose DLL name it cannot read,
    which would hide a whole DLL from ``needed``.
    """
    rva, _ = _directory(pe, _DIR_IMPORT)
    declared = count_import_descriptors(layout, rva)
    before = len(pe.get_warnings())
    with _import_limit(len(layout.data)):
        pe.parse_data_directories(directories=[_DIR_IMPORT])
    _check_table_warnings(path, pe.get_warnings()[before:])
    # pefile leaves the attribute unset for a table holding only its terminator
    entries = getattr(pe, "DIRECTORY_ENTRY_IMPORT", ())
    if len(entries) != declared:
        raise InspectionError(f"import table holds {declared} DLLs, {len(entries)} readable",
                              path=path, code="inspect.malformed")
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


@contextmanager
def _import_limit(size: int) -> Iterator[None]:
    """Raise pefile's cap on imported symbols (8,192, a module global) to what
    the file can hold, for one import parse.

    A valid DLL may import more (MinGW links against big DLLs by name); each
    thunk takes at least 4 bytes of the file, so ``size // 4`` bounds any real
    table, and pefile's loop stays bounded by the file as before. The global is
    changed under a lock and restored, so concurrent parses agree on it.
    """
    with _import_limit_lock:
        saved = pefile.MAX_IMPORT_SYMBOLS
        pefile.MAX_IMPORT_SYMBOLS = max(saved, size // 4 + 1)
        try:
            yield
        finally:
            pefile.MAX_IMPORT_SYMBOLS = saved


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


def _relib_info(pe: pefile.PE, layout: Layout, bits: int,
                exports: tuple[PEExport, ...]) -> RelibInfo | None:
    names = [e.name for e in exports if e.name is not None and e.forwarder is None]
    # A PE export table does not say function or data: the section does. relib's
    # import slots are data (function pointers the host overwrites).
    code_names = {e.name for e in exports
                  if e.name is not None and e.forwarder is None and layout.is_code(e.rva)}
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
            raw, source = _read_compilation_string(pe, layout, bits, info_export.rva)
            compilation = decode_compilation_info(raw, source)
        except InspectionError as e:
            error = e.message
    return classify_relib_symbols(names, code_names, compilation, error)


def _read_compilation_string(pe: pefile.PE, layout: Layout, bits: int,
                             rva: int) -> tuple[str, str]:
    """The compilation-info text behind the ``{ptr, len}`` export at ``rva``.

    The pointer field holds an absolute VA that the loader rebases through a
    DIR64 (HIGHLOW for PE32) base relocation: ImageBase is subtracted to get
    the string's RVA.
    """
    word = 8 if bits == 64 else 4
    at = layout.require(rva, 2 * word, "compilation info")
    ptr, length = struct.unpack_from("<QQ" if word == 8 else "<II", layout.data, at)
    image_base = pe.OPTIONAL_HEADER.ImageBase
    if length > MAX_COMPILATION_INFO_LEN:
        layout.fail(f"compilation info length {length} is implausible")
    if ptr < image_base:
        layout.fail(f"compilation info pointer 0x{ptr:x} lies below the image base")
    text_at = layout.offset(ptr - image_base, length)
    if text_at is None:
        layout.fail(f"compilation info string at VA 0x{ptr:x} is not in the file")
    raw = bytes(layout.data[text_at:text_at + length])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        layout.fail("compilation info is not UTF-8")
    kind = REL_BASED_DIR64 if word == 8 else REL_BASED_HIGHLOW
    reloc_rva, reloc_size = _directory(pe, _DIR_BASERELOC)
    covered = has_base_reloc(layout, reloc_rva, reloc_size, rva, kind)
    return text, "pe-basereloc" if covered else "in-place"
