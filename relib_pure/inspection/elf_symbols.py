"""Bulk readers for the ELF dynamic symbol table and its version tables.

A big Rust library has 20,000+ dynamic symbols; building a pyelftools object
per symbol costs several times what the whole report may take. These readers
unpack ``.dynsym`` and ``.gnu.version`` in one ``struct.iter_unpack`` pass,
take names straight from ``.dynstr``, and walk the small ``verdef``/``verneed``
chains with loops bounded by the declared counts and by the file size.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from dataclasses import dataclass

from relib_pure.inspection import _elfconst as C
from relib_pure.inspection._image import Image, StringTable
from relib_pure.model import ImportedSymbol, Symbol, VersionNeed

__all__ = ["VersionTables", "read_versions", "read_symbols"]

logger = logging.getLogger(__name__)

# Version indexes are 15 bits wide, so no real table holds more entries.
_MAX_VERSION_ENTRIES = 0x8000


def _plain_fields(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` is a dataclass of exactly ``names`` with no __post_init__."""
    return (tuple(f.name for f in dataclasses.fields(cls)) == names
            and not hasattr(cls, "__post_init__"))


# A frozen dataclass's __init__ goes through object.__setattr__ once per field:
# for 20,000 symbols that is most of the read. Filling the instance dict
# directly gives equal objects at a sixth of the cost; it is used only while
# the model classes have exactly these fields (else the constructors run).
_FAST = (_plain_fields(Symbol, ("name", "kind", "binding", "visibility", "size", "value",
                                "version", "default_version", "ordinal"))
         and _plain_fields(ImportedSymbol, ("name", "kind", "weak", "version", "version_file",
                                            "library", "ordinal")))


@dataclass(frozen=True)
class VersionTables:
    """Decoded ``.gnu.version_d`` / ``.gnu.version_r``.

    ``by_index`` maps a ``.gnu.version`` index to (version name, file that must
    provide it, or ``None`` for versions this library defines).
    """

    definitions: tuple[str, ...]
    needs: tuple[VersionNeed, ...]
    by_index: dict[int, tuple[str, str | None]]


def read_versions(image: Image, strings: StringTable, endian: str,
                  verdef: tuple[int, int] | None,
                  verneed: tuple[int, int] | None) -> VersionTables:
    """Read the version definitions and needs at (file offset, count)."""
    by_index: dict[int, tuple[str, str | None]] = {}
    definitions: list[str] = []
    if verdef is not None:
        definitions = _read_verdef(image, strings, endian, *verdef, by_index)
    needs: list[VersionNeed] = []
    if verneed is not None:
        needs = _read_verneed(image, strings, endian, *verneed, by_index)
    return VersionTables(tuple(definitions), tuple(needs), by_index)


def _bounded_count(image: Image, count: int, what: str) -> int:
    if count > _MAX_VERSION_ENTRIES:
        image.fail(f"{what} declares {count} entries (at most {_MAX_VERSION_ENTRIES} possible)")
    return count


def _read_verdef(image: Image, strings: StringTable, endian: str, offset: int, count: int,
                 by_index: dict[int, tuple[str, str | None]]) -> list[str]:
    entry = struct.Struct(endian + "HHHHIII")
    aux = struct.Struct(endian + "II")
    names: list[str] = []
    for _ in range(_bounded_count(image, count, "version definition table")):
        _ver, flags, index, aux_count, _hash, aux_off, next_off = image.unpack(
            entry, offset, "version definition")
        if aux_count == 0:
            image.fail(f"version definition at {offset:#x} has no name")
        name_off, _ = image.unpack(aux, offset + aux_off, "version definition name")
        name = strings.get(name_off)
        by_index[index & 0x7FFF] = (name, None)
        # The base entry names the library itself (its soname), not a version.
        if not flags & C.VER_FLG_BASE:
            names.append(name)
        if next_off == 0:
            break
        offset += next_off
    return names


