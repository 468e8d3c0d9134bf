"""Snapshots of this process from ``/proc/self``: mappings, threads, descriptors.

Everything here reads the kernel's view, not the loader's: a library is gone
only when no line of ``/proc/self/maps`` names its device and inode.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from relib_pure import _hostfds

logger = logging.getLogger(__name__)

__all__ = [
    "Mapping", "FileId", "file_id", "read_maps", "parse_line", "parse_maps", "ranges",
    "lines_with", "maps_mention",
    "mapping_at", "query_mapping", "task_ids", "fd_identities", "fd_target",
    "thread_name", "wait_task_gone",
]

_MAPS = "/proc/self/maps"
_TASK = "/proc/self/task"
_FD = "/proc/self/fd"
_FD_SLASH = _FD + "/"
#: descriptors the host holds open (the kept maps/statm descriptors, thread
#: pidfds, files being inspected): no descriptor snapshot counts them; opened,
#: closed and listed under ``_hostfds.lock`` (see :mod:`relib_pure._hostfds`)
host_fds: set[int] = _hostfds.fds


@dataclass(frozen=True, slots=True)
class FileId:
    """What identifies the bytes of a file: ``(dev, inode)`` plus size, mtime and ctime.

    ``dev`` is the ``st_dev`` number; maps shows it as ``major:minor`` in hex.
    The ctime is what an in-place rewrite cannot hide: ``os.utime`` restores
    the mtime but sets the ctime to now (kernels since 6.13 also make a change
    right after a ``stat`` get a fine-grained, hence different, ctime).
    """

    dev: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int = 0

    @property
    def maps_key(self) -> bytes:
        """The ``" dev inode "`` fragment of a maps line naming this file."""
        return b" %02x:%02x %d " % (os.major(self.dev), os.minor(self.dev), self.inode)


def file_id(st: os.stat_result) -> FileId:
    return FileId(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Mapping(NamedTuple):
    """One line of ``/proc/self/maps``; ``path`` is ``""`` for anonymous memory.

    A named tuple because a process has hundreds of mappings and every unload
    parses the new ones.
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: int
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "size": self.size,
                "perms": self.perms, "inode": self.inode, "path": self.path or None}


_CHUNK = 1 << 16
_maps_fd = -1
_maps_pid = -1
_maps_lock = threading.Lock()


def read_maps(through: int | None = None) -> bytes:
    """The raw text of ``/proc/self/maps``.

    With ``through``, reading stops once a line starts above that address:
    lines are sorted by address and the kernel builds the text as it is read,
    so the mapping of a freshly loaded library (mmap hands out descending
    addresses, and low addresses come first) costs a fraction of a full read.

    The descriptor stays open (``pread`` from offset 0 regenerates the text),
    which costs a third of an open/read/close; it is reopened after a fork,
    where it would still describe the parent.
    """
    with _maps_lock:
        fd = _maps_descriptor()
        chunks = []
        offset = 0
        while True:
            # the kernel returns about a page per read; the chunk size stays
            # below malloc's mmap threshold so each read is not an mmap+munmap
            chunk = os.pread(fd, _CHUNK, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            if through is not None and _last_start(chunk) > through:
                break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _maps_descriptor() -> int:
    """The kept-open ``/proc/self/maps`` descriptor (call with ``_maps_lock`` held)."""
    global _maps_fd, _maps_pid
    if _maps_pid != os.getpid():
        # after a fork the inherited descriptor still describes the parent's memory
        _maps_fd = _reopen(_maps_fd, _MAPS)
        _maps_pid = os.getpid()
    return _maps_fd


def _reopen(fd: int, path: str) -> int:
    """Close the host descriptor ``fd`` (if any) and open ``path`` as a new one."""
    if fd >= 0:
        try:
            _hostfds.release(fd)
        except OSError:
            pass
    return _hostfds.hold(lambda: os.open(path, os.O_RDONLY | os.O_CLOEXEC))


_statm_fd = -1
_statm_pid = -1


def vm_pages() -> int:
    """VmSize in pages (the first field of ``/proc/self/statm``; one short ``pread``).

    Every mapping made or removed anywhere in the process changes it, so an
    equal value before and after a cycle is the cheap sign that the maps text
    did not change either (the full text is read when it did).
    """
    global _statm_fd, _statm_pid
    with _maps_lock:
        if _statm_pid != os.getpid():
            _statm_fd = _reopen(_statm_fd, "/proc/self/statm")
            _statm_pid = os.getpid()
        data = os.pread(_statm_fd, 128, 0)
    return int(data.split(None, 1)[0])


class _ProcmapQuery(ctypes.Structure):
    # struct procmap_query of <linux/fs.h> (Linux 6.11+)
    _fields_ = [
        ("size", ctypes.c_uint64), ("query_flags", ctypes.c_uint64),
        ("query_addr", ctypes.c_uint64), ("vma_start", ctypes.c_uint64),
        ("vma_end", ctypes.c_uint64), ("vma_flags", ctypes.c_uint64),
        ("vma_page_size", ctypes.c_uint64), ("vma_offset", ctypes.c_uint64),
        ("inode", ctypes.c_uint64), ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32), ("vma_name_size", ctypes.c_uint32),
        ("build_id_size", ctypes.c_uint32), ("vma_name_addr", ctypes.c_uint64),
        ("build_id_addr", ctypes.c_uint64),
    ]


