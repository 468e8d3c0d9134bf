"""How the leak diff tells CPython's own passing memory from a module's leak,
on real mappings made with mmap at chosen addresses.

A new maps line may only partly be new: its first pages were free before, its
last ones lay where an older (now unmapped) mapping was. CPython's frame chunk
mapped there is recognised by its header although the chunk reaches past the
new part; the same pages without a chunk header are reported.
"""

from __future__ import annotations

import ctypes
import importlib
import mmap
import os
import struct
import sys

import pytest

from relib_pure.runtime import procfs

verify = importlib.import_module("relib_pure.runtime.verify")

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11) or sys.platform != "linux",
                                reason="CPython 3.11+ frame chunks, Linux maps")

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long)
_munmap = _libc.munmap
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FIXED = 0x10
_CHUNK = 16 << 10
_PAGE = mmap.PAGESIZE
_PROT_NONE = 0


def _map(addr: int | None, size: int, prot: int) -> int:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (_MAP_FIXED if addr is not None else 0)
    got = _mmap(addr, size, prot, flags, -1, 0)
    assert got not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    return int(got)


@pytest.fixture
def reservation():
    """An inaccessible region with room for a chunk, so nothing merges with it."""
    size = _CHUNK + 2 * _PAGE
    base = _map(None, size, _PROT_NONE)
    yield base + _PAGE
    _munmap(base, size)


def _before_and_after(at: int, header: bytes) -> tuple[object, bytes]:
    # before: one page where the chunk's last page will be, free pages below it
    # (no line covers them: an inaccessible reservation would)
    _map(at + _CHUNK - _PAGE, _PAGE, mmap.PROT_READ | mmap.PROT_WRITE)
    _munmap(at, _CHUNK - _PAGE)
    before = verify.take_snapshot(procfs.read_maps())
    assert procfs.query_mapping(at) is None
    # after: a 16 KiB mapping over it and the free pages below
    _map(at, _CHUNK, mmap.PROT_READ | mmap.PROT_WRITE)
    ctypes.memmove(at, header, len(header))
    return before, procfs.read_maps()


def _leaks_at(at: int, header: bytes) -> list[tuple[int, int]]:
    before, after = _before_and_after(at, header)
    fid = procfs.file_id(os.stat(sys.executable))
    found = verify.leaked_mappings(before, after, fid, sys.executable)  # type: ignore[arg-type]
    return [(m.start, m.end) for m in found if at <= m.start < at + _CHUNK]


def test_frame_chunk_reaching_past_the_new_part_is_pythons(reservation: int) -> None:
    # _PyStackChunk: previous (none: a thread's first chunk), size, top
    header = struct.pack("@PPP", 0, _CHUNK, 0)
    assert _leaks_at(reservation, header) == []


def test_same_pages_without_a_chunk_header_are_a_leak(reservation: int) -> None:
    header = b"leaked by a module" + bytes(30)
    assert _leaks_at(reservation, header) == [(reservation, reservation + _CHUNK - _PAGE)]


def test_chunk_larger_than_its_maps_line_is_not_pythons(reservation: int) -> None:
    # a size field reaching past the line's end is no chunk of this line
    header = struct.pack("@PPP", 0, 2 * _CHUNK, 0)
    assert _leaks_at(reservation, header) == [(reservation, reservation + _CHUNK - _PAGE)]


_POOL = 16 << 10
# obmalloc's pool header: ref, freeblock, nextpool, prevpool, arenaindex, szidx,
# nextoffset, maxnextoffset (a pool of 48-byte blocks, one in use)
_POOL_HEADER = struct.Struct("@PPPPIIII")


def _pool_header(pool: int, szidx: int = 2, nextoffset: int = 96,
                 maxnext: int | None = None) -> bytes:
    size = (szidx + 1) * 16
    return _POOL_HEADER.pack(1, 0, pool, pool, 0, szidx, nextoffset,
                             _POOL - size if maxnext is None else maxnext)


def _arena_tail_then_chunk(at: int, chunk_header: bytes, pool_header: bytes | None = None) -> None:
    """Fill 48 KiB at ``at`` (a page past a pool boundary) as CPython leaves memory
    when an arena and a frame chunk are mapped back to back: three pages of slack,
    one pool in use, one unused page at the arena's end, then a 16 KiB chunk
    whose frames are anything but zeros."""
    first_pool = at + 3 * _PAGE
    assert first_pool % _POOL == 0
    header = pool_header if pool_header is not None else _pool_header(first_pool)
    ctypes.memmove(first_pool, header, _POOL_HEADER.size)
    chunk = first_pool + _POOL + _PAGE
    body = b"\x5a" * (_CHUNK - len(chunk_header))
    ctypes.memmove(chunk, chunk_header + body, _CHUNK)


