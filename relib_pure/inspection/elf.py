"""ELF reader: the bytes of a shared library -> :class:`~relib_pure.model.LibraryInfo`.

Every table is unpacked in bulk with :mod:`struct`: the ELF, program and
section headers, the dynamic tags, ``.dynsym``, ``.gnu.version*`` and the
relocations, located through the dynamic section the way the loader finds
them and bounded by their declared sizes and the file size. pyelftools is the
obvious tool, but importing it costs ~30 ms and building its section objects
parses whole GNU hash tables (~40 ms on librustc_driver), more than this
module needs for a complete report; it is used only to name machines this
module does not know.

Accepted: ``ET_DYN`` objects with a dynamic section. That includes PIE
executables (also ``ET_DYN``; they show an ``interpreter`` and ``PIE`` in
``dynamic_flags_1``, and the check layer can warn, as glibc refuses to dlopen
them). Refused with ``inspect.not-a-library``: ``ET_EXEC`` executables,
``ET_REL`` objects, core files, and ``ET_DYN`` files without a dynamic
section.

Every struct failure is turned into an
:class:`~relib_pure.errors.InspectionError` (``inspect.truncated`` or
``inspect.malformed``) naming the file, in :func:`read_elf` only.
"""

from __future__ import annotations

import logging
import struct

from relib_pure import abi
from relib_pure.errors import InspectionError
from relib_pure.inspection import _elfconst as C
from relib_pure.inspection._image import MAX_TABLE_ENTRIES, Buffer, Image, StringTable
from relib_pure.inspection.elf_relocs import (RelocTable, RelocTables, find_relative_addend,
                                              has_relocation_type, make_table)
from relib_pure.inspection.elf_symbols import VersionTables, read_symbols, read_versions
from relib_pure.inspection.relib_info import (MAX_COMPILATION_INFO_LEN,
                                              RELIB_PREFIXES, classify_relib_symbols,
                                              decode_compilation_info)
from relib_pure.model import (CompilationInfo, Hazards, ImportedSymbol, LibraryInfo, RelibInfo,
                              Symbol)

__all__ = ["read_elf", "machine_name"]

logger = logging.getLogger(__name__)

# What struct and the decoding raise on hostile bytes besides InspectionError.
_PARSE_ERRORS = (struct.error, ValueError, IndexError, KeyError, OverflowError,
                 UnicodeDecodeError)

_HEADER_FIELDS = ("e_type", "e_machine", "e_version", "e_entry", "e_phoff", "e_shoff",
                  "e_flags", "e_ehsize", "e_phentsize", "e_phnum", "e_shentsize", "e_shnum",
                  "e_shstrndx")
_SECTION_FIELDS = ("sh_name", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size",
                   "sh_link", "sh_info", "sh_addralign", "sh_entsize")
_PN_XNUM = 0xFFFF
_SHN_XINDEX = 0xFFFF
# Program and section headers become one dict each: no real shared library
# has more than a few dozen; the ELF header's 16-bit counts top out here too.
_MAX_HEADERS = 1 << 16
# Dynamic entries read before DT_NULL (real libraries: tens to a few hundred).
_MAX_DYNAMIC = 1 << 16
# Bytes of a note segment or .comment section scanned (real ones: < 1 KiB).
_MAX_NOTES = 1 << 20
_MAX_COMMENTS = 1 << 20
# Longest interpreter path read (PATH_MAX).
_MAX_INTERP = 4096
_ODD_BYTES = bytes(i & 1 for i in range(256))



def read_elf(path: str, data: Buffer) -> LibraryInfo:
    """Read the ELF shared library whose bytes are ``data``.

    ``path`` names the file in errors and in the result. ``sha256`` is left
    empty: :func:`relib_pure.inspection.inspect` hashes the file concurrently
    and fills it in. Raises :class:`~relib_pure.errors.InspectionError`.
    """
    image = Image(path, data)
    try:
        return _ElfReader(image).read()
    except InspectionError:
        raise
    except _PARSE_ERRORS as e:
        logger.debug("ELF parse error in %s", path, exc_info=True)
        code = "inspect.truncated" if _is_short_read(e) else "inspect.malformed"
        raise InspectionError(f"corrupt ELF file: {type(e).__name__}: {e}", path=path,
                              code=code) from e


