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
from typing import Any

from relib_pure.inspection._elfconst import (DT_NULL, DT_SONAME, DT_STRTAB, PT_DYNAMIC,
                                             PT_INTERP, PT_LOAD)

__all__ = ["ElfIdent", "parse_ident", "read_ident", "read_soname", "read_interp"]


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


def parse_ident(head: bytes) -> ElfIdent | None:
    """The identity in the first 20 bytes of an ELF file, or ``None`` (not ELF)."""
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
            return parse_ident(f.read(20))
    except (OSError, ValueError):  # ValueError: a NUL byte in a name read from a file
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
    except (OSError, ValueError):
        return None
    return _soname_cached(path, (st.st_dev, st.st_ino, st.st_mtime_ns))


def _program_headers(f: Any) -> tuple[ElfIdent, str, list[tuple[int, int, int, int]]] | None:
    """(ident, struct byte order, [(p_type, p_offset, p_vaddr, p_filesz)])."""
    head = f.read(64)
    ident = parse_ident(head)
    if ident is None:
        return None
    end = "<" if ident.endianness == "little" else ">"
    if ident.bits == 64:
        (phoff,) = struct.unpack_from(end + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        ph = struct.Struct(end + "IIQQQQQQ")   # type, flags, offset, vaddr, paddr, filesz, memsz, align
    else:
        (phoff,) = struct.unpack_from(end + "I", head, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        ph = struct.Struct(end + "IIIIIIII")   # type, offset, vaddr, paddr, filesz, memsz, flags, align
    if phnum > 4096 or phentsize < ph.size:
        return None
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    if len(table) < phentsize * phnum:
        return None
    out = []
    for i in range(phnum):
        fields = ph.unpack_from(table, i * phentsize)
        if ident.bits == 64:
            p_type, _, p_offset, p_vaddr, _, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = fields[:5]
        out.append((p_type, p_offset, p_vaddr, p_filesz))
    return ident, end, out


def _soname(f: Any) -> str | None:
    parsed = _program_headers(f)
    if parsed is None:
        return None
    ident, end, headers = parsed
    dyn = struct.Struct(end + ("qQ" if ident.bits == 64 else "iI"))
    loads = [(vaddr, offset, filesz) for t, offset, vaddr, filesz in headers if t == PT_LOAD]
    dynamic = next(((offset, min(filesz, 1 << 20)) for t, offset, _v, filesz in headers
                    if t == PT_DYNAMIC), None)
    if dynamic is None:
        return None
    f.seek(dynamic[0])
    raw = f.read(dynamic[1])
    strtab = soname = None
    for i in range(len(raw) // dyn.size):
        tag, val = dyn.unpack_from(raw, i * dyn.size)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab = val
        elif tag == DT_SONAME:
            soname = val
    if strtab is None or soname is None:
        return None
    for vaddr, offset, filesz in loads:
        if vaddr <= strtab < vaddr + filesz:
            f.seek(offset + (strtab - vaddr) + soname)
            name = f.read(4096).split(b"\0", 1)[0]
            return os.fsdecode(name) or None
    return None


def read_interp(path: str) -> str | None:
    """PT_INTERP of ``path`` (the dynamic loader it asks for), or ``None``."""
    try:
        with open(path, "rb") as f:
            parsed = _program_headers(f)
            if parsed is None:
                return None
            for p_type, offset, _vaddr, filesz in parsed[2]:
                if p_type == PT_INTERP and 0 < filesz < 4096:
                    f.seek(offset)
                    return os.fsdecode(f.read(filesz).split(b"\0", 1)[0]) or None
    except (OSError, struct.error, ValueError):
        return None
    return None