def _read_verneed(image: Image, strings: StringTable, endian: str, offset: int, count: int,
                  by_index: dict[int, tuple[str, str | None]]) -> list[VersionNeed]:
    entry = struct.Struct(endian + "HHIII")
    aux = struct.Struct(endian + "IHHII")
    needs: list[VersionNeed] = []
    for _ in range(_bounded_count(image, count, "version needs table")):
        _ver, aux_count, file_off, aux_off, next_off = image.unpack(
            entry, offset, "version need")
        file = strings.get(file_off)
        versions: list[str] = []
        at = offset + aux_off
        for _ in range(_bounded_count(image, aux_count, "version need")):
            _hash, _flags, index, name_off, aux_next = image.unpack(aux, at, "version need entry")
            name = strings.get(name_off)
            versions.append(name)
            by_index[index & 0x7FFF] = (name, file)
            if aux_next == 0:
                break
            at += aux_next
        needs.append(VersionNeed(file=file, versions=tuple(versions)))
        if next_off == 0:
            break
        offset += next_off
    return needs


def read_symbols(image: Image, strings: StringTable, *, offset: int, count: int, bits: int,
                 endian: str, versym_offset: int | None,
                 versions: VersionTables) -> tuple[list[Symbol], list[ImportedSymbol]]:
    """Exports (defined, global/weak/unique, default/protected) and imports
    (undefined) of the ``count`` symbols at ``offset``, in table order."""
    # Elf32_Sym orders value and size before info/other/shndx (reordered below).
    layout = struct.Struct(endian + ("IBBHQQ" if bits == 64 else "IIIBBH"))
    rows = image.rows(offset, count, layout, "dynamic symbol table")
    if versym_offset is not None:
        versym: tuple[int, ...] | None = struct.unpack(
            f"{endian}{count}H", image.read(versym_offset, 2 * count, "symbol version table"))
    else:
        versym = None

    exports: list[Symbol] = []
    imports: list[ImportedSymbol] = []
    # Tuples indexed by the 4-bit fields: cheaper than dict lookups per symbol.
    kinds = tuple(C.SYMBOL_KINDS.get(t, f"type{t}") for t in range(16))
    bindings = tuple(C.BINDINGS.get(b) for b in range(16))
    visibilities = tuple(C.VISIBILITIES.get(v) for v in range(4))
    by_index = versions.by_index
    # names are looked up in place: the table's extent bounds every search
    data, base, limit = image.data, strings.start, strings.end
    find = data.find
    fast, new = _FAST, object.__new__
    if bits == 32:
        rows = ((n, i, o, x, v, s) for n, v, s, i, o, x in rows)
    # The loop is the hot path for big libraries: locals only, no calls per
    # symbol beyond the name lookup and the model constructors.
    for index, (st_name, info, other, shndx, value, size) in enumerate(rows):
        binding = bindings[info >> 4]
        if binding is None or index == 0:
            continue  # local (or unknown) bindings are not part of the interface
        at = base + st_name
        end = find(b"\0", at, limit)
        if end < 0:
            image.fail(f"dynamic symbol {index}: name offset {st_name:#x} is outside the "
                       f"string table or not NUL-terminated")
        name = data[at:end].decode("utf-8", "backslashreplace")
        kind = kinds[info & 0xF]
        version: str | None = None
        version_file: str | None = None
        hidden = False
        if versym is not None:
            ver = versym[index] & 0x7FFF
            if ver > 1:  # 0 = local, 1 = global: unversioned
                hidden = versym[index] >= C.VERSYM_HIDDEN
                try:
                    version, version_file = by_index[ver]
                except KeyError:
                    image.fail(f"symbol {name!r} has version index {ver}, which no "
                               f"version definition or need declares")
        if shndx == C.SHN_UNDEF:
            if fast:
                imp = new(ImportedSymbol)
                imp.__dict__.update(name=name, kind=kind, weak=binding == "weak",
                                    version=version, version_file=version_file,
                                    library=None, ordinal=None)
            else:
                imp = ImportedSymbol(name, kind, binding == "weak", version, version_file)
            imports.append(imp)
            continue
        visibility = visibilities[other & 0x3]
        if visibility is None:
            continue  # hidden/internal symbols cannot be bound from outside
        if fast:
            sym = new(Symbol)
            sym.__dict__.update(name=name, kind=kind, binding=binding, visibility=visibility,
                                size=size, value=value, version=version,
                                default_version=not hidden, ordinal=None)
        else:
            sym = Symbol(name, kind, binding, visibility, size, value, version, not hidden)
        exports.append(sym)
    return exports, imports