# _IOWR('f', 17, struct procmap_query)
_PROCMAP_QUERY = (3 << 30) | (ctypes.sizeof(_ProcmapQuery) << 16) | (ord("f") << 8) | 17
_VMA_PERMS = ((1, "r"), (2, "w"), (4, "x"))
_VMA_SHARED = 8
_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
# None until the first query says whether this kernel knows PROCMAP_QUERY
_query_supported: bool | None = None
_NAME_SIZE = 4096  # PATH_MAX
_query_name = ctypes.create_string_buffer(_NAME_SIZE)
_query = _ProcmapQuery(size=ctypes.sizeof(_ProcmapQuery),
                       vma_name_addr=ctypes.addressof(_query_name))
_query_addr = ctypes.addressof(_query)


# the perms column for each combination of the four flag bits
_PERMS_BY_FLAGS = tuple("".join(c if flags & bit else "-" for bit, c in _VMA_PERMS)
                        + ("s" if flags & _VMA_SHARED else "p") for flags in range(16))


def _perms(flags: int) -> str:
    return _PERMS_BY_FLAGS[flags & 0xF]


def query_mapping(address: int) -> Mapping | None:
    """The mapping containing ``address``, as ``/proc/self/maps`` describes it.

    Asks the kernel for that one mapping with the ``PROCMAP_QUERY`` ioctl on
    the maps descriptor (Linux 6.11+: a few microseconds through ctypes, where
    the kernel formatting the text up to that address costs tens to hundreds);
    older kernels get the same answer from a partial read (:func:`read_maps`
    with ``through``).
    """
    global _query_supported
    if _query_supported is not False:
        q, name = _query, _query_name
        with _maps_lock:
            # one preallocated request, reused under the lock: building the
            # ctypes objects per call would cost more than the ioctl itself
            q.query_addr = address
            q.vma_name_size = _NAME_SIZE
            rc = _ioctl(_maps_descriptor(), _PROCMAP_QUERY, _query_addr)
            if rc == 0:
                found = Mapping(q.vma_start, q.vma_end, _perms(q.vma_flags), q.vma_offset,
                                os.makedev(q.dev_major, q.dev_minor), q.inode,
                                os.fsdecode(name.value) if q.vma_name_size else "")
        if rc == 0:
            _query_supported = True
            return found
        err = ctypes.get_errno()
        if err == errno.ENOENT:
            return None
        if _query_supported is None and err in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            logger.debug("PROCMAP_QUERY unavailable (%s): reading maps text instead",
                         os.strerror(err))
            _query_supported = False
        else:
            logger.debug("PROCMAP_QUERY at %#x: %s", address, os.strerror(err))
    return mapping_at(parse_maps(read_maps(through=address)), address)


def _last_start(chunk: bytes) -> int:
    """Start address of the last line of ``chunk`` (-1 when it holds no whole line)."""
    if not chunk.endswith(b"\n"):
        return -1  # a line cut in two: keep reading
    begin = chunk.rfind(b"\n", 0, len(chunk) - 1) + 1
    start, sep, _ = chunk[begin:begin + 17].partition(b"-")
    return int(start, 16) if sep else -1


def parse_line(line: bytes) -> Mapping | None:
    parts = line.split(None, 5)
    if len(parts) < 5:
        return None
    start, _, end = parts[0].partition(b"-")
    major, _, minor = parts[3].partition(b":")
    return Mapping(int(start, 16), int(end, 16), parts[1].decode(), int(parts[2], 16),
                   os.makedev(int(major, 16), int(minor, 16)), int(parts[4]),
                   os.fsdecode(parts[5]) if len(parts) > 5 else "")


def parse_maps(data: bytes | list[bytes]) -> list[Mapping]:
    """Parse maps text (or some of its lines) into :class:`Mapping` rows."""
    lines = data.splitlines() if isinstance(data, bytes) else data
    return [m for m in map(parse_line, lines) if m is not None]


