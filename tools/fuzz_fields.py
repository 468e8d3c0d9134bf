"""Where the fields of an ELF or PE file are: the offsets a mutation fuzzer
overwrites and corruption tests patch.

Only pristine fixtures are parsed here (no defence against hostile bytes beyond
staying in bounds): the finders name each field (``e_shoff``,
``shdr[3:DYNSYM].sh_size``, ``export.NumberOfNames``, ``relib_info.ptr``...)
so a finding or a test says exactly what it broke.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Field", "STRUCT_CODES", "read_field", "elf_fields", "pe_fields"]


@dataclass(frozen=True)
class Field:
    """A header or table field of a fixture: ``size`` bytes at ``offset``."""

    name: str
    offset: int
    size: int
    endian: str = "<"


#: struct codes by field width
STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def read_field(data: bytes, f: Field) -> int:
    """The value of field ``f`` in ``data``."""
    return int(struct.unpack_from(f.endian + STRUCT_CODES[f.size], data, f.offset)[0])


def elf_fields(data: bytes) -> tuple[Field, ...]:
    """Offsets of the ELF fields a reader trusts: headers, dynamic, symbols, versions."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return ()
    is64 = data[4] == 2
    e = "<" if data[5] == 1 else ">"
    out: list[Field] = [Field("e_ident.class", 4, 1, e), Field("e_ident.data", 5, 1, e),
                        Field("e_type", 16, 2, e), Field("e_machine", 18, 2, e)]
    w = 8 if is64 else 4
    hdr = ((("e_phoff", 32, 8), ("e_shoff", 40, 8), ("e_phentsize", 54, 2), ("e_phnum", 56, 2),
            ("e_shentsize", 58, 2), ("e_shnum", 60, 2), ("e_shstrndx", 62, 2)) if is64 else
           (("e_phoff", 28, 4), ("e_shoff", 32, 4), ("e_phentsize", 42, 2), ("e_phnum", 44, 2),
            ("e_shentsize", 46, 2), ("e_shnum", 48, 2), ("e_shstrndx", 50, 2)))
    for name, off, size in hdr:
        out.append(Field(name, off, size, e))
    vals = {name: read_field(data, Field(name, off, size, e)) for name, off, size in hdr}
    sh = ((("sh_name", 0, 4), ("sh_type", 4, 4), ("sh_offset", 24, 8), ("sh_size", 32, 8),
           ("sh_link", 40, 4), ("sh_info", 44, 4), ("sh_entsize", 56, 8)) if is64 else
          (("sh_name", 0, 4), ("sh_type", 4, 4), ("sh_offset", 16, 4), ("sh_size", 20, 4),
           ("sh_link", 24, 4), ("sh_info", 28, 4), ("sh_entsize", 36, 4)))
    sections: list[tuple[int, int, int, int, int]] = []  # type, offset, size, entsize, link
    for i in range(vals["e_shnum"]):
        base = vals["e_shoff"] + i * vals["e_shentsize"]
        if base + vals["e_shentsize"] > len(data):
            break
        rec = {n: read_field(data, Field(n, base + o, s, e)) for n, o, s in sh}
        label = f"shdr[{i}:{_SHT.get(rec['sh_type'], hex(rec['sh_type']))}]"
        out.extend(Field(f"{label}.{n}", base + o, s, e) for n, o, s in sh)
        sections.append((rec["sh_type"], rec["sh_offset"], rec["sh_size"], rec["sh_entsize"],
                         rec["sh_link"]))
    ph = ((("p_type", 0, 4), ("p_offset", 8, 8), ("p_vaddr", 16, 8), ("p_filesz", 32, 8),
           ("p_memsz", 40, 8)) if is64 else
          (("p_type", 0, 4), ("p_offset", 4, 4), ("p_vaddr", 8, 4), ("p_filesz", 16, 4),
           ("p_memsz", 20, 4)))
    loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
    for i in range(vals["e_phnum"]):
        base = vals["e_phoff"] + i * vals["e_phentsize"]
        if base + vals["e_phentsize"] > len(data):
            break
        out.extend(Field(f"phdr[{i}].{n}", base + o, s, e) for n, o, s in ph)
        rec = {n: read_field(data, Field(n, base + o, s, e)) for n, o, s in ph}
        if rec["p_type"] == 1:  # PT_LOAD
            loads.append((rec["p_vaddr"], rec["p_offset"], rec["p_filesz"]))
    out.extend(_elf_relib_fields(data, is64, e, sections, loads))
    for sh_type, off, size, entsize, _link in sections:
        if off + size > len(data):
            continue
        if sh_type == 6:  # dynamic: every entry's tag and value
            for j in range(min(size // (2 * w), 64)):
                out.append(Field(f"dyn[{j}].d_tag", off + 2 * w * j, w, e))
                out.append(Field(f"dyn[{j}].d_val", off + 2 * w * j + w, w, e))
        elif sh_type in (11, 2) and entsize:  # dynsym / symtab: a few entries
            count = size // entsize
            picks = sorted({*range(min(count, 6)), *range(max(count - 3, 0), count)})
            sym = ((("st_name", 0, 4), ("st_info", 4, 1), ("st_shndx", 6, 2), ("st_value", 8, 8),
                    ("st_size", 16, 8)) if is64 else
                   (("st_name", 0, 4), ("st_value", 4, 4), ("st_size", 8, 4), ("st_info", 12, 1),
                    ("st_shndx", 14, 2)))
            kind = "dynsym" if sh_type == 11 else "symtab"
            for j in picks:
                out.extend(Field(f"{kind}[{j}].{n}", off + j * entsize + o, s, e)
                           for n, o, s in sym)
        elif sh_type == 0x6FFFFFFE and size >= 16:  # verneed
            out.extend(Field(f"verneed[0].{n}", off + o, s, e) for n, o, s in
                       (("vn_cnt", 2, 2), ("vn_file", 4, 4), ("vn_aux", 8, 4), ("vn_next", 12, 4)))
        elif sh_type == 0x6FFFFFFD and size >= 20:  # verdef
            out.extend(Field(f"verdef[0].{n}", off + o, s, e) for n, o, s in
                       (("vd_cnt", 6, 2), ("vd_aux", 12, 4), ("vd_next", 16, 4)))
        elif sh_type == 4 and size >= 3 * w:  # rela: the first entries
            for j in range(min(size // w, 6)):
                out.append(Field(f"rela.word[{j}]", off + j * w, w, e))
    return tuple(out)


def _elf_relib_fields(data: bytes, is64: bool, e: str,
                      sections: list[tuple[int, int, int, int, int]],
                      loads: list[tuple[int, int, int]]) -> list[Field]:
    """The relib compilation info ``{ptr, len}`` and the RELA entry that fills
    its pointer: the path from symbol to string the static decoder follows."""
    w = 8 if is64 else 4
    info_vaddr = None
    for sh_type, off, size, entsize, link in sections:
        if sh_type != 11 or not entsize or link >= len(sections):
            continue
        str_off, str_size = sections[link][1], sections[link][2]
        layout = struct.Struct(e + ("IBBHQQ" if is64 else "IIIBBH"))
        for j in range(min(size // entsize, (len(data) - off) // entsize)):
            row = layout.unpack_from(data, off + j * entsize)
            name_at, value = row[0], (row[4] if is64 else row[1])
            end = data.find(b"\0", str_off + name_at, str_off + str_size)
            if end > 0 and data[str_off + name_at:end] == b"__RELIB__CRATE_COMPILATION_INFO__":
                info_vaddr = value
    if info_vaddr is None:
        return []
    out = []
    for vaddr, offset, filesz in loads:
        if vaddr <= info_vaddr < vaddr + filesz and offset + info_vaddr - vaddr + 2 * w <= len(data):
            at = offset + info_vaddr - vaddr
            out += [Field("relib_info.ptr", at, w, e), Field("relib_info.len", at + w, w, e)]
    for sh_type, off, size, entsize, _link in sections:
        if sh_type == 4 and entsize == 3 * w and off + size <= len(data):
            for j in range(size // entsize):
                if read_field(data, Field("", off + j * entsize, w, e)) == info_vaddr:
                    out += [Field(f"relib_info.rela.{n}", off + j * entsize + k * w, w, e)
                            for k, n in enumerate(("r_offset", "r_info", "r_addend"))]
        elif sh_type == 19 and off + size <= len(data):  # RELR: small, take every word
            out += [Field(f"relr.word[{j}]", off + j * w, w, e) for j in range(min(size // w, 64))]
    return out


_SHT = {1: "PROGBITS", 2: "SYMTAB", 3: "STRTAB", 4: "RELA", 6: "DYNAMIC", 7: "NOTE",
        8: "NOBITS", 11: "DYNSYM", 14: "INIT_ARRAY", 15: "FINI_ARRAY", 19: "RELR",
        0x6FFFFFF6: "GNU_HASH", 0x6FFFFFFD: "VERDEF", 0x6FFFFFFE: "VERNEED",
        0x6FFFFFFF: "VERSYM"}


def pe_fields(data: bytes) -> tuple[Field, ...]:
    """Offsets of the PE fields a reader trusts: headers, sections, export/import tables."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        return ()
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if lfanew + 24 > len(data) or data[lfanew:lfanew + 4] != b"PE\0\0":
        return (Field("e_lfanew", 0x3C, 4),)
    fh = lfanew + 4
    out = [Field("e_lfanew", 0x3C, 4), Field("Machine", fh, 2), Field("NumberOfSections", fh + 2, 2),
           Field("TimeDateStamp", fh + 4, 4), Field("PointerToSymbolTable", fh + 8, 4),
           Field("NumberOfSymbols", fh + 12, 4), Field("SizeOfOptionalHeader", fh + 16, 2),
           Field("Characteristics", fh + 18, 2)]
    nsec, opt_size = struct.unpack_from("<H", data, fh + 2)[0], struct.unpack_from(
        "<H", data, fh + 16)[0]
    opt = fh + 20
    (magic,) = struct.unpack_from("<H", data, opt)
    plus = magic == 0x20B
    out += [Field("Magic", opt, 2), Field("SizeOfHeaders", opt + 60, 4),
            Field("ImageBase", opt + 24, 8) if plus else Field("ImageBase", opt + 28, 4),
            Field("NumberOfRvaAndSizes", opt + (108 if plus else 92), 4)]
    dirs = opt + (112 if plus else 96)
    for i, name in enumerate(("EXPORT", "IMPORT", "RESOURCE", "EXCEPTION", "SECURITY",
                              "BASERELOC")):
        out += [Field(f"dir[{name}].VirtualAddress", dirs + 8 * i, 4),
                Field(f"dir[{name}].Size", dirs + 8 * i + 4, 4)]
    table = opt + opt_size
    sections: list[tuple[int, int, int]] = []  # va, raw size, raw pointer
    for i in range(nsec):
        base = table + 40 * i
        if base + 40 > len(data):
            break
        name = data[base:base + 8].rstrip(b"\0").decode("latin-1")
        out += [Field(f"section[{i}:{name}].{n}", base + o, 4) for n, o in
                (("VirtualSize", 8), ("VirtualAddress", 12), ("SizeOfRawData", 16),
                 ("PointerToRawData", 20))]
        va, raw_size, raw_ptr = struct.unpack_from("<III", data, base + 12)
        sections.append((va, raw_size, raw_ptr))

    def offset(rva: int) -> int | None:
        for va, raw_size, raw_ptr in sections:
            if va <= rva < va + raw_size and raw_ptr + rva - va < len(data):
                return raw_ptr + rva - va
        return None

    export_rva, import_rva = (struct.unpack_from("<I", data, dirs + 8 * i)[0] for i in (0, 1))
    exp = offset(export_rva) if export_rva else None
    if exp is not None and exp + 40 <= len(data):
        out += [Field(f"export.{n}", exp + o, 4) for n, o in
                (("Name", 12), ("Base", 16), ("NumberOfFunctions", 20), ("NumberOfNames", 24),
                 ("AddressOfFunctions", 28), ("AddressOfNames", 32),
                 ("AddressOfNameOrdinals", 36))]
        info_rva = _pe_export_rva(data, exp, offset, b"__RELIB__CRATE_COMPILATION_INFO__")
        info_at = offset(info_rva) if info_rva is not None else None
        if info_rva is not None and info_at is not None and info_at + 16 <= len(data):
            w = 8 if plus else 4
            out += [Field("relib_info.ptr", info_at, w), Field("relib_info.len", info_at + w, w)]
            reloc_rva, _ = struct.unpack_from("<II", data, dirs + 8 * 5)
            out += _pe_reloc_fields(data, offset(reloc_rva) if reloc_rva else None, info_rva)
    imp = offset(import_rva) if import_rva else None
    for j in range(8):
        if imp is None or imp + 20 * (j + 1) > len(data):
            break
        out += [Field(f"import[{j}].{n}", imp + 20 * j + o, 4) for n, o in
                (("OriginalFirstThunk", 0), ("Name", 12), ("FirstThunk", 16))]
    return tuple(out)


def _pe_export_rva(data: bytes, exp: int, offset: Callable[[int], int | None],
                   name: bytes) -> int | None:
    """RVA the export table gives for ``name`` (a pristine fixture: no checks beyond bounds)."""
    functions, names, ordinals = struct.unpack_from("<III", data, exp + 28)
    count = struct.unpack_from("<I", data, exp + 24)[0]
    names_at, ordinals_at, functions_at = offset(names), offset(ordinals), offset(functions)
    if names_at is None or ordinals_at is None or functions_at is None:
        return None
    for i in range(count):
        name_at = offset(struct.unpack_from("<I", data, names_at + 4 * i)[0])
        if name_at is not None and data[name_at:name_at + len(name) + 1] == name + b"\0":
            ordinal = struct.unpack_from("<H", data, ordinals_at + 2 * i)[0]
            return int(struct.unpack_from("<I", data, functions_at + 4 * ordinal)[0])
    return None


def _pe_reloc_fields(data: bytes, start: int | None, rva: int) -> list[Field]:
    """The base relocation block of ``rva``'s page: its header and the entry for ``rva``."""
    pos = start
    while pos is not None and pos + 8 <= len(data):
        page, size = struct.unpack_from("<II", data, pos)
        if size < 8:
            break
        if page == rva & ~0xFFF:
            out = [Field("basereloc.block.VirtualAddress", pos, 4),
                   Field("basereloc.block.SizeOfBlock", pos + 4, 4)]
            for i in range((size - 8) // 2):
                entry = struct.unpack_from("<H", data, pos + 8 + 2 * i)[0]
                if entry & 0xFFF == rva & 0xFFF:
                    out.append(Field("basereloc.relib_info_entry", pos + 8 + 2 * i, 2))
            return out
        pos += size
    return []