@pytest.fixture
def pool_aligned_room():
    """64 KiB of free address space whose start lies one page past a pool boundary."""
    size = 8 * _POOL
    base = _map(None, size, _PROT_NONE)
    _munmap(base, size)  # a hole nothing else maps into during the test
    at = (base + _POOL - 1) // _POOL * _POOL + _PAGE
    yield at
    _munmap(at, 3 * _CHUNK)


def _fresh_leaks(at: int, chunk_header: bytes,
                 pool_header: bytes | None = None) -> list[tuple[int, int]]:
    before = verify.take_snapshot(procfs.read_maps())
    _map(at, 3 * _CHUNK, mmap.PROT_READ | mmap.PROT_WRITE)
    _arena_tail_then_chunk(at, chunk_header, pool_header)
    after = procfs.read_maps()
    fid = procfs.file_id(os.stat(sys.executable))
    found = verify.leaked_mappings(before, after, fid, sys.executable)  # type: ignore[arg-type]
    return [(m.start, m.end) for m in found if at <= m.start < at + 3 * _CHUNK]


def test_arena_end_merged_with_a_frame_chunk_is_pythons(pool_aligned_room: int) -> None:
    assert _fresh_leaks(pool_aligned_room, struct.pack("@PPP", 0, _CHUNK, 0)) == []


def test_arena_end_merged_with_something_else_is_a_leak(pool_aligned_room: int) -> None:
    at = pool_aligned_room
    assert _fresh_leaks(at, b"not a chunk header......") == [(at, at + 3 * _CHUNK)]


_CHUNK_HEADER = struct.pack("@PPP", 0, _CHUNK, 0)


def test_fully_carved_pool_is_pythons(pool_aligned_room: int) -> None:
    """obmalloc carves blocks until nextoffset passes maxnextoffset: a pool of 96-byte
    blocks all handed out has nextoffset = 16384 > maxnextoffset = 16288."""
    pool = pool_aligned_room + 3 * _PAGE
    header = _pool_header(pool, szidx=5, nextoffset=_POOL)
    assert _fresh_leaks(pool_aligned_room, _CHUNK_HEADER, header) == []


@pytest.mark.parametrize("why", ["maxnext-of-another-size", "size-class-out-of-range",
                                 "nextoffset-past-the-pool"])
def test_pool_header_that_fits_no_size_class_is_a_leak(pool_aligned_room: int,
                                                       why: str) -> None:
    at = pool_aligned_room
    pool = at + 3 * _PAGE
    header = {"maxnext-of-another-size": _pool_header(pool, szidx=5, maxnext=_POOL - 48),
              "size-class-out-of-range": _pool_header(pool, szidx=40, maxnext=_POOL - 656),
              "nextoffset-past-the-pool": _pool_header(pool, nextoffset=_POOL + 16)}[why]
    assert _fresh_leaks(at, _CHUNK_HEADER, header) == [(at, at + 3 * _CHUNK)]


@pytest.mark.parametrize("first", ["pool", "garbage"])
def test_untouched_pages_of_a_line_that_is_pythons(pool_aligned_room: int, first: str) -> None:
    """A new arena's unused pools are zeros; where an older mapping lay under the
    arena's used pool, only those zero pages are new. They recognise nothing by
    themselves: the whole line (a pool in use, then zeros) is CPython's, so they are
    too; the same zeros after something else are reported."""
    pool = pool_aligned_room + 3 * _PAGE
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    try:
        _map(pool, _POOL, rw)  # the older mapping
        before = verify.take_snapshot(procfs.read_maps())
        _map(pool, 3 * _POOL, rw)
        ctypes.memmove(pool, _pool_header(pool) if first == "pool" else b"\x5a" * 48, 48)
        after = procfs.read_maps()
        fid = procfs.file_id(os.stat(sys.executable))
        found = verify.leaked_mappings(before, after, fid,  # type: ignore[arg-type]
                                       sys.executable)
        leaks = [(m.start, m.end) for m in found if pool <= m.start < pool + 3 * _POOL]
        assert leaks == ([] if first == "pool" else [(pool + _POOL, pool + 3 * _POOL)])
    finally:
        _munmap(pool, 3 * _POOL)
