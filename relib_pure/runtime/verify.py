"""Before/after snapshots of the process and what a module's lifetime left behind.

Snapshots keep the raw ``/proc/self/maps`` text: at unload only the lines that
changed are parsed, which keeps verification cheap in a process with hundreds
of mappings.
"""

from __future__ import annotations

import logging
import mmap
import os
import platform
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from relib_pure import _hostfds
from relib_pure.runtime import hostcode, owner, procfs
from relib_pure.runtime.procfs import FileId, Mapping
from relib_pure.runtime.report import LeakedFd, LeakedThread

logger = logging.getLogger(__name__)

__all__ = ["Snapshot", "take_snapshot", "new_threads", "leaked_fds", "leaked_mappings",
           "mappings_of_file"]

# glibc reserves each secondary malloc arena as one HEAP_MAX_SIZE-aligned region
# (2 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
_ARENA_ALIGN = 64 << 20
# CPython's small-object allocator maps arenas of this size (1 MiB since 3.10)
_PYMALLOC_ARENA = (1 << 20) if sys.version_info >= (3, 10) else (256 << 10)
# ... and gives every Python thread a 16 KiB frame stack of its own (3.11+)
_PY_DATASTACK = 16 << 10


@dataclass(frozen=True)
class Snapshot:
    """Threads, descriptors and raw maps text at one moment (taken just before ``dlopen``).

    ``fds`` maps each open descriptor to the ``(st_dev, st_ino)`` it refers to.
    """

    tasks: frozenset[int]
    fds: dict[int, tuple[int, int]]
    maps: bytes


def take_snapshot(maps_data: bytes) -> Snapshot:
    return Snapshot(frozenset(procfs.task_ids()), procfs.fd_identities(), maps_data)


def _python_thread_ids(*, foreign: bool = True) -> set[int]:
    """Threads running Python code: ``threading``'s and the modules' owner threads.

    ``foreign=False`` leaves out the threads Python did not start but knows
    because they called into it (``threading``'s "dummy" threads, e.g. a
    native thread running a ctypes callback that logs): such a thread was
    started by native code and may be executing it.
    """
    dummy = getattr(threading, "_DummyThread", ())
    ids = {t.native_id for t in threading.enumerate()
           if t.native_id is not None and (foreign or not isinstance(t, dummy))}
    ids |= owner.live_native_ids()
    return ids


def new_threads(before: Snapshot, *, settle: float = 0.0) -> tuple[LeakedThread, ...]:
    """Native (non-Python) threads alive now that did not exist at ``before``.

    A native thread that called into Python still counts: Python did not
    start it, so it may be running the library's code.

    ``settle`` gives threads that were just joined time to leave the task list
    (the kernel removes a thread a moment after ``pthread_join`` returns).
    """
    deadline: float | None = None
    while True:
        extra = procfs.task_ids() - before.tasks
        if extra:  # only then is it worth asking which threads run Python
            extra -= _python_thread_ids(foreign=False)
        if not extra:
            break
        if deadline is None:
            deadline = time.monotonic() + settle
        if time.monotonic() >= deadline:
            break
        time.sleep(0.002)
    return tuple(LeakedThread(tid, procfs.thread_name(tid)) for tid in sorted(extra))


def leaked_fds(before: Snapshot, others: frozenset[tuple[int, int]] = frozenset(),
               others_now: Callable[[], frozenset[tuple[int, int]]] | None = None
               ) -> tuple[LeakedFd, ...]:
    """Descriptors open now that were not open (or pointed elsewhere) at ``before``.

    Compared by what they refer to (device and inode: a pipe, socket or file
    closed and replaced under the same number differs); only the descriptors
    that differ have their target read for the report. One open on a file of
    ``others`` (another module's library, which ``dlopen`` opens for a moment)
    is not this module's doing; ``others_now`` gives them again once the
    descriptors are listed (a module that began loading meanwhile).
    """
    out = []
    current = procfs.fd_identities()
    old = before.fds
    if all(old.get(fd) == ident for fd, ident in current.items()):
        return ()  # the common case: nothing new to explain
    if others_now is not None:
        others = others | others_now()
    for fd, ident in sorted(current.items()):
        if old.get(fd) != ident and ident not in others:
            target = procfs.fd_target(fd)
            if target is not None:
                out.append(LeakedFd(fd, target))
    return tuple(out)


def mappings_of_file(data: bytes, fid: FileId, path: str) -> tuple[Mapping, ...]:
    """Mappings of the file ``fid`` (by device and inode) or named ``path``."""
    lines = procfs.lines_with(data, fid.maps_key)
    lines += [line for line in procfs.lines_with(data, b" " + os.fsencode(path))
              if line not in lines]
    return tuple(sorted(m for m in procfs.parse_maps(lines) if _maps_file(m, fid, path)))