def ranges(lines: list[bytes]) -> list[tuple[int, int]]:
    """Just the ``(start, end)`` of each line, sorted (cheaper than a full parse)."""
    out = []
    for line in lines:
        start, _, rest = line.partition(b"-")
        out.append((int(start, 16), int(rest[:rest.index(b" ")], 16)))
    out.sort()
    return out


def lines_with(data: bytes, needle: bytes) -> list[bytes]:
    """The lines of ``data`` containing ``needle``."""
    out = []
    idx = data.find(needle)
    while idx != -1:
        start = data.rfind(b"\n", 0, idx) + 1
        end = data.find(b"\n", idx)
        end = len(data) if end == -1 else end
        out.append(data[start:end])
        idx = data.find(needle, end)
    return out


def maps_mention(data: bytes, fid: FileId | None, path: str | None) -> bool:
    """Whether ``data`` maps the file ``fid`` or names ``path`` (both cheap byte searches)."""
    if fid is not None and fid.maps_key in data:
        return True
    if path is not None:
        needle = os.fsencode(path)
        # exact path column: preceded by spaces, followed by end of line or " (deleted)"
        idx = data.find(b" " + needle)
        while idx != -1:
            after = idx + 1 + len(needle)
            if after == len(data) or data[after:after + 1] == b"\n" or \
                    data.startswith(b" (deleted)", after):
                return True
            idx = data.find(b" " + needle, after)
    return False


def mapping_at(maps: list[Mapping], address: int) -> Mapping | None:
    for m in maps:
        if m.start <= address < m.end:
            return m
    return None


def task_ids() -> set[int]:
    """Kernel thread ids (``native_id``) of every thread of this process."""
    with _hostfds.lock:  # listdir's own descriptor must not show in another snapshot
        return {int(name) for name in os.listdir(_TASK)}


def thread_name(tid: int) -> str:
    try:
        with _hostfds.lock, open(f"{_TASK}/{tid}/comm", "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def fd_identities() -> dict[int, tuple[int, int]]:
    """Open descriptors (the host's own left out) and the ``(st_dev, st_ino)`` of
    what each refers to (:func:`relib_pure._hostfds.identities`)."""
    with _hostfds.lock:
        return _hostfds.identities(host_fds)


def fd_target(fd: int) -> str | None:
    """What descriptor ``fd`` points to (``None`` once it is closed)."""
    try:
        return os.readlink(_FD_SLASH + str(fd))
    except OSError:
        return None


# pidfd_open flag for a thread (not process) descriptor, Linux 6.9+: it polls
# readable once that one thread has exited
_PIDFD_THREAD = os.O_EXCL
_pidfd_threads: bool | None = None if hasattr(os, "pidfd_open") else False


def _task_exists(path: str) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


def _wait_exit_event(tid: int, timeout: float) -> bool | None:
    """Block until thread ``tid`` exits, via a thread pidfd.

    True: it has exited (or was gone already); False: timed out; None: this
    kernel has no thread pidfds, poll instead.
    """
    global _pidfd_threads
    if _pidfd_threads is False:
        return None
    try:
        fd = _hostfds.hold(lambda: os.pidfd_open(tid, _PIDFD_THREAD))
    except ProcessLookupError:
        return True
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOSYS, errno.EPERM):
            logger.debug("thread pidfds unavailable (%s): polling /proc/self/task", e)
            _pidfd_threads = False
            return None
        raise
    _pidfd_threads = True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        _hostfds.release(fd)


def wait_task_gone(tid: int, timeout: float) -> bool:
    """Wait until thread ``tid`` has fully exited (its TLS destructors included).

    ``Thread.join`` returns when Python's part of the thread is done; glibc still
    runs TLS destructors afterwards, and only the kernel's task list says when
    the thread is really gone. A thread pidfd (Linux 6.9+) wakes this thread
    when the exit happens, instead of sleeping in steps (a sleep of 20 us costs
    80 us or more on a busy machine); the task list then confirms.
    """
    path = f"{_TASK}/{tid}"
    deadline = time.monotonic() + timeout
    if _task_exists(path):
        if _wait_exit_event(tid, timeout) is False:
            logger.warning("thread %d still exists after %.1f s", tid, timeout)
            return False
    # the exit event comes a moment before the kernel unlists the thread:
    # yield first, then sleep in growing steps
    spins = 0
    delay = 0.00002
    while _task_exists(path):
        if time.monotonic() >= deadline:
            logger.warning("thread %d still exists after %.1f s", tid, timeout)
            return False
        if spins < 50:
            spins += 1
            os.sched_yield()
            continue
        time.sleep(delay)
        delay = min(delay * 2, 0.005)
    return True
