"""Per-module allocation stores: what a relib module's tracker reported as live.

The module's tracking allocator reports its allocations in batches of up to
20,000 ``AllocatorOp`` records (32 bytes each: ``u32`` tag, 4 padding bytes,
``ptr``, ``size``, ``align``; §3, §4.3). The host keeps ``ptr -> layout`` per
module id and hands the live set back to the module's ``exit`` at unload.

These functions run inside ctypes callbacks, on any thread, while the module
holds its own cache mutex. So they decode in bulk, never call module code and
never raise (the caller in :mod:`relib_pure.relib.callbacks` guards them).
The layout is kept as the raw 16 bytes ``size, align`` so that the ``exit``
list can be rebuilt by concatenation, without per-entry ctypes objects.
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
from ctypes import string_at
from dataclasses import dataclass

from relib_pure.relib.layouts import ALLOCATION_SIZE, ALLOCATOR_OP_SIZE

__all__ = [
    "AllocStore",
    "PackedAllocations",
    "new_module_id",
    "register",
    "lookup",
    "remove",
    "live_module_ids",
]

log = logging.getLogger(__name__)

_OP = struct.Struct("<I4xQ16s")  # tag, (padding never read), ptr, raw StableLayout
_LAYOUT = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_TAG_ALLOC = 0


@dataclass(frozen=True)
class PackedAllocations:
    """The live allocations of a module as one ``Allocation[]`` buffer (24 bytes each)."""

    buffer: bytearray
    count: int
    total_bytes: int


class AllocStore:
    """Live allocations of one module: ``ptr -> raw StableLayout bytes``.

    Thread-safe: callbacks arrive from module threads and from host threads
    calling exports. The lock is only ever held for Python work, never while
    module code runs.
    """

    def __init__(self, module_id: int) -> None:
        self.module_id = module_id
        self._live: dict[int, bytes] = {}
        self._lock = threading.Lock()
        #: counters for reports and benchmarks
        self.alloc_calls = 0
        self.batches = 0
        self.ops = 0
        self.callback_seconds = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def on_alloc(self, ptr: int, size: int, align: int) -> None:
        """Record one allocation reported outside the cache (during ``init``)."""
        start = time.perf_counter()
        with self._lock:
            self._live[ptr] = _LAYOUT.pack(size, align)
            self.alloc_calls += 1
            self.callback_seconds += time.perf_counter() - start

    def on_cached_allocs(self, ops_ptr: int | None, count: int) -> None:
        """Apply a batch of ``count`` AllocatorOps starting at ``ops_ptr``.

        Alloc inserts or overwrites; Dealloc removes, and is silently ignored for
        an unknown pointer (its Alloc was cancelled in the same batch, or it was
        host memory the module freed).
        """
        start = time.perf_counter()
        if count <= 0 or not ops_ptr:
            with self._lock:
                self.batches += 1
                self.callback_seconds += time.perf_counter() - start
            return
        # one memcpy out of module memory, then decode without touching it again
        data = string_at(ops_ptr, count * ALLOCATOR_OP_SIZE)
        with self._lock:
            live = self._live
            pop = live.pop
            for tag, ptr, layout in _OP.iter_unpack(data):
                if tag == _TAG_ALLOC:
                    live[ptr] = layout
                else:
                    pop(ptr, None)
            self.batches += 1
            self.ops += count
            self.callback_seconds += time.perf_counter() - start

    def is_ptr_allocated(self, ptr: int) -> bool:
        """Whether ``ptr`` is currently a live allocation of this module."""
        return ptr in self._live

    def total_bytes(self) -> int:
        """Sum of the sizes of the live allocations."""
        with self._lock:
            raw = b"".join(self._live.values())
        return sum(size for size, _align in _LAYOUT.iter_unpack(raw))

    def pack(self) -> PackedAllocations:
        """The live set as a contiguous ``Allocation[]`` for the module's ``exit``.

        The layouts are the exact bytes the module reported: 0.7 rebuilds them
        without checks, so anything else would be undefined behaviour.
        """
        with self._lock:
            items = list(self._live.items())
        pack_ptr = _U64.pack
        buffer = bytearray(b"".join(pack_ptr(ptr) + layout for ptr, layout in items))
        assert len(buffer) == len(items) * ALLOCATION_SIZE
        total = sum(size for size, _align in _LAYOUT.iter_unpack(
            b"".join(layout for _ptr, layout in items)))
        return PackedAllocations(buffer, len(items), total)


# Module ids come from one process-wide counter starting at 1, never reused:
# the module treats id 0 as "not initialised".
_ids = itertools.count(1)
_ids_lock = threading.Lock()
_stores: dict[int, AllocStore] = {}


def new_module_id() -> int:
    """A fresh module id (1, 2, ...), never reused in this process."""
    with _ids_lock:
        return next(_ids)


def register(module_id: int) -> AllocStore:
    """Create the empty store for ``module_id``; must happen before ``init``."""
    store = AllocStore(module_id)
    _stores[module_id] = store
    return store


def lookup(module_id: int) -> AllocStore | None:
    """The store of ``module_id``, or ``None`` once removed (or never created)."""
    return _stores.get(module_id)


def remove(module_id: int) -> AllocStore | None:
    """Forget the store of ``module_id``; later callbacks for it are fatal."""
    return _stores.pop(module_id, None)


def live_module_ids() -> list[int]:
    """Ids that currently have a store (loaded modules with a tracker)."""
    return sorted(_stores)
