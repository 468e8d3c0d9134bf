"""Read glibc's ``/etc/ld.so.cache`` without running ``ldconfig -p``.

Only the current format (``glibc-ld.so.cache1.1``, written by every glibc
since 2.32 and, after the legacy ``ld.so-1.7.0`` table, by older ones) is read.
Each entry maps a library name (``libc.so.6``) to a path and carries flags
that say which ABI the library is for (``0x0303`` = ELF libc6 x86-64); the
dynamic loader ignores entries of another ABI, so :meth:`LdCache.lookup` asks
for the ABI key of the library doing the lookup.

Entries tagged with a ``glibc-hwcaps`` subdirectory (hwcap bit 62 set, low
32 bits index the extension's subdirectory table) are preferred in the order
the caller says its CPU supports them, as the loader does.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relib_pure.errors import InspectionError

__all__ = ["CacheEntry", "LdCache", "abi_flags", "load_cache", "DEFAULT_CACHE_PATH"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE_PATH = "/etc/ld.so.cache"

_OLD_MAGIC = b"ld.so-1.7.0"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_NEW_HEADER = struct.Struct("<20sIIB3xI12x")   # magic+version, nlibs, len_strings, flags, ext
_NEW_ENTRY = struct.Struct("<iIIIQ")            # flags, key, value, osversion, hwcap
_OLD_ENTRY_SIZE = 12                            # flags, key, value (int32 each)
_EXT_MAGIC = 0xEAA42174
_EXT_TAG_HWCAPS = 1
_HWCAP_EXTENSION = 1 << 62
_FLAG_ELF_LIBC6 = 0x0003

# glibc's FLAG_*_LIB64 and friends (sysdeps ldconfig.h): the "required" byte
# of an entry's flags for a given architecture and bitness.
_REQUIRED_FLAG: dict[tuple[str, int], int] = {
    ("x86_64", 64): 0x0300,
    ("x86_64", 32): 0x0800,   # x32
    ("aarch64", 64): 0x0A00,
    ("ppc64", 64): 0x0500,
    ("s390x", 64): 0x0400,
    ("sparc64", 64): 0x0100,
    ("ia64", 64): 0x0200,
    ("riscv64", 64): 0x1000,  # double-float ABI, the common one
    ("loongarch64", 64): 0x1200,
}


def abi_flags(machine: str, bits: int) -> int:
    """The ``flags`` value of cache entries usable by a library of this kind.

    i386 and 32-bit ARM (hard-float is not distinguished here) use the plain
    libc6 value ``0x0003``.
    """
    if machine == "arm" and bits == 32:
        return _FLAG_ELF_LIBC6 | 0x0900
    return _FLAG_ELF_LIBC6 | _REQUIRED_FLAG.get((machine, bits), 0)


@dataclass(frozen=True)
class CacheEntry:
    """One ``ld.so.cache`` entry: ``name`` -> ``path`` for ABI ``flags``.

    ``hwcaps`` names the ``glibc-hwcaps`` subdirectory the entry lives in
    (``x86-64-v3``), or is ``None`` for a baseline entry.
    """

    name: str
    path: str
    flags: int
    hwcaps: str | None = None


class LdCache:
    """A parsed ``ld.so.cache``: entries in file order (ldconfig sorts the
    best candidate of a name first)."""

    def __init__(self, entries: Iterable[CacheEntry], path: str = DEFAULT_CACHE_PATH) -> None:
        self.path = path
        self.entries: tuple[CacheEntry, ...] = tuple(entries)
        self._by_name: dict[str, list[CacheEntry]] = {}
        for e in self.entries:
            self._by_name.setdefault(e.name, []).append(e)

    def __len__(self) -> int:
        return len(self.entries)

    def candidates(self, name: str, flags: int) -> list[CacheEntry]:
        """Every entry for ``name`` whose ABI flags equal ``flags``."""
        return [e for e in self._by_name.get(name, ()) if e.flags == flags]

    def lookup(self, name: str, flags: int, hwcaps: Iterable[str] = ()) -> str | None:
        """Path the loader would take from the cache for ``name``, or ``None``.

        ``hwcaps`` lists the ``glibc-hwcaps`` subdirectories this CPU
        supports, best first; entries in other subdirectories are skipped.
        """
        found = self.candidates(name, flags)
        if not found:
            return None
        for sub in hwcaps:
            for e in found:
                if e.hwcaps == sub:
                    return e.path
        for e in found:
            if e.hwcaps is None:
                return e.path
        return None


def parse_cache(data: bytes, path: str = DEFAULT_CACHE_PATH) -> LdCache:
    """Parse the bytes of an ``ld.so.cache`` file.

    Raises :class:`~relib_pure.errors.InspectionError` (``inspect.malformed``
    or ``inspect.unknown-format``) when the bytes are not a cache this reader
    understands.
    """
    start = 0
    if data.startswith(_OLD_MAGIC):
        # Legacy table first; the new-format cache follows it, 8-byte aligned.
        if len(data) < 16:
            raise InspectionError("ld.so.cache legacy header is truncated", path=path,
                                  code="inspect.truncated")
        (nlibs_old,) = struct.unpack_from("<I", data, 12)
        start = 16 + nlibs_old * _OLD_ENTRY_SIZE
        start = (start + 7) & ~7
    if not data.startswith(_NEW_MAGIC, start):
        raise InspectionError("not a glibc-ld.so.cache1.1 file", path=path,
                              code="inspect.unknown-format")
    if len(data) < start + _NEW_HEADER.size:
        raise InspectionError("ld.so.cache header is truncated", path=path,
                              code="inspect.truncated")
    _, nlibs, _len_strings, flags, ext_offset = _NEW_HEADER.unpack_from(data, start)
    if flags & 3 == 3:
        raise InspectionError("big-endian ld.so.cache is not supported", path=path,
                              code="inspect.unsupported")
    table = start + _NEW_HEADER.size
    if table + nlibs * _NEW_ENTRY.size > len(data):
        raise InspectionError(f"ld.so.cache declares {nlibs} entries but is only "
                              f"{len(data)} bytes long", path=path, code="inspect.truncated")

    # String offsets are relative to the start of the new-format header.
    def string(offset: int) -> str:
        pos = start + offset
        end = data.find(b"\0", pos)
        if pos >= len(data) or end < 0:
            raise InspectionError(f"ld.so.cache string offset {offset:#x} is out of range",
                                  path=path, code="inspect.malformed")
        return os.fsdecode(data[pos:end])

    subdirs = _hwcaps_subdirs(data, start, ext_offset, string)
    entries = []
    for i in range(nlibs):
        eflags, key, value, _osv, hwcap = _NEW_ENTRY.unpack_from(data, table + i * _NEW_ENTRY.size)
        sub = None
        if hwcap & _HWCAP_EXTENSION:
            index = hwcap & 0xFFFFFFFF
            if index >= len(subdirs):
                logger.debug("%s: entry %d names hwcaps index %d of %d", path, i, index,
                             len(subdirs))
                continue
            sub = subdirs[index]
        elif hwcap:
            # Legacy hwcap-bit entries (pre-2.37 "tls"/platform subdirectories):
            # rare and CPU-specific; the loader falls back to the baseline entry.
            continue
        entries.append(CacheEntry(string(key), string(value), eflags & 0xFFFF, sub))
    return LdCache(entries, path)


def _hwcaps_subdirs(data: bytes, start: int, ext_offset: int,
                    string: Callable[[int], str]) -> list[str]:
    """Names of the glibc-hwcaps subdirectories in the cache extension, if any."""
    if not ext_offset:
        return []
    pos = start + ext_offset
    if pos + 8 > len(data):
        return []
    magic, count = struct.unpack_from("<II", data, pos)
    if magic != _EXT_MAGIC:
        return []
    names: list[str] = []
    for i in range(min(count, 64)):
        sec = pos + 8 + i * 16
        if sec + 16 > len(data):
            break
        tag, _flags, offset, size = struct.unpack_from("<IIII", data, sec)
        if tag != _EXT_TAG_HWCAPS:
            continue
        for j in range(size // 4):
            (soff,) = struct.unpack_from("<I", data, start + offset + 4 * j)
            names.append(string(soff))
    return names


_CACHE: dict[tuple[str, int, int, int], LdCache] = {}


def load_cache(path: str = DEFAULT_CACHE_PATH) -> LdCache | None:
    """The parsed cache at ``path`` (re-read only when the file changes), or
    ``None`` when there is no usable cache file (missing, as in a minimal
    container, or corrupt: the loader then ignores it too)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        logger.warning("cannot stat %s: %s", path, e)
        return None
    key = (path, st.st_dev, st.st_ino, st.st_mtime_ns)
    cached = _CACHE.get(key)
    if cached is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            logger.warning("cannot read %s: %s", path, e)
            return None
        try:
            cached = parse_cache(data, path)
        except InspectionError as e:
            # glibc ignores a cache it cannot validate and falls back to the
            # default directories; so does the search here.
            logger.warning("ignoring %s", e)
            return None
        _CACHE.clear()
        _CACHE[key] = cached
    return cached
