"""Descriptors and file mappings relib_pure itself holds for a moment.

A module's leak report compares the process's descriptors and mappings
before and after its lifetime; whatever the host opens meanwhile on another
thread (a pidfd awaiting a thread's exit, a library being inspected or
hashed, the descriptor ``os.listdir`` opens on ``/proc/self/fd``) must not be
charged to the module. Opening and registering happen under :data:`lock`, and
so do snapshots, so a snapshot never sees one of these without knowing it.

Kept free of ctypes and of the runtime so that inspection can use it.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable

__all__ = ["lock", "fds", "files", "hold", "release", "hold_file", "release_file"]

#: held while a descriptor is opened and registered, closed and unregistered,
#: and while a snapshot lists descriptors or maps (re-entrant: a snapshot may
#: open its own listing descriptor)
lock = threading.RLock()
#: descriptors open for the host's own use
fds: set[int] = set()
#: (st_dev, st_ino) of files the host maps for a moment (inspection), counted
files: Counter[tuple[int, int]] = Counter()


def hold(open_fd: Callable[[], int]) -> int:
    """Run ``open_fd`` and register the descriptor it returns, atomically."""
    with lock:
        fd = open_fd()
        fds.add(fd)
        return fd


def release(fd: int) -> None:
    """Unregister and close ``fd`` (opened by :func:`hold`), atomically."""
    with lock:
        fds.discard(fd)
        os.close(fd)


def hold_file(key: tuple[int, int], map_file: Callable[[], object]) -> object:
    """Run ``map_file`` (which maps the file ``key``) with the mapping registered."""
    with lock:
        result = map_file()
        files[key] += 1
        return result


def release_file(key: tuple[int, int], unmap: Callable[[], object]) -> None:
    """Run ``unmap`` and forget one mapping of ``key``, atomically."""
    with lock:
        try:
            unmap()
        finally:
            files[key] -= 1
            if files[key] <= 0:
                del files[key]
