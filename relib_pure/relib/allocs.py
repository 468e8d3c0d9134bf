"""Per-module allocation stores: what a relib module's tracker reported as live.

The module's tracking allocator reports its allocations in batches of up to
20,000 ``AllocatorOp`` records (32 bytes each: ``u32`` tag, 4 padding bytes,
``ptr``, ``size``, ``align``; §3, §4.3). The host keeps ``ptr -> layout`` per
module id and hands the live set back to the module's ``exit`` at unload.

The callbacks run inside ctypes callbacks, on any thread, while the module
holds its own cache mutex (every allocating module thread waits meanwhile). So
they only copy the batch and queue it; decoding happens in bulk later, never
calls module code and never raises into a callback (the caller in
:mod:`relib_pure.relib.callbacks` guards them).
The ``exit`` list is packed with :mod:`array` into one buffer, without
per-entry ctypes objects.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from array import array
from collections import deque
from ctypes import string_at
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import ne, not_, or_

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

_TAG_ALLOC = 0


@dataclass(frozen=True)
class PackedAllocations:
    """The live allocations of a module as one ``Allocation[]`` buffer (24 bytes each)."""

    buffer: bytearray
    count: int
    total_bytes: int


#: batches queued before the reporting thread folds them itself (backpressure):
#: 32 x 640 KB at most waits in memory
MAX_PENDING_BATCHES = 32
#: ops applied per bulk step of a fold: the interpreter can hand the GIL to a
#: module thread waiting in a callback between steps (a bulk step never yields);
#: no explicit sleep(0), which costs a scheduler round trip on a busy machine
FOLD_CHUNK = 4096


class AllocStore:
    """Live allocations of one module: ``ptr -> (size, align)``.

    A batch callback only copies the ops out of module memory and queues them,
    so the module's allocating threads (which wait on the module's cache mutex
    meanwhile) are released quickly; a background thread folds queued batches
    into the map, in order. Every reader (:meth:`is_ptr_allocated`,
    :meth:`pack`, ``len``) folds what is still queued first, so answers are
    always exact. Layout tuples are interned: a million live entries cost one
    dict slot each and no per-entry objects.

    Thread-safe. No lock is ever held while module code runs, and folding never
    calls module code.
    """

    def __init__(self, module_id: int) -> None:
        self.module_id = module_id
        self._live: dict[int, tuple[int, int]] = {}
        self._layouts: dict[tuple[int, int], tuple[int, int]] = {}
        self._pending: deque[bytes] = deque()
        self._lock = threading.Lock()  # guards _pending and the counters
        self._fold_lock = threading.Lock()  # one folder at a time keeps batch order
        #: counters for reports and benchmarks
        self.alloc_calls = 0
        self.batches = 0
        self.ops = 0
        self.callback_seconds = 0.0
        self.fold_seconds = 0.0

    def __len__(self) -> int:
        self.fold()
        return len(self._live)

    def _layout(self, size: int, align: int) -> tuple[int, int]:
        key = (size, align)
        return self._layouts.setdefault(key, key)

    def on_alloc(self, ptr: int, size: int, align: int) -> None:
        """Record one allocation reported outside the cache (during ``init``)."""
        start = time.perf_counter()
        self.fold()  # keep the order with batches queued before
        with self._fold_lock:
            self._live[ptr] = self._layout(size, align)
        with self._lock:
            self.alloc_calls += 1
            self.callback_seconds += time.perf_counter() - start

    def on_cached_allocs(self, ops_ptr: int | None, count: int) -> None:
        """Queue a batch of ``count`` AllocatorOps starting at ``ops_ptr``.

        The bytes are copied at once (the module reuses its buffer after the
        call); they are applied by :meth:`fold`.
        """
        start = time.perf_counter()
        data = string_at(ops_ptr, count * ALLOCATOR_OP_SIZE) if count > 0 and ops_ptr else b""
        with self._lock:
            if data:
                self._pending.append(data)
            backlog = len(self._pending)
            self.batches += 1
            self.ops += max(count, 0)
            self.callback_seconds += time.perf_counter() - start
        if backlog > MAX_PENDING_BATCHES:
            self.fold()
        elif backlog:
            _folder.wake(self)

    def fold(self) -> None:
        """Apply every queued batch to the map, oldest first."""
        with self._fold_lock:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    data = self._pending.popleft()
                start = time.perf_counter()
                self._apply(data)
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.fold_seconds += elapsed

    def _apply(self, data: bytes) -> None:
        # Alloc inserts or overwrites; Dealloc removes, and is silently ignored for
        # an unknown pointer (its Alloc was cancelled in the same batch, or it was
        # host memory the module freed). A batch holds at most one op per pointer,
        # so its allocs and deallocs can be applied as separate bulk steps, and
        # allocs can first be stored with the batch's dominant layout and the
        # few others corrected afterwards.
        view = memoryview(data)
        count = len(data) // ALLOCATOR_OP_SIZE
        words = view.cast("Q")
        tags = view.cast("I")[0::8].tolist()  # u32 tag; the padding word is never read
        ptrs = words[1::4].tolist()
        sizes = words[2::4].tolist()
        aligns = words[3::4].tolist()
        size0, align0 = sizes[0], aligns[0]
        main = self._layout(size0, align0)
        if sizes.count(size0) == count and aligns.count(align0) == count:
            odd: list[int] = []
        else:
            differs = map(or_, map(ne, sizes, repeat(size0)), map(ne, aligns, repeat(align0)))
            odd = list(compress(range(count), differs))
        live = self._live
        pop = live.pop
        for lo in range(0, count, FOLD_CHUNK):
            t = tags[lo:lo + FOLD_CHUNK]
            p = ptrs[lo:lo + FOLD_CHUNK]
            if not any(t):
                live.update(zip(p, repeat(main)))
            elif t.count(_TAG_ALLOC) == 0:
                deque(map(pop, p, repeat(None)), maxlen=0)
            else:
                deque(map(pop, compress(p, t), repeat(None)), maxlen=0)
                live.update(zip(compress(p, map(not_, t)), repeat(main)))
        layout = self._layout
        for i in odd:
            if tags[i] == _TAG_ALLOC:
                live[ptrs[i]] = layout(sizes[i], aligns[i])

    def is_ptr_allocated(self, ptr: int) -> bool:
        """Whether ``ptr`` is currently a live allocation of this module."""
        # always through fold(): a batch the background folder already took off
        # the queue is only in the map once it releases the fold lock
        self.fold()
        return ptr in self._live

    def total_bytes(self) -> int:
        """Sum of the sizes of the live allocations."""
        self.fold()
        with self._fold_lock:
            return sum(size for size, _align in self._live.values())

    def pack(self) -> PackedAllocations:
        """The live set as a contiguous ``Allocation[]`` for the module's ``exit``.

        The layouts are exactly what the module reported: 0.7 rebuilds them
        without checks, so anything else would be undefined behaviour.
        """
        self.fold()
        with self._fold_lock:
            items = list(self._live.items())
        flat = array("Q", chain.from_iterable((ptr, size, align)
                                              for ptr, (size, align) in items))
        buffer = bytearray(flat.tobytes())
        assert len(buffer) == len(items) * ALLOCATION_SIZE
        total = sum(flat[1::3])
        return PackedAllocations(buffer, len(items), total)


class _Folder:
    """One daemon thread that folds queued batches of any store in the background."""

    def __init__(self) -> None:
        self._queue: deque[AllocStore] = deque()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wake(self, store: AllocStore) -> None:
        self._queue.append(store)
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="relib-pure-alloc-folder")
                    self._thread.start()
        self._wakeup.set()

    def _run(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                store = self._queue.popleft()
                try:
                    store.fold()
                except Exception:  # never dies: readers fold synchronously anyway
                    log.exception("background fold of module %d failed", store.module_id)


_folder = _Folder()


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
