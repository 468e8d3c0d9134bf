"""Just enough ELF to pick a library file the way the dynamic loader does.

While searching for a NEEDED library, glibc opens each candidate and skips
files of another class, byte order or machine; and it matches names against
already-loaded objects by SONAME. Both need a few bytes, not a full
inspection, so this reader stays tiny and never raises on bad input: it
answers ``None`` and the caller treats the file as unusable.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass

__all__ = ["ElfIdent", "read_ident", "read_soname"]

_DT_NULL, _DT_STRTAB, _DT_SONAME = 0, 5, 14
_PT_LOAD, _PT_DYNAMIC = 1, 2


@dataclass(frozen=True)
class ElfIdent:
    """Class, byte order, OS ABI and machine: what must match to be loadable together."""

    bits: int
    endianness: str
    machine: int
    elf_type: int

    def compatible(self, other: ElfIdent) -> bool:
        return (self.bits, self.endianness, self.machine) == (other.bits, other.endianness,
                                                              other.machine)


def _ident(head: bytes) -> ElfIdent | None:
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    end = "<" if head[5] == 1 else ">"
    e_type, e_machine = struct.unpack_from(end + "HH", head, 16)
    return ElfIdent(32 if head[4] == 1 else 64, "little" if head[5] == 1 else "big",
                    e_machine, e_type)


def read_ident(path: str) -> ElfIdent | None:
    """The ELF identity of ``path``, or ``None`` (missing, unreadable, not ELF)."""
    try:
        with open(path, "rb") as f:
            return _ident(f.read(20))
    except OSError:
        return None


@functools.lru_cache(maxsize=512)
def _soname_cached(path: str, _stamp: tuple[int, int, int]) -> str | None:
    try:
        with open(path, "rb") as f:
            return _soname(f)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None


def read_soname(path: str) -> str | None:
    """DT_SONAME of ``path`` via the program headers, or ``None``."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _soname_cached(path, (st.st_dev, st.st_ino, st.st_mtime_ns))


def _soname(f: object) -> str | None:
    read = f.read  # type: ignore[attr-defined]
    seek = f.seek  # type: ignore[attr-defined]
    head = read(64)
    ident = _ident(head)
    if ident is None:
        return None
    end = "<" if ident.endianness == "little" else ">"
    if ident.bits == 64:
        phoff, = struct.unpack_from(end + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        ph = struct.Struct(end + "IIQQQQQQ")   # type, flags, offset, vaddr, paddr, filesz, memsz, align
        dyn = struct.Struct(end + "qQ")
    else:
        phoff, = struct.unpack_from(end + "I", head, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        ph = struct.Struct(end + "IIIIIIII")   # type, offset, vaddr, paddr, filesz, memsz, flags, align
        dyn = struct.Struct(end + "iI")
    if phnum > 4096 or phentsize < ph.size:
        return None
    seek(phoff)
    table = read(phentsize * phnum)
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        fields = ph.unpack_from(table, i * phentsize)
        if ident.bits == 64:
            p_type, _, p_offset, p_vaddr, _, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = fields[:5]
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, min(p_filesz, 1 << 20))
    if dynamic is None:
        return None
    seek(dynamic[0])
    raw = read(dynamic[1])
    strtab = soname = None
    for i in range(len(raw) // dyn.size):
        tag, val = dyn.unpack_from(raw, i * dyn.size)
        if tag == _DT_NULL:
            break
        if tag == _DT_STRTAB:
            strtab = val
        elif tag == _DT_SONAME:
            soname = val
    if strtab is None or soname is None:
        return None
    for vaddr, offset, filesz in loads:
        if vaddr <= strtab < vaddr + filesz:
            seek(offset + (strtab - vaddr) + soname)
            name = read(4096).split(b"\0", 1)[0]
            return os.fsdecode(name) or None
    return None
