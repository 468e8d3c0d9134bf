"""Executable pages the host makes itself: the libffi closures behind ctypes callbacks.

A Python callback handed to a module (an import, relib's allocation hooks)
lives in a page that libffi maps on demand, read-write-execute and anonymous,
and keeps for reuse after the callback is freed. Mapped while a module was
loaded, such a page looks exactly like memory the module leaked; the pages
recorded here are the host's and are never blamed on a module.
"""

from __future__ import annotations

import mmap
import threading
from ctypes import c_void_p, cast
from typing import TypeVar

__all__ = ["note_callback", "host_code_in"]

_PAGE = mmap.PAGESIZE
_pages: set[int] = set()
_lock = threading.Lock()

C = TypeVar("C")


def note_callback(callback: C) -> C:
    """Record the page of a ctypes callback object; returns it unchanged."""
    address = cast(callback, c_void_p).value  # type: ignore[arg-type]
    if address:
        with _lock:
            _pages.add(address // _PAGE)
    return callback


def host_code_in(start: int, end: int) -> bool:
    """Whether ``[start, end)`` holds a page with one of the host's callbacks."""
    first, last = start // _PAGE, (end - 1) // _PAGE
    with _lock:
        if last - first < len(_pages):
            return any(p in _pages for p in range(first, last + 1))
        return any(first <= p <= last for p in _pages)

