"""The one cache of inspections, keyed by what identifies a file's bytes.

Reload loops validate the same file again and again, and every resolvability
check reads libc and friends: both ask here. The key is the path as given
(an inspection names it) and the file's device, inode, size, mtime and ctime
(an in-place rewrite within one mtime tick still changes the ctime).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from relib_pure.model import LibraryInfo

__all__ = ["inspect_identified", "identity_key", "clear"]

#: inspections kept (least recently used dropped first)
CACHE_SIZE = 256

_lock = threading.Lock()
_cache: OrderedDict[tuple[Any, ...], LibraryInfo] = OrderedDict()


def identity_key(path: str, st: os.stat_result) -> tuple[Any, ...]:
    """The cache key of ``path`` as ``st`` describes it."""
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def inspect_identified(path: str, st: os.stat_result | None = None) -> tuple[LibraryInfo, bool]:
    """``(relib_pure.inspect(path), read_now)``, cached by :func:`identity_key`.

    ``st`` is the caller's stat of ``path`` (taken when not given); ``read_now``
    says the file was read by this call rather than found in the cache.
    Inspection is CPU-bound under the GIL anyway: one lock lets the losers of a
    race read the winner's result instead of parsing the file again.
    """
    key = identity_key(path, st if st is not None else os.stat(path))
    with _lock:
        info = _cache.get(key)
        if info is not None:
            _cache.move_to_end(key)
            return info, False
        from relib_pure.inspection import inspect

        info = inspect(path)
        _cache[key] = info
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return info, True


def clear() -> None:
    """Forget every cached inspection."""
    with _lock:
        _cache.clear()
