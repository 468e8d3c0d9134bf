"""Signatures of a library's exported functions and import slots, from DWARF.

A debug build says, for every function it defines, the parameters' names and
types and the return type; relib's module side is no exception (its
``__relib__`` functions and import-slot statics are ordinary items of the
module crate). :func:`read_debug_info` reads them for the symbols a library
exports, without loading it:

- the symbols come from the inspection model (their addresses);
- the compile units holding those addresses are found through
  ``.debug_aranges`` (or, without it, the units' own address ranges), and only
  those units are parsed (pyelftools' DWARF reader);
- a function is the ``DW_TAG_subprogram`` whose ``DW_AT_low_pc`` is the
  symbol's address, a slot (or an exported variable) the ``DW_TAG_variable``
  whose location is it. Address ranges cover code only in C objects: a
  variable no unit was found for is looked up among the units' top-level
  entries (a C global's place), skipping their subtrees.

Corrupt DWARF raises :class:`~relib_pure.errors.InspectionError`
(``inspect.bad-dwarf``, naming the file); every walk is bounded (DIEs read,
type depth, fields, parameters), so a hostile file costs bounded time.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from relib_pure import abi
from relib_pure.errors import InspectionError
from relib_pure.model import (DebugField, DebugInfo, DebugParam, DebugSignature, DebugType,
                              LibraryInfo)

if TYPE_CHECKING:
    from relib_pure.inspection._image import Buffer

__all__ = ["read_debug_info", "with_debug_info", "MAX_DIES", "MAX_FUNCTIONS", "MAX_TYPE_DEPTH"]

logger = logging.getLogger(__name__)

#: DIEs parsed in one read, over every unit (a unit of a real relib debug
#: module has a few thousand): past it the rest is left unread and counted in
#: ``DebugInfo.skipped``
MAX_DIES = 2_000_000
#: plain exported functions read (relib's own are always read), and as many variables
MAX_FUNCTIONS = 4096
#: top-level entries looked through for variables no address range placed (a C
#: global's place; C++ and Rust nest theirs in namespaces, which are not entered)
MAX_GLOBAL_DIES = 200_000
#: nesting of struct fields expanded (and of type chains followed)
MAX_TYPE_DEPTH = 6
#: depth a pointer hop costs (its target's fields are read one level less deep)
_POINTER_DEPTH = 3
#: uncompressed size a compressed debug section may claim (or 64x the file)
MAX_INFLATED = 256 << 20
#: members / parameters kept per aggregate / function
MAX_MEMBERS = 512

_DW_OP_ADDR = 0x03
_DW_OP_ADDRX = 0xA1
_DW_OP_GNU_ADDR_INDEX = 0xFB
_ENCODING_KIND = {0x02: "bool", 0x04: "float", 0x05: "signed", 0x06: "signed-char",
                  0x07: "unsigned", 0x08: "unsigned-char", 0x10: "unsigned-char",
                  0x01: "unsigned"}
_LOOK_THROUGH = frozenset({"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                           "DW_TAG_restrict_type", "DW_TAG_atomic_type"})
_POINTERS = frozenset({"DW_TAG_pointer_type", "DW_TAG_reference_type",
                       "DW_TAG_rvalue_reference_type"})
_AGGREGATES = {"DW_TAG_structure_type": "struct", "DW_TAG_class_type": "struct",
               "DW_TAG_union_type": "union"}
_RUST_WRAPPERS = ("MaybeUninit<", "ManuallyDrop<", "MaybeDangling<")
_VOID = DebugType("void", "void", 0)


@dataclass(frozen=True)
class _Target:
    symbol: str
    role: str
    code: bool


def with_debug_info(info: LibraryInfo, source: str | Buffer | None = None) -> LibraryInfo:
    """``info`` with :attr:`~relib_pure.model.LibraryInfo.debug` filled (read
    from ``source``, a path or the file's bytes, default ``info.path``)."""
    import dataclasses

    if info.debug is not None:
        return info
    return dataclasses.replace(info, debug=read_debug_info(info, source))


def read_debug_info(info: LibraryInfo, source: str | Buffer | None = None) -> DebugInfo:
    """Read the DWARF signatures of ``info``'s exported functions and relib slots.

    ``source`` is the file (a path, or its bytes / mapping), by default
    ``info.path``. Returns ``status="absent"`` for a file without DWARF;
    raises :class:`~relib_pure.errors.InspectionError` (``inspect.bad-dwarf``)
    when the DWARF is corrupt, ``inspect.io`` when the file cannot be read.
    """
    if info.format != "elf":
        return DebugInfo("unsupported", f"DWARF is read from ELF files only, not {info.format}")
    targets, skipped = _targets(info)
    stream: BinaryIO
    opened: BinaryIO | None = None
    if source is None or isinstance(source, (str, os.PathLike)):
        name = os.fspath(source) if source is not None else info.path
        try:
            opened = stream = open(name, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise InspectionError(f"cannot read the file for its DWARF: {e.strerror}",
                                  path=info.path, code="inspect.io") from e
    else:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source  # type: ignore[assignment]
    try:
        return _Reader(info.path, stream, targets, skipped, _generation(info)).read()
    except InspectionError:
        raise
    except (RecursionError, MemoryError) as e:
        raise _bad(info.path, f"DWARF nests beyond what can be read ({type(e).__name__})") from e
    except Exception as e:  # noqa: BLE001 - pyelftools raises anything on corrupt input
        raise _bad(info.path, f"{type(e).__name__}: {e}") from e
    finally:
        if opened is not None:
            opened.close()


def _generation(info: LibraryInfo) -> abi.Generation | None:
    ci = info.relib.compilation_info if info.relib is not None else None
    return abi.generation_for(ci.relib_version) if ci is not None else None


def _bad(path: str, why: str) -> InspectionError:
    return InspectionError(f"corrupt DWARF debug information: {why}", path=path,
                           code="inspect.bad-dwarf")


def _targets(info: LibraryInfo) -> tuple[dict[int, list[_Target]], int]:
    """Address -> the symbols there worth a signature; and how many plain
    functions were left out past :data:`MAX_FUNCTIONS`."""
    relib = info.relib
    roles: dict[str, str] = {}
    if relib is not None:
        for f in relib.exports:
            roles[f.symbol] = "relib-entry" if f.trait is None else "relib-export"
        for f in relib.imports:
            roles[f.symbol] = "relib-import"
    out: dict[int, list[_Target]] = {}
    plain = 0
    variables = 0
    skipped = 0
    for sym in info.exports:
        code = sym.kind in ("func", "ifunc")
        role = roles.get(sym.name)
        if role is None and sym.name.startswith(abi.POST_PREFIX + abi.PUBLIC_PREFIX):
            role = "relib-post"
        if role is None and not code:
            if sym.kind != "object" or _relib_owned(sym.name):
                continue  # thread-locals, absolute symbols, relib's own statics
            if variables >= MAX_FUNCTIONS:
                skipped += 1
                continue
            variables += 1
            role = "variable"
        if role is None:
            if plain >= MAX_FUNCTIONS:
                skipped += 1
                continue
            plain += 1
            role = "function"
        if sym.value:
            out.setdefault(sym.value, []).append(_Target(sym.name, role, code))
    return out, skipped


def _relib_owned(name: str) -> bool:
    """relib's own statics (compilation info, internal slots): not a library's API."""
    return name.startswith(("__RELIB__", abi.PUBLIC_PREFIX, abi.POST_PREFIX + abi.PUBLIC_PREFIX))


class _Reader:
    """One read of one file's DWARF (state: the units and the type cache)."""

    def __init__(self, path: str, stream: BinaryIO, targets: dict[int, list[_Target]],
                 skipped: int, generation: abi.Generation | None) -> None:
        self.path = path
        self.generation = generation
        self.stream = stream
        self.targets = targets
        self.skipped = skipped
        self.dies = 0
        self.types: dict[tuple[int, int], DebugType] = {}

    def read(self) -> DebugInfo:
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(self.stream)
        if elf.get_section_by_name(".debug_info") is None:
            return DebugInfo("absent", self._absent_message(elf), skipped=self.skipped)
        self._check_compressed(elf)
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        by_unit, total = self._units_of(dwarf)
        found: dict[str, DebugSignature] = {}
        version: int | None = None
        unread: set[int] = set()
        read = 0
        for offset in sorted(by_unit):
            if self.dies >= MAX_DIES:
                unread |= by_unit[offset]
                continue
            cu = dwarf.get_CU_at(offset)
            version = version or int(cu["version"])
            if not self._scan(dwarf, cu, by_unit[offset], found):
                unread |= by_unit[offset]
            read += 1
        placed = {a for addrs in by_unit.values() for a in addrs}
        globals_ = {a for a, ts in self.targets.items() if a not in placed
                    and any(t.role == "variable" for t in ts)}
        if globals_ and self.dies < MAX_DIES:
            read += self._scan_globals(dwarf, globals_, found, set(by_unit))
        wanted = [t for ts in self.targets.values() for t in ts]
        cut = {t.symbol for a in unread for t in self.targets[a] if t.symbol not in found}
        missing = sorted(t.symbol for t in wanted if t.symbol not in found
                         and t.symbol not in cut and (t.code or t.role not in ("function",
                                                                               "variable")))
        ordered = tuple(found[t.symbol] for t in sorted(wanted, key=lambda t: t.symbol)
                        if t.symbol in found)
        message = None
        if cut:
            message = (f"stopped after {MAX_DIES} DIEs (the reading bound): "
                       f"{len(cut)} symbol(s) not read")
            logger.warning("%s: %s", self.path, message)
        logger.debug("%s: %d signature(s) from %d of %d unit(s), %d DIEs", self.path,
                     len(ordered), read, total, self.dies)
        return DebugInfo("ok", message, version, ordered, tuple(missing), read, total,
                         self.skipped + len(cut))

    def _check_compressed(self, elf: Any) -> None:
        """pyelftools inflates a compressed (``SHF_COMPRESSED``) section whole:
        a size claim far beyond the file's is a decompression bomb, not DWARF."""
        self.stream.seek(0, os.SEEK_END)
        limit = max(MAX_INFLATED, 64 * self.stream.tell())
        for section in elf.iter_sections():
            if section.name.startswith(".debug_") and section.compressed \
                    and section.data_size > limit:
                raise _bad(self.path, f"{section.name} claims {section.data_size} bytes "
                                      f"uncompressed (more than {limit})")

    @staticmethod
    def _absent_message(elf: Any) -> str:
        link = elf.get_section_by_name(".gnu_debuglink")
        if link is not None:
            name = bytes(link.data()).split(b"\0", 1)[0].decode("utf-8", "replace")
            return (f"no DWARF in the file: its debug information was split off into "
                    f"{name!r} (.gnu_debuglink), which is not read")
        return ("no DWARF in the file (no .debug_info section): built without debug "
                "information, or stripped")

    # -- which units ---------------------------------------------------------------------

    def _units_of(self, dwarf: Any) -> tuple[dict[int, set[int]], int]:
        """Unit offset -> the target addresses it covers; and the unit count."""
        by_unit: dict[int, set[int]] = {}
        left = set(self.targets)
        aranges = dwarf.get_aranges()
        if aranges is not None:
            for addr in sorted(left):
                offset = aranges.cu_offset_at_addr(addr)
                if offset is not None:
                    by_unit.setdefault(offset, set()).add(addr)
            left -= {a for s in by_unit.values() for a in s}
        total = 0
        if left or not by_unit:
            # No (complete) .debug_aranges: LLVM emits none by default. Each
            # unit's top DIE has its ranges; only that one DIE is parsed.
            for cu in dwarf.iter_CUs():
                total += 1
                if not left:
                    continue
                covered = {a for a in left if self._unit_covers(dwarf, cu, a)}
                if covered:
                    by_unit.setdefault(cu.cu_offset, set()).update(covered)
                    left -= covered
        else:
            total = self._count_units(dwarf)
        return by_unit, total

    @staticmethod
    def _count_units(dwarf: Any) -> int:
        # headers only: 4 bytes of length per unit, no DIE parsed
        info = dwarf.debug_info_sec
        data = info.stream
        size = info.size
        offset = count = 0
        while offset + 4 <= size and count < 1_000_000:
            data.seek(offset)
            length = int.from_bytes(data.read(4), "little" if dwarf.config.little_endian
                                    else "big")
            if length == 0xFFFFFFFF:
                length = int.from_bytes(data.read(8), "little" if dwarf.config.little_endian
                                        else "big") + 8
            if length == 0:
                break
            offset += length + 4
            count += 1
        return count

    def _unit_covers(self, dwarf: Any, cu: Any, addr: int) -> bool:
        top = cu.get_top_DIE()
        self.dies += 1
        attrs = top.attributes
        if "DW_AT_ranges" in attrs:
            ranges = dwarf.range_lists()
            if ranges is None:
                return False
            base = attrs["DW_AT_low_pc"].value if "DW_AT_low_pc" in attrs else 0
            for entry in ranges.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu):
                lo = getattr(entry, "begin_offset", None)
                hi = getattr(entry, "end_offset", None)
                if lo is None or hi is None:
                    base = getattr(entry, "base_address", base)
                    continue
                if not getattr(entry, "is_absolute", False):
                    lo, hi = lo + base, hi + base
                if lo <= addr < hi:
                    return True
            return False
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            lo = int(attrs["DW_AT_low_pc"].value)
            high = attrs["DW_AT_high_pc"]
            hi = int(high.value) if high.form == "DW_FORM_addr" else lo + int(high.value)
            return lo <= addr < hi
        return False

    def _scan_globals(self, dwarf: Any, addrs: set[int], found: dict[str, DebugSignature],
                      already: set[int]) -> int:
        """Fill ``found`` with the variables at ``addrs`` from the units' top-level
        entries (their subtrees skipped); returns how many units it looked into
        besides the ``already`` read ones (offsets)."""
        pending = set(addrs)
        looked = 0
        limit = min(MAX_DIES, self.dies + MAX_GLOBAL_DIES)
        for cu in dwarf.iter_CUs():
            if not pending or self.dies >= limit:
                break
            looked += cu.cu_offset not in already
            top = cu.get_top_DIE()
            unit = _text(top.attributes.get("DW_AT_name"))
            for die in top.iter_children():
                self.dies += 1
                if self.dies >= limit or not pending:
                    break
                if die.tag != "DW_TAG_variable" or "DW_AT_location" not in die.attributes:
                    continue
                addr = _location_address(dwarf, cu, die.attributes["DW_AT_location"])
                if addr not in pending:
                    continue
                pending.discard(addr)
                for t in self.targets[addr]:
                    if t.role == "variable" and t.symbol not in found:
                        found[t.symbol] = self._variable(die, t, unit)
        return looked

    # -- one unit ------------------------------------------------------------------------

    def _scan(self, dwarf: Any, cu: Any, addrs: set[int],
              found: dict[str, DebugSignature]) -> bool:
        """Fill ``found`` from one unit; false when the DIE budget ran out in it."""
        unit = _text(cu.get_top_DIE().attributes.get("DW_AT_name"))
        pending = {t.symbol for a in addrs for t in self.targets[a]} - set(found)
        for die in cu.iter_DIEs():
            if not pending:
                return True  # the rest of the unit holds nothing asked for
            self.dies += 1
            if self.dies > MAX_DIES:
                return False
            tag = die.tag
            if tag == "DW_TAG_subprogram":
                low = die.attributes.get("DW_AT_low_pc")
                if low is None:
                    continue
                addr = _address(dwarf, cu, low)
                if addr not in addrs:
                    continue
                for t in self.targets.get(addr, ()):
                    if t.code and t.symbol not in found:
                        found[t.symbol] = self._function(die, t, unit)
                        pending.discard(t.symbol)
            elif tag == "DW_TAG_variable" and "DW_AT_location" in die.attributes:
                addr = _location_address(dwarf, cu, die.attributes["DW_AT_location"])
                if addr is None or addr not in addrs:
                    continue
                for t in self.targets.get(addr, ()):
                    if not t.code and t.symbol not in found:
                        sig = self._variable(die, t, unit) if t.role == "variable" \
                            else self._slot(die, t, unit)
                        if sig is not None:
                            found[t.symbol] = sig
                        pending.discard(t.symbol)
        return True

    def _function(self, die: Any, target: _Target, unit: str | None) -> DebugSignature:
        origin = _origin(die)
        returns = self._type_of(origin if "DW_AT_type" not in die.attributes else die)
        params: list[DebugParam] = []
        for child in die.iter_children():
            if child.tag == "DW_TAG_formal_parameter" and len(params) < MAX_MEMBERS:
                source = _origin(child)
                name = _text(child.attributes.get("DW_AT_name")
                             or source.attributes.get("DW_AT_name"))
                params.append(DebugParam(name, self._type_of(
                    child if "DW_AT_type" in child.attributes else source)))
        if not params and origin is not die:
            for child in origin.iter_children():
                if child.tag == "DW_TAG_formal_parameter" and len(params) < MAX_MEMBERS:
                    params.append(DebugParam(_text(child.attributes.get("DW_AT_name")),
                                             self._type_of(child)))
        return DebugSignature(target.symbol, target.role, returns, tuple(params),
                              _convention(target.role, self.generation, returns, params), unit)

    def _variable(self, die: Any, target: _Target, unit: str | None) -> DebugSignature:
        """An exported variable: its type is the signature's ``returns``, no parameters.
        A definition apart from its declaration takes the type from the declaration."""
        typed = die if "DW_AT_type" in die.attributes else _origin(die)
        return DebugSignature(target.symbol, target.role, self._type_of(typed), (), None, unit)

    def _slot(self, die: Any, target: _Target, unit: str | None) -> DebugSignature | None:
        """A function-pointer static: its pointee's prototype is the signature."""
        ty = _strip(die.get_DIE_from_attribute("DW_AT_type")) if "DW_AT_type" in die.attributes \
            else None
        depth = 0
        # Option<extern fn> and other transparent wrappers around the pointer
        while ty is not None and ty.tag in _AGGREGATES and depth < MAX_TYPE_DEPTH:
            members = [c for c in ty.iter_children() if c.tag == "DW_TAG_member"]
            if len(members) != 1 or "DW_AT_type" not in members[0].attributes:
                return None
            ty = _strip(members[0].get_DIE_from_attribute("DW_AT_type"))
            depth += 1
        if ty is None or ty.tag != "DW_TAG_pointer_type" or "DW_AT_type" not in ty.attributes:
            return None
        proto = _strip(ty.get_DIE_from_attribute("DW_AT_type"))
        if proto is None or proto.tag != "DW_TAG_subroutine_type":
            return None
        returns = self._type_of(proto)
        params = [DebugParam(_text(c.attributes.get("DW_AT_name")), self._type_of(c))
                  for c in proto.iter_children() if c.tag == "DW_TAG_formal_parameter"]
        return DebugSignature(target.symbol, target.role, returns, tuple(params[:MAX_MEMBERS]),
                              _convention(target.role, self.generation, returns, params), unit)

    # -- types ---------------------------------------------------------------------------

    def _type_of(self, die: Any, depth: int = 0) -> DebugType:
        if "DW_AT_type" not in die.attributes:
            return _VOID
        return self._type(die.get_DIE_from_attribute("DW_AT_type"), depth)

    def _type(self, die: Any, depth: int) -> DebugType:
        key = (die.offset, depth)
        cached = self.types.get(key)
        if cached is None:
            cached = self.types[key] = self._build_type(die, depth)
        return cached

    def _build_type(self, die: Any, depth: int) -> DebugType:
        if depth > MAX_TYPE_DEPTH * 3:  # a pointer chain that does not end (corrupt)
            return DebugType("...", "unknown", None, truncated=True)
        typedef: str | None = None
        hops = 0
        while die.tag in _LOOK_THROUGH:
            if die.tag == "DW_TAG_typedef" and typedef is None:
                typedef = _text(die.attributes.get("DW_AT_name"))
            if "DW_AT_type" not in die.attributes or hops > 16:
                return DebugType(typedef or "void", "void", 0, typedef=typedef)
            die = die.get_DIE_from_attribute("DW_AT_type")
            hops += 1
        attrs = die.attributes
        name = _text(attrs.get("DW_AT_name"))
        size = int(attrs["DW_AT_byte_size"].value) if "DW_AT_byte_size" in attrs else None
        tag = die.tag
        if tag == "DW_TAG_base_type":
            kind = _ENCODING_KIND.get(int(attrs["DW_AT_encoding"].value), "unknown") \
                if "DW_AT_encoding" in attrs else "unknown"
            if kind.endswith("-char"):
                kind = "char"
            if name == "()":
                kind = "void"
            return DebugType(name or kind, kind, size, typedef=typedef)
        if tag in _POINTERS or tag == "DW_TAG_ptr_to_member_type":
            pointee = die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in attrs else None
            bare = _strip(pointee) if pointee is not None else None
            if bare is not None and bare.tag == "DW_TAG_subroutine_type":
                return DebugType(name or "function pointer", "function-pointer", size or 8,
                                 typedef=typedef)
            # a pointer costs more depth than a member: a linked list stops soon
            target = _VOID if pointee is None else self._type(pointee, depth + _POINTER_DEPTH)
            return DebugType(name or f"{target.name} *", "pointer", size or 8, target=target,
                             typedef=typedef)
        if tag in _AGGREGATES:
            label = name or "<anonymous>"
            if name is not None and name.startswith(_RUST_WRAPPERS):
                inner = self._wrapped(die, depth)
                if inner is not None:
                    return inner
            if tag != "DW_TAG_class_type" and name is not None and not _is_rust_name(name):
                label = f"{_AGGREGATES[tag]} {name}"
            if depth >= MAX_TYPE_DEPTH:
                return DebugType(label, _AGGREGATES[tag], size, typedef=typedef, truncated=True)
            fields: list[DebugField] = []
            for child in die.iter_children():
                if child.tag != "DW_TAG_member" or len(fields) >= MAX_MEMBERS:
                    continue
                loc = child.attributes.get("DW_AT_data_member_location")
                offset = int(loc.value) if loc is not None and isinstance(loc.value, int) else (
                    0 if tag == "DW_TAG_union_type" else None)
                fields.append(DebugField(_text(child.attributes.get("DW_AT_name")), offset,
                                         self._type_of(child, depth + 1)))
            return DebugType(label, _AGGREGATES[tag], size, tuple(fields), typedef=typedef,
                             truncated=any(f.type.truncated for f in fields))
        if tag == "DW_TAG_enumeration_type":
            base = self._type_of(die, depth + 1) if "DW_AT_type" in attrs else None
            return DebugType(f"enum {name}" if name and not _is_rust_name(name) else
                             (name or "enum"), "enum",
                             size if size is not None else (base.size if base else None),
                             typedef=typedef)
        if tag == "DW_TAG_array_type":
            element = self._type_of(die, depth + 1)
            count = _array_count(die)
            total = size if size is not None else (
                element.size * count if element.size is not None and count is not None else None)
            return DebugType(f"{element.name}[{count if count is not None else ''}]", "array",
                             total, target=element, typedef=typedef)
        if tag == "DW_TAG_subroutine_type":
            return DebugType(name or "function", "function", None, typedef=typedef)
        if tag == "DW_TAG_unspecified_type":
            return DebugType(name or "void", "void", 0, typedef=typedef)
        return DebugType(name or tag.replace("DW_TAG_", ""), "unknown", size, typedef=typedef)

    def _wrapped(self, die: Any, depth: int) -> DebugType | None:
        """Rust's ``MaybeUninit<T>`` (a union of ``()`` and ``value``),
        ``ManuallyDrop<T>`` and ``MaybeDangling<T>`` (structs holding one
        ``T``): the ``T``, which has the same size and ABI."""
        members = [c for c in die.iter_children()
                   if c.tag == "DW_TAG_member" and "DW_AT_type" in c.attributes]
        named = [c for c in members if _text(c.attributes.get("DW_AT_name")) == "value"]
        chosen = named[0] if named else (members[0] if len(members) == 1 else None)
        return self._type_of(chosen, depth) if chosen is not None else None


def _strip(die: Any) -> Any:
    hops = 0
    while die is not None and die.tag in _LOOK_THROUGH and hops < 16:
        die = die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes \
            else None
        hops += 1
    return die


def _origin(die: Any) -> Any:
    """The DIE holding a concrete instance's name and type (through
    ``DW_AT_abstract_origin`` / ``DW_AT_specification``), bounded."""
    for _ in range(4):
        for attr in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if attr in die.attributes:
                die = die.get_DIE_from_attribute(attr)
                break
        else:
            return die
    return die


def _text(attr: Any) -> str | None:
    if attr is None:
        return None
    value = attr.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _is_rust_name(name: str) -> bool:
    # Rust names its aggregates bare (RStr, RSlice<u8>); C has tag namespaces
    return "<" in name or "::" in name or name[:1].isupper() and "_" not in name


def _address(dwarf: Any, cu: Any, attr: Any) -> int | None:
    value = attr.value
    if attr.form in ("DW_FORM_addrx", "DW_FORM_addrx1", "DW_FORM_addrx2", "DW_FORM_addrx3",
                     "DW_FORM_addrx4", "DW_FORM_GNU_addr_index"):
        try:
            return int(dwarf.get_addr(cu, value))
        except Exception:  # noqa: BLE001 - an index past .debug_addr: not a target
            return None
    return value if isinstance(value, int) else None


def _location_address(dwarf: Any, cu: Any, attr: Any) -> int | None:
    expr = attr.value
    if not isinstance(expr, list) or not expr:
        return None
    op = expr[0]
    if op == _DW_OP_ADDR:
        size = int(cu["address_size"])
        if len(expr) < 1 + size:
            return None
        return int.from_bytes(bytes(expr[1:1 + size]),
                              "little" if dwarf.config.little_endian else "big")
    if op in (_DW_OP_ADDRX, _DW_OP_GNU_ADDR_INDEX):
        index = shift = 0
        for byte in expr[1:11]:
            index |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        try:
            return int(dwarf.get_addr(cu, index))
        except Exception:  # noqa: BLE001 - an index past .debug_addr: not a target
            return None
    return None


def _array_count(die: Any) -> int | None:
    for child in die.iter_children():
        if child.tag == "DW_TAG_subrange_type":
            attrs = child.attributes
            if "DW_AT_count" in attrs and isinstance(attrs["DW_AT_count"].value, int):
                return int(attrs["DW_AT_count"].value)
            if "DW_AT_upper_bound" in attrs and isinstance(attrs["DW_AT_upper_bound"].value, int):
                return int(attrs["DW_AT_upper_bound"].value) + 1
            return None
    return None


def _convention(role: str, generation: abi.Generation | None, returns: DebugType,
                params: Iterable[DebugParam]) -> str | None:
    """relib's leading pointer: the generation's convention (§1.5, §1.6) when
    the compiled signature has room for it; without a known generation, what
    the signature itself shows."""
    if not role.startswith("relib-") or role == "relib-post":
        return None
    first = next(iter(params), None)
    if first is None or first.type.kind != "pointer":
        return None
    if generation is not None:
        rule = generation.import_convention if role == "relib-import" \
            else generation.export_convention
        return {"A": "out-pointer", "B": "success"}.get(rule)
    if first.name == "____success____":
        return "success"
    if returns.kind == "bool":
        return "out-pointer"
    return None
