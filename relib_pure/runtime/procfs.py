"""Snapshots of this process from ``/proc/self``: mappings, threads, descriptors.

Everything here reads the kernel's view, not the loader's: a library is gone
only when no line of ``/proc/self/maps`` names its device and inode.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

logger = logging.getLogger(__name__)

__all__ = [
    "Mapping", "FileId", "file_id", "read_maps", "parse_line", "parse_maps", "ranges",
    "lines_with", "maps_mention",
    "mapping_at", "task_ids", "fd_targets", "thread_name", "wait_task_gone",
]

_MAPS = "/proc/self/maps"
_TASK = "/proc/self/task"
_FD = "/proc/self/fd"


@dataclass(frozen=True, slots=True)
class FileId:
    """What identifies the bytes of a file: ``(dev, inode)`` plus size and mtime.

    ``dev`` is the ``st_dev`` number; maps shows it as ``major:minor`` in hex.
    """

    dev: int
    inode: int
    size: int
    mtime_ns: int

    @property
    def maps_key(self) -> bytes:
        """The ``" dev inode "`` fragment of a maps line naming this file."""
        return b" %02x:%02x %d " % (os.major(self.dev), os.minor(self.dev), self.inode)


def file_id(st: os.stat_result) -> FileId:
    return FileId(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


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
    global _maps_fd, _maps_pid
    with _maps_lock:
        if _maps_pid != os.getpid():
            _maps_fd = os.open(_MAPS, os.O_RDONLY | os.O_CLOEXEC)
            _maps_pid = os.getpid()
        fd = _maps_fd
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
    return {int(name) for name in os.listdir(_TASK)}


def thread_name(tid: int) -> str:
    try:
        with open(f"{_TASK}/{tid}/comm", "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def fd_targets() -> dict[int, str]:
    """Open descriptors and what they point to (``readlink`` of ``/proc/self/fd/N``)."""
    out: dict[int, str] = {}
    # listdir opens a descriptor of its own for the directory; it is gone by the
    # time readlink runs, so it simply fails and is skipped.
    for name in os.listdir(_FD):
        try:
            out[int(name)] = os.readlink(f"{_FD}/{name}")
        except OSError:
            continue
    return out


def wait_task_gone(tid: int, timeout: float) -> bool:
    """Wait until thread ``tid`` has fully exited (its TLS destructors included).

    ``Thread.join`` returns when Python's part of the thread is done; glibc still
    runs TLS destructors afterwards, and only the kernel's task list says when
    the thread is really gone.
    """
    path = f"{_TASK}/{tid}"
    deadline = time.monotonic() + timeout
    delay = 0.00002
    while os.path.exists(path):
        if time.monotonic() >= deadline:
            logger.warning("thread %d still exists after %.1f s", tid, timeout)
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.005)
    return True
