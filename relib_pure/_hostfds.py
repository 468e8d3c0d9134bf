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
from typing import TypeVar

T = TypeVar("T")

__all__ = ["lock", "fds", "files", "hold", "release", "hold_file", "release_file",
           "identities"]

#: held while a descriptor is opened and registered, closed and unregistered,
#: and while a snapshot lists descriptors or maps (re-entrant: a snapshot may
#: open its own listing descriptor)
lock = threading.RLock()
#: descriptors open for the host's own use
fds: set[int] = set()
#: (st_dev, st_ino) of files the host maps for a moment (inspection), counted
files: Counter[tuple[int, int]] = Counter()
# descriptors Python's mmap objects hold (it dups the one it maps), by mapping
_mapping_fds: dict[int, set[int]] = {}
_FD_DIR = "/proc/self/fd"


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


def hold_file(key: tuple[int, int], map_file: Callable[[], T]) -> T:
    """Run ``map_file`` (which maps the file ``key``) with the mapping registered.

    ``mmap.mmap`` keeps a duplicate of the descriptor it maps (Python before
    3.13 cannot be told not to): the descriptors on that file which appeared
    meanwhile are registered with it.
    """
    with lock:
        before = _open_on(key)
        result = map_file()
        dups = _open_on(key) - before - fds
        fds.update(dups)
        _mapping_fds[id(result)] = dups
        files[key] += 1
        return result


def identities(skip: set[int] | frozenset[int] = frozenset()) -> dict[int, tuple[int, int]]:
    """Each open descriptor but those in ``skip``, and the ``(st_dev, st_ino)`` it
    refers to (call with :data:`lock` held: no host descriptor comes or goes
    unregistered meanwhile).

    ``fstat`` on the number is a third of the cost of ``readlink`` through
    ``/proc/self/fd``, and just as good at telling two targets apart.
    """
    out: dict[int, tuple[int, int]] = {}
    for name in os.listdir(_FD_DIR):
        fd = int(name)
        if fd in skip:
            continue
        try:
            st = os.fstat(fd)
        except OSError:  # listdir's own descriptor, closed by now
            continue
        out[fd] = (st.st_dev, st.st_ino)
    return out


def _open_on(key: tuple[int, int]) -> set[int]:
    """The descriptors open on the file ``key`` (call with :data:`lock` held)."""
    return {fd for fd, ident in identities().items() if ident == key}


def release_file(key: tuple[int, int], mapping: object, unmap: Callable[[], object]) -> None:
    """Run ``unmap`` (which closes ``mapping``) and forget it, atomically."""
    with lock:
        try:
            unmap()
        finally:
            fds.difference_update(_mapping_fds.pop(id(mapping), ()))
            files[key] -= 1
            if files[key] <= 0:
                del files[key]