def _maps_file(m: Mapping, fid: FileId, path: str) -> bool:
    """Whether ``m`` maps the file ``fid`` or is named ``path`` (deleted or not)."""
    return (m.dev == fid.dev and m.inode == fid.inode) or m.path in (path, path + " (deleted)")


def _uncovered(m: Mapping, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``m`` not covered by any interval of ``covered`` (sorted, non-overlapping)."""
    parts = []
    cur = m.start
    for s, e in covered:
        if e <= cur:
            continue
        if s >= m.end:
            break
        if s > cur:
            parts.append((cur, s))
        cur = max(cur, e)
        if cur >= m.end:
            break
    if cur < m.end:
        parts.append((cur, m.end))
    return parts


def _inaccessible_anon(data: bytes, needle: bytes, start: int | None = None,
                       end: int | None = None) -> Mapping | None:
    """The ``---p`` anonymous mapping of ``data`` on a line matching
    ``needle`` that starts at ``start`` / ends at ``end``, if there is one."""
    for line in procfs.lines_with(data, needle):
        m = procfs.parse_line(line)
        if m is not None and start in (None, m.start) and end in (None, m.end):
            return m if m.perms.startswith("---") and not m.path and not m.inode else None
    return None


def _malloc_heap(m: Mapping, data: bytes) -> bool:
    """Whether ``m`` is the usable part of a glibc malloc heap.

    glibc reserves each secondary arena's heap as one inaccessible,
    ``HEAP_MAX_SIZE``-aligned region and opens it up from the bottom: so the
    heap starts on the boundary and either fills the whole region or is
    followed by the inaccessible rest of it. A leak that merely starts on a
    boundary has no such tail.
    """
    if m.start % _ARENA_ALIGN:
        return False
    end = m.start + _ARENA_ALIGN
    if m.end == end:
        return True
    # the rest may have merged with an inaccessible neighbour above
    rest = _inaccessible_anon(data, b"%x-" % m.end, start=m.end) if m.end < end else None
    return rest is not None and rest.end >= end


# glibc keeps the thread's struct pthread in the top of its stack mapping,
# 64-byte aligned, below at most the static TLS alignment's padding
_TCB_SPAN = 16 << 10
_TCB_ALIGN = 64
_WORD = struct.Struct("<Q")
_X86_64 = platform.machine() == "x86_64"


def _thread_stack(m: Mapping, data: bytes) -> bool:
    """Whether ``m`` is a glibc thread stack (of an exited thread, which glibc
    caches): right above its inaccessible guard (which may have merged with
    an inaccessible neighbour), with the thread's control block at its top.

    On x86_64 the control block starts with ``tcbhead_t``, whose first and
    third words (``tcb`` and ``self``) hold its own address: a leak that merely
    sits above an inaccessible page has no such block, whatever its size.
    """
    if _inaccessible_anon(data, b"-%x " % m.start, end=m.start) is None:
        return False
    if not _X86_64:
        return True
    span = min(m.size, _TCB_SPAN)
    at = m.end - span
    with _Memory() as mem:
        raw = mem.read(at, span)
    if raw is None:
        return False
    # compared in place: unpacking thousands of words into ints would grow
    # CPython's small-object arenas, a mapping of the host's own
    pack = _WORD.pack
    for off in range(0, len(raw) - 24 + 1, _TCB_ALIGN):
        word = pack(at + off)
        if raw.startswith(word, off) and raw.startswith(word, off + 16):
            return True
    return False


#: the most read from memory at once: below glibc's mmap threshold (128 KiB),
#: so reading memory to recognise it never maps any (another thread's report
#: would see that buffer as fresh anonymous memory and read it in turn)
_READ_MAX = 16 << 10


class _Memory:
    """Reads of this process's memory through ``/proc/self/mem``, in small pieces.

    Through the file, memory unmapped meanwhile by another thread is an error
    to report, not a SIGSEGV; every read is at most :data:`_READ_MAX` bytes.
    """

    def __init__(self) -> None:
        self.fd = -1

    def __enter__(self) -> _Memory:
        try:
            self.fd = _hostfds.hold(lambda: os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            self.fd = -1
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            _hostfds.release(self.fd)
            self.fd = -1

    def read(self, at: int, size: int) -> bytes | None:
        """Exactly ``size`` (<= :data:`_READ_MAX`) bytes at ``at``, or ``None``."""
        assert size <= _READ_MAX
        if self.fd < 0:
            return None
        try:
            raw = os.pread(self.fd, size, at)
        except OSError:
            return None
        return raw if len(raw) == size else None


_CHUNK_HEADER = struct.Struct("@PP")  # _PyStackChunk: previous, size
# obmalloc's pool header (3.11: 16 KiB pools): ref, freeblock, nextpool,
# prevpool, arenaindex, szidx, nextoffset, maxnextoffset
_POOL = 16 << 10
_POOL_HEADER = struct.Struct("@PPPPIIII")
# obmalloc's block sizes: multiples of 16 bytes (8 on 32-bit) up to 512
_ALIGNMENT_SHIFT = 4 if sys.maxsize > 2**32 else 3
_SIZE_CLASSES = 512 >> _ALIGNMENT_SHIFT
# the largest part read to recognise (obmalloc arenas are 1 MiB, chunks smaller)
_MAX_PYTHON_SPAN = 8 << 20


def _python_memory(line_start: int, line_end: int, end: int, start: int) -> bool:
    """Whether ``[start, end)`` is memory CPython maps for itself: frame-stack
    chunks and small-object arena pools, in any order.

    Every thread's frames live in chunks (16 KiB or more; one more while a
    call stack is deep, unmapped as it unwinds), each starting with a pointer
    to the previous one and its own size; obmalloc's 1 MiB arenas hold 16 KiB
    pools, each starting with a pool header (or unused: zeros). Adjacent ones
    merge into one maps line, so the part is walked piece by piece: from
    ``start``, or from a page below it inside the line (``line_start``) when
    the part's first piece began there. At least one piece must be positively
    recognised: zeros alone are anyone's.
    """
    if sys.version_info < (3, 11):
        return False
    lowest = max(line_start, start - 4 * _POOL)
    if end - lowest > _MAX_PYTHON_SPAN:
        return False
    with _Memory() as mem:
        for at in range(start, lowest - 1, -mmap.PAGESIZE):
            # walked from each candidate on its own: pages below may come and go
            if _walk(mem, at, end, start, line_end):
                return True
        # a part of untouched pages (an arena's unused pools, where an older
        # mapping ended) recognises nothing by itself: then the whole line must
        # be CPython's, piece by piece from its start
        whole = line_end - line_start
        if line_start < start and whole <= _MAX_PYTHON_SPAN:
            return _walk(mem, line_start, line_end, line_start, line_end)
    return False


def _walk(mem: _Memory, at: int, end: int, start: int, limit: int) -> bool:
    """Whether pieces laid end to end from ``at`` cover ``[start, end)``.

    A piece is a frame chunk (at any page), a pool in use (on a pool
    boundary) or a page of zeros: an unused pool, an arena's slack before its
    first pool or after its last, which may be any number of pages. A frame
    chunk may reach past ``end`` up to ``limit`` (the end of its maps line):
    the part is then the chunk's first pages, the rest lying where an older
    mapping was.

    Each piece is read on its own (a header, or up to :data:`_READ_MAX` bytes
    to see its zeros), never the whole span.
    """
    page = mmap.PAGESIZE
    recognised = False
    while at < end:
        if end - at < _POOL_HEADER.size:
            # a tail too short for any header: an arena's unused end
            tail = mem.read(at, end - at)
            return recognised and tail is not None and not any(tail)
        head = mem.read(at, _POOL_HEADER.size)
        if head is None:
            return False
        _previous, size = _CHUNK_HEADER.unpack_from(head)
        if size >= _PY_DATASTACK and not size % _PY_DATASTACK and at + size <= limit:
            step = size  # a frame chunk
        elif not any(head):
            # zeros are anyone's: skipped page by page, never what recognises the part
            blank = mem.read(at, min(_READ_MAX, end - at))
            if blank is None:
                return False
            zeros = len(blank) - len(blank.lstrip(b"\0"))
            if zeros < len(blank):
                zeros -= zeros % page  # whole pages only: a piece starts on one
            if not zeros:
                return False
            at += zeros
            continue
        elif at % _POOL == 0:
            _ref, free, _next, _prev, _arena, szidx, nextoffset, maxnext = \
                _POOL_HEADER.unpack(head)
            # a pool of one size class: its last block ends at the pool's end, and
            # carving stops one block past that (nextoffset may exceed maxnext)
            if not (free == 0 or at < free < at + _POOL) or szidx >= _SIZE_CLASSES or \
                    maxnext != _POOL - ((szidx + 1) << _ALIGNMENT_SHIFT) or \
                    not nextoffset <= _POOL:
                return False
            step = _POOL  # a pool in use
        else:
            return False
        if at + step <= start:
            return False  # the walk must reach into the part with this piece
        recognised = True
        at += step
    return recognised and at >= end


def _allocator_owned(m: Mapping, part: tuple[int, int], data: bytes) -> bool:
    """Memory the C library or CPython keeps on purpose, not the module's leak.

    libffi keeps the executable pages of the host's ctypes callbacks
    (:mod:`relib_pure.runtime.hostcode`); glibc caches the stacks of exited
    threads and never unmaps malloc arenas; CPython maps 1 MiB arenas for
    small objects. Stacks and arenas are recognised by their whole shape
    (:func:`_thread_stack`, :func:`_malloc_heap`), not by an alignment or a
    neighbour a leak can share.
    """
    if m.path or m.inode:
        return False
    if "x" in m.perms and hostcode.host_code_in(*part):
        return True  # a libffi closure page of the host's own callbacks
    size = part[1] - part[0]
    if size == _PYMALLOC_ARENA:
        return True
    if m.perms == "rw-p" and _python_memory(m.start, m.end, part[1], part[0]):
        return True
    return _malloc_heap(m, data) or _thread_stack(m, data)


def leaked_mappings(before: Snapshot, after: bytes, fid: FileId, path: str,
                    others: frozenset[tuple[int, int]] = frozenset()) -> tuple[Mapping, ...]:
    """Accessible memory mapped now that was not mapped at ``before``.

    The library's own file is excluded (that is :func:`mappings_of_file`'s
    business), as are pseudo mappings (``[heap]``...), inaccessible
    reservations, files in ``others`` (``(dev, inode)`` of libraries this host
    loaded since, which are not this module's doing), one 16 KiB frame stack
    per Python thread started meanwhile, and what :func:`_allocator_owned`
    recognises. A region that grew is reported with
    only its new bytes.
    """
    if after == before.maps:
        return ()  # the common case: one comparison instead of a diff
    old_lines = before.maps.splitlines()
    old = set(old_lines)
    fresh = [line for line in after.splitlines() if line not in old]
    if not fresh:
        return ()
    covered = procfs.ranges(old_lines)
    # Python threads started meanwhile (host helpers, other modules' owner
    # threads) each hold one frame-stack chunk: not this module's doing
    datastacks = len(_python_thread_ids() - before.tasks)
    datastacks = datastacks if sys.version_info >= (3, 11) else 0
    out: list[Mapping] = []  # the new parts
    for m in procfs.parse_maps(fresh):
        if m.perms.startswith("---") or m.path.startswith("["):
            continue
        if _maps_file(m, fid, path):
            continue
        if m.inode and (m.dev, m.inode) in others:
            continue
        for s, e in _uncovered(m, covered):
            # the kernel merges adjacent anonymous mappings with equal flags into
            # one line: two threads' chunks mapped back to back show as 32 KiB
            chunks, rest = divmod(e - s, _PY_DATASTACK)
            if not rest and 0 < chunks <= datastacks and m.perms == "rw-p" and not m.path \
                    and not m.inode:
                datastacks -= chunks
                continue
            if not _allocator_owned(m, (s, e), after):
                out.append(Mapping(s, e, m.perms, m.offset + (s - m.start), m.dev, m.inode,
                                   m.path))
    for _ in range(LEAK_CHECKS):
        if not out:
            break
        out = _settled(out)
    return tuple(out)


#: how long a suspected leak is given to turn out as another thread's passing
#: memory (mapped a moment ago, its header not written yet, or about to go),
#: and how many times: threads that map and unmap frame chunks at one address
#: in a loop can show a fresh one at any single moment, never at each of these
LEAK_SETTLE = 0.01
LEAK_CHECKS = 3


def _settled(found: list[Mapping]) -> list[Mapping]:
    """The suspected leaks still there, and still unexplained, a moment later.

    A leak stays; memory another thread maps for a moment (a deep call's frame
    chunk) is gone or recognisable by then.
    """
    time.sleep(LEAK_SETTLE)
    data = procfs.read_maps()
    kept = []
    for part in found:
        now = procfs.query_mapping(part.start)
        if now is None or now.perms != part.perms or (now.dev, now.inode) != (part.dev,
                                                                                part.inode):
            continue
        if not now.path and not now.inode:
            if _allocator_owned(now, (part.start, part.end), data):
                continue
            # mapped a moment ago and unreadable now: unmapped in between, by a
            # thread that maps and unmaps there in a loop (CPython frees a frame
            # chunk as soon as a call returns from it); what a module left behind
            # after its unload stays, and its memory can be read
            with _Memory() as mem:
                if mem.fd >= 0 and mem.read(part.start, 8) is None:
                    continue
        kept.append(part)
    return kept