def machine_name(e_machine: int, bits: int) -> str:
    """The normalised architecture name of an ELF ``e_machine`` and class.

    The one naming shared by :attr:`LibraryInfo.machine` and the host
    platform the check layer compares it with (``riscv64``, ``x86_64``).
    """
    name = C.MACHINES.get(e_machine)
    if name is None:
        return _machine_name(e_machine)
    if e_machine in C.MACHINES_WITH_BITS:
        name += str(bits)
    return name


def _machine_name(e_machine: int) -> str:
    """pyelftools' name for a machine outside the common table (``EM_68K`` -> ``68k``)."""
    from elftools.elf.enums import ENUM_E_MACHINE

    for name, value in ENUM_E_MACHINE.items():
        if value == e_machine and name.startswith("EM_"):
            return name[3:].lower()
    return f"em{e_machine}"


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _is_short_read(error: Exception) -> bool:
    # Image checks every extent first; a struct short read is the only one left.
    return isinstance(error, struct.error) and "requires a buffer" in str(error)


class _ElfReader:
    """One pass over one file; attributes hold the layout found so far."""

    def __init__(self, image: Image) -> None:
        self.image = image
        data = image.data
        if image.size < 16:
            image.fail(f"file is {image.size} bytes, too short for an ELF identification",
                       "inspect.truncated")
        if data[:4] != b"\x7fELF":
            image.fail("not an ELF file (bad magic)", "inspect.unknown-format")
        ei_class, ei_data, osabi = data[4], data[5], data[7]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            image.fail(f"ELF identification has class {ei_class} and data encoding {ei_data}")
        self.bits = 32 if ei_class == 1 else 64
        self.endian = "<" if ei_data == 1 else ">"
        self.word = self.bits // 8
        self.osabi = osabi
        layout = struct.Struct(self.endian + ("HHIIIIIHHHHHH" if self.bits == 32
                                              else "HHIQQQIHHHHHH"))
        self.header = dict(zip(_HEADER_FIELDS, image.unpack(layout, 16, "ELF header")))
        self.e_type = self.header["e_type"]
        self.e_machine = self.header["e_machine"]
        self.loads: list[tuple[int, int, int]] = []   # (vaddr, filesz, offset)
        self.segments: list[tuple[int, dict[str, int]]] = []   # (p_type, header)
        self.dynamic: dict[int, list[int]] = {}
        self.relocs = RelocTables(None, None, False)

    # -- layout ---------------------------------------------------------------

    def _read_segments(self) -> None:
        h = self.header
        count = h["e_phnum"]
        if count == _PN_XNUM:  # too many to count in the header: section 0 holds it
            count = self._section_zero()["sh_info"]
        if self.bits == 64:
            layout = struct.Struct(self.endian + "IIQQQQQQ")
            names = ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz",
                     "p_memsz", "p_align")
        else:
            layout = struct.Struct(self.endian + "IIIIIIII")
            names = ("p_type", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz",
                     "p_flags", "p_align")
        for row in self._table_rows("program header table", h["e_phoff"], count,
                                    h["e_phentsize"], layout):
            header = dict(zip(names, row))
            self.segments.append((header["p_type"], header))
            if header["p_type"] == C.PT_LOAD and header["p_filesz"]:
                self.loads.append((header["p_vaddr"], header["p_filesz"], header["p_offset"]))

    def _table_rows(self, what: str, offset: int, count: int, entsize: int,
                    layout: struct.Struct) -> list[tuple[int, ...]]:
        if count and entsize != layout.size:
            self.image.fail(f"{what} entries are {entsize} bytes, expected {layout.size}")
        return list(self.image.rows(offset, count, layout, what, _MAX_HEADERS))

    def _sections(self) -> list[tuple[str, int, dict[str, int]]]:
        """(name, type, header) of every section; names from ``e_shstrndx``."""
        h = self.header
        if h["e_shoff"] == 0:
            return []
        count = h["e_shnum"] or self._section_zero()["sh_size"]
        headers = [dict(zip(_SECTION_FIELDS, row)) for row in self._table_rows(
            "section header table", h["e_shoff"], count, h["e_shentsize"],
            self._section_layout())]
        index = h["e_shstrndx"]
        if index == _SHN_XINDEX and headers:  # the real index is in section 0
            index = headers[0]["sh_link"]
        if index >= len(headers):  # corrupt, unlike 0 (SHN_UNDEF: no names at all)
            self.image.fail(f"section name table index {index} is beyond the "
                            f"{len(headers)} sections")
        if index == 0:
            return [("", s["sh_type"], s) for s in headers]
        names_table = headers[index]
        strings = StringTable(self.image, names_table["sh_offset"], names_table["sh_size"],
                              "section name table")
        return [(strings.get(s["sh_name"]), s["sh_type"], s) for s in headers]

    def _section_layout(self) -> struct.Struct:
        word = "Q" if self.bits == 64 else "I"
        return struct.Struct(self.endian + "II" + word * 4 + "II" + word * 2)

    def _section_zero(self) -> dict[str, int]:
        """Section header 0, which holds counts too big for the ELF header."""
        layout = self._section_layout()
        if self.header["e_shoff"] == 0:
            self.image.fail("ELF header defers a count to section 0, but there are no sections")
        return dict(zip(_SECTION_FIELDS, self.image.unpack(layout, self.header["e_shoff"],
                                                           "section header 0")))

    def offset_of(self, vaddr: int, size: int, what: str) -> int:
        """File offset of ``size`` bytes at virtual address ``vaddr``."""
        for start, filesz, offset in self.loads:
            if start <= vaddr and vaddr + size <= start + filesz:
                return offset + (vaddr - start)
        self.image.fail(f"{what} at address {vaddr:#x} (+{size} bytes) is not in a loaded "
                        f"part of the file")

    def _read_dynamic(self) -> None:
        dyn = next((h for kind, h in self.segments if kind == C.PT_DYNAMIC), None)
        if dyn is None:
            self.image.fail("no dynamic section: a static executable or object, not a shared "
                            "library", "inspect.not-a-library")
        layout = struct.Struct(self.endian + ("ii" if self.bits == 32 else "qQ"))
        declared = dyn["p_filesz"] // layout.size
        self.image.check(dyn["p_offset"], declared * layout.size, "dynamic section")
        # the loader reads up to DT_NULL: so does this, however long the segment claims to be
        count = min(declared, _MAX_DYNAMIC)
        for tag, value in self.image.rows(dyn["p_offset"], count, layout, "dynamic section"):
            if tag == C.DT_NULL:
                return
            self.dynamic.setdefault(tag, []).append(value & ((1 << self.bits) - 1))
        if declared > count:
            self.image.fail(f"dynamic section holds more than {_MAX_DYNAMIC} entries before "
                            "DT_NULL", "inspect.too-large")

    def tag(self, tag: int) -> int | None:
        values = self.dynamic.get(tag)
        return values[0] if values else None

    # -- the report -------------------------------------------------------------

    def read(self) -> LibraryInfo:
        image = self.image
        if self.e_type != C.ET_DYN:
            kind = {C.ET_EXEC: "an executable", C.ET_REL: "a relocatable object file",
                    C.ET_CORE: "a core dump"}.get(self.e_type, f"of ELF type {self.e_type}")
            image.fail(f"ELF file is {kind}, not a shared library", "inspect.not-a-library")
        self._read_segments()
        self._read_dynamic()
        sections = self._sections()

        strtab_addr, strsz = self.tag(C.DT_STRTAB), self.tag(C.DT_STRSZ)
        if strtab_addr is None or strsz is None:
            image.fail("dynamic section has no string table (DT_STRTAB/DT_STRSZ)")
        strings = StringTable(image, self.offset_of(strtab_addr, strsz, "dynamic string table"),
                              strsz, "dynamic string table")
        versions = read_versions(image, strings, self.endian,
                                 self._table(C.DT_VERDEF, C.DT_VERDEFNUM),
                                 self._table(C.DT_VERNEED, C.DT_VERNEEDNUM))
        exports, imports = self._symbols(strings, versions, sections)

        self.relocs = self._relocations()
        flags = self.tag(C.DT_FLAGS) or 0
        flags_1 = self.tag(C.DT_FLAGS_1) or 0
        hazards = self._hazards(flags, flags_1, exports, {s.name for s in imports})
        return LibraryInfo(
            path=image.path,
            format="elf",
            machine=self._machine(),
            bits=self.bits,
            endianness="little" if self.endian == "<" else "big",
            os=C.OS_ABIS.get(self.osabi, f"osabi{self.osabi}"),
            file_size=image.size,
            sha256="",
            elf_type=C.ELF_TYPES[self.e_type],
            soname=self._string(strings, C.DT_SONAME),
            rpath=self._paths(strings, C.DT_RPATH),
            runpath=self._paths(strings, C.DT_RUNPATH),
            needed=tuple(strings.get(v) for v in self.dynamic.get(C.DT_NEEDED, ())),
            build_id=self._build_id(),
            interpreter=self._interpreter(),
            dynamic_flags=C.flag_names(flags, C.DT_FLAGS_NAMES),
            dynamic_flags_1=C.flag_names(flags_1, C.DT_FLAGS_1_NAMES),
            exports=tuple(exports),
            imports=tuple(imports),
            version_definitions=versions.definitions,
            version_needs=versions.needs,
            comments=self._comments(sections),
            relib=self._relib(exports),
            hazards=hazards,
        )

    def _machine(self) -> str:
        return machine_name(self.e_machine, self.bits)

    def _string(self, strings: StringTable, tag: int) -> str | None:
        value = self.tag(tag)
        return strings.get(value) if value is not None else None

    def _paths(self, strings: StringTable, tag: int) -> tuple[str, ...]:
        out: list[str] = []
        for value in self.dynamic.get(tag, ()):
            out.extend(p for p in strings.get(value).split(":") if p)
        return tuple(out)

    def _table(self, addr_tag: int, count_tag: int) -> tuple[int, int] | None:
        addr, count = self.tag(addr_tag), self.tag(count_tag)
        if addr is None or not count:
            return None
        return self.offset_of(addr, 1, "version table"), count

    def _symbols(self, strings: StringTable, versions: VersionTables,
                 sections: list[tuple[str, int, dict[str, int]]]
                 ) -> tuple[list[Symbol], list[ImportedSymbol]]:
        symtab = self.tag(C.DT_SYMTAB)
        if symtab is None:
            return [], []
        entry_size = 16 if self.bits == 32 else 24
        syment = self.tag(C.DT_SYMENT)
        if syment is not None and syment != entry_size:
            self.image.fail(f"dynamic symbols are {syment} bytes each, expected {entry_size}")
        offset = self.offset_of(symtab, entry_size, "dynamic symbol table")
        count = self._symbol_count(offset, entry_size, sections)
        versym_addr = self.tag(C.DT_VERSYM)
        versym = (self.offset_of(versym_addr, 2 * count, "symbol version table")
                  if versym_addr is not None and count else None)
        return read_symbols(self.image, strings, offset=offset, count=count, bits=self.bits,
                            endian=self.endian, versym_offset=versym, versions=versions)

    def _symbol_count(self, offset: int, entry_size: int,
                      sections: list[tuple[str, int, dict[str, int]]]) -> int:
        for _name, kind, h in sections:
            if kind == C.SHT_DYNSYM and h["sh_offset"] == offset:
                return int(h["sh_size"]) // entry_size
        # No section headers (stripped with sstrip): the hash tables know.
        hash_addr = self.tag(C.DT_HASH)
        if hash_addr is not None:
            at = self.offset_of(hash_addr, 8, "hash table")
            return self.image.unpack(struct.Struct(self.endian + "II"), at, "hash table")[1]
        gnu_hash = self.tag(C.DT_GNU_HASH)
        if gnu_hash is not None:
            return self._gnu_hash_count(self.offset_of(gnu_hash, 16, "GNU hash table"))
        self.image.fail("cannot tell the number of dynamic symbols: no section headers and "
                        "no hash table")

    def _gnu_hash_count(self, at: int) -> int:
        image, e = self.image, self.endian
        nbuckets, symoffset, bloom_size, _shift = image.unpack(struct.Struct(e + "IIII"), at,
                                                               "GNU hash table")
        buckets_at = at + 16 + bloom_size * self.word
        last = max((b for (b,) in image.rows(buckets_at, nbuckets, struct.Struct(e + "I"),
                                              "GNU hash buckets")), default=0)
        if last < symoffset:
            return symoffset
        # The last bucket's chain ends at the word with bit 0 set: searched at
        # C speed (each byte mapped to its low bit, a hit kept only on a
        # word's low-order byte), a block at a time, for at most as many
        # words as a symbol table may hold; a chain without an end bit fails.
        chain_at = buckets_at + 4 * nbuckets + 4 * (last - symoffset)
        low = 0 if e == "<" else 3
        limit = MAX_TABLE_ENTRIES - last
        words = 0
        while words < limit:
            block = image.read(chain_at + 4 * words,
                               4 * min(1 << 14, limit - words,
                                       max((image.size - chain_at) // 4 - words, 1)),
                               "GNU hash chain")
            marks = block.translate(_ODD_BYTES)
            hit = marks.find(1, low)
            while hit >= 0 and hit % 4 != low:
                hit = marks.find(1, hit + 1)
            if hit >= 0:
                return last + words + hit // 4 + 1
            words += len(block) // 4
        image.fail(f"GNU hash chain has no end within {MAX_TABLE_ENTRIES} symbols",
                   "inspect.too-large")

    # -- small parts ------------------------------------------------------------

    def _interpreter(self) -> str | None:
        for kind, h in self.segments:
            if kind == C.PT_INTERP:
                size = min(h["p_filesz"], _MAX_INTERP)
                raw = self.image.read(h["p_offset"], size, "interpreter path")
                return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
        return None

    def _build_id(self) -> str | None:
        for kind, h in self.segments:
            if kind != C.PT_NOTE:
                continue
            found = self._notes(h["p_offset"], h["p_filesz"], 8 if h["p_align"] == 8 else 4)
            if found is not None:
                return found
        return None

    def _notes(self, offset: int, size: int, align: int) -> str | None:
        self.image.check(offset, size, "note segment")
        # a build ID comes first; a hostile segment of zero-sized notes could
        # otherwise hold billions
        blob = self.image.read(offset, min(size, _MAX_NOTES), "note segment")
        header = struct.Struct(self.endian + "III")
        pos = 0
        while pos + header.size <= len(blob):
            namesz, descsz, kind = header.unpack_from(blob, pos)
            name_at = pos + header.size
            # binutils' ELF_NOTE_DESC_OFFSET/NEXT_OFFSET: padding counts from the
            # note's start, so 8-aligned GNU property notes need no name padding.
            desc_at = pos + _align_up(header.size + namesz, align)
            end = pos + _align_up(desc_at - pos + descsz, align)
            if desc_at + descsz > len(blob):
                if len(blob) < size:
                    return None  # past what is scanned
                self.image.fail(f"note at offset {offset + pos:#x} runs past its segment")
            if kind == C.NT_GNU_BUILD_ID and blob[name_at:name_at + namesz] == b"GNU\0":
                return blob[desc_at:desc_at + descsz].hex()
            pos = end
        return None

    def _comments(self, sections: list[tuple[str, int, dict[str, int]]]) -> tuple[str, ...]:
        for name, kind, h in sections:
            if name == ".comment" and kind != C.SHT_NOBITS:
                self.image.check(h["sh_offset"], h["sh_size"], ".comment section")
                blob = self.image.read(h["sh_offset"], min(h["sh_size"], _MAX_COMMENTS),
                                       ".comment section")
                return tuple(s.decode("utf-8", "backslashreplace")
                             for s in blob.split(b"\0") if s)
        return ()

    def _relocations(self) -> RelocTables:
        def table(addr_tag: int, size_tag: int, ent_tag: int, count_tag: int,
                  with_addend: bool) -> RelocTable | None:
            addr, size = self.tag(addr_tag), self.tag(size_tag)
            if addr is None or not size:
                return None
            return make_table(self.image, self.offset_of(addr, size, "relocation table"), size,
                              self.bits, self.endian, with_addend=with_addend,
                              entry_size=self.tag(ent_tag),
                              relative_count=self.tag(count_tag) or 0)
        return RelocTables(
            rela=table(C.DT_RELA, C.DT_RELASZ, C.DT_RELAENT, C.DT_RELACOUNT, True),
            rel=table(C.DT_REL, C.DT_RELSZ, C.DT_RELENT, C.DT_RELCOUNT, False),
            has_relr=bool(self.tag(C.DT_RELR)),
        )

    def _hazards(self, flags: int, flags_1: int, exports: list[Symbol],
                 import_names: set[str]) -> Hazards:
        static_tls = bool(flags & C.DF_STATIC_TLS) or has_relocation_type(
            self.image, self.relocs, C.STATIC_TLS_TYPES.get(self.e_machine, frozenset()),
            self.bits)
        tls_size = sum(h["p_memsz"] for kind, h in self.segments if kind == C.PT_TLS)
        return Hazards(
            nodelete=bool(flags_1 & C.DF_1_NODELETE),
            gnu_unique=tuple(s.name for s in exports if s.binding == "gnu_unique"),
            static_tls=static_tls,
            tls_size=tls_size,
            init_array=(self.tag(C.DT_INIT_ARRAYSZ) or 0) // self.word,
            fini_array=(self.tag(C.DT_FINI_ARRAYSZ) or 0) // self.word,
            has_init=C.DT_INIT in self.dynamic,
            has_fini=C.DT_FINI in self.dynamic,
            thread_atexit=not C.THREAD_ATEXIT_SYMBOLS.isdisjoint(import_names),
            textrel=C.DT_TEXTREL in self.dynamic or bool(flags & C.DF_TEXTREL),
            exec_stack=next((i for i, (kind, h) in enumerate(self.segments)
                             if kind == C.PT_GNU_STACK and h["p_flags"] & C.PF_X), None),
        )

    # -- relib -------------------------------------------------------------------

    def _relib(self, exports: list[Symbol]) -> RelibInfo | None:
        prefixes = RELIB_PREFIXES
        relib_names = [s for s in exports if s.name.startswith(prefixes)]
        if not relib_names:
            return None
        info_symbol = next((s for s in relib_names if s.name == abi.COMPILATION_INFO_SYMBOL),
                           None)
        compilation: CompilationInfo | None = None
        error: str | None = None
        if info_symbol is None:
            error = f"{abi.COMPILATION_INFO_SYMBOL} is not defined"
        else:
            try:
                compilation = self._compilation_info(info_symbol)
            except InspectionError as e:
                error = e.message
        defined = [s.name for s in exports]
        code = {s.name for s in exports if s.kind in ("func", "ifunc")}
        return classify_relib_symbols(defined, code, compilation, error)

    def _compilation_info(self, symbol: Symbol) -> CompilationInfo:
        """Decode the ``{ptr, len}`` the symbol holds (relib-abi.md §2.3)."""
        image, word = self.image, self.word
        if symbol.kind != "object" or symbol.size != 2 * word:
            image.fail(f"{symbol.name} is a {symbol.size}-byte {symbol.kind}, expected a "
                       f"{2 * word}-byte object")
        at = self.offset_of(symbol.value, 2 * word, symbol.name)
        ptr, length = image.unpack(struct.Struct(self.endian + ("QQ" if word == 8 else "II")),
                                   at, symbol.name)
        source = "in-place"  # GNU ld and RELR keep the address in the file
        if self.relocs.rela is not None:
            addend = find_relative_addend(image, self.relocs.rela, symbol.value, self.bits,
                                          C.RELATIVE_TYPES.get(self.e_machine))
            if addend is not None:
                ptr, source = addend, "rela"
        if length > MAX_COMPILATION_INFO_LEN:
            image.fail(f"compilation info length {length} is implausible")
        if ptr == 0:
            image.fail("compilation info pointer is 0 and no relocation supplies it")
        raw = image.read(self.offset_of(ptr, length, "compilation info string"), length,
                         "compilation info string")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            image.fail("compilation info is not UTF-8")
        return decode_compilation_info(text, source)
