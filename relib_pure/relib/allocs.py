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
#: a batch at least this big chooses the store's main layout (not init's reports)
_MAIN_LAYOUT_MIN_BATCH = 256


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
    always exact. Pointers of the main layout cost one set slot each, others
    one dict slot holding an interned layout tuple (no per-entry objects).

    Thread-safe. No lock is ever held while module code runs, and folding never
    calls module code.
    """

    def __init__(self, module_id: int) -> None:
        self.module_id = module_id
        # Live pointers whose layout is the store's main layout (the dominant one of
        # the first sizeable batch) sit in a set, every other pointer in a dict with its
        # layout: set updates are C loops without per-entry values, and most
        # modules allocate one size far more often than others. A pointer is in
        # exactly one of the two.
        self._main_layout: tuple[int, int] | None = None
        self._main: set[int] = set()
        self._other: dict[int, tuple[int, int]] = {}
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
        #: set by the unload sequence: its last batches are folded by the reader
        #: that follows at once (``pack``), so the folder thread is not woken
        self.fold_on_read = False

    def __len__(self) -> int:
        self.fold()
        return len(self._main) + len(self._other)

    def _layout(self, size: int, align: int) -> tuple[int, int]:
        key = (size, align)
        return self._layouts.setdefault(key, key)

    def on_alloc(self, ptr: int, size: int, align: int) -> None:
        """Record one allocation reported outside the cache (during ``init``)."""
        start = time.perf_counter()
        self.fold()  # keep the order with batches queued before
        with self._fold_lock:
            self._insert(self._layout(size, align), [ptr])
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
        elif backlog and not self.fold_on_read:
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
        # the batch's dominant layout, by a majority of three samples (ops come in
        # the module's hash order, so any position is as good as another)
        samples = [(sizes[i], aligns[i]) for i in (0, count // 2, count - 1)]
        size0, align0 = max(samples, key=samples.count)
        main = self._layout(size0, align0)
        if self._main_layout is None and count >= _MAIN_LAYOUT_MIN_BATCH:
            self._main_layout = main
        if sizes.count(size0) == count and aligns.count(align0) == count:
            odd: list[int] = []
        else:
            differs = map(or_, map(ne, sizes, repeat(size0)), map(ne, aligns, repeat(align0)))
            odd = list(compress(range(count), differs))
        for lo in range(0, count, FOLD_CHUNK):
            t = tags[lo:lo + FOLD_CHUNK]
            p = ptrs[lo:lo + FOLD_CHUNK]
            if not any(t):
                self._insert(main, p)
            elif t.count(_TAG_ALLOC) == 0:
                self._remove(main, p)
            else:
                self._remove(main, list(compress(p, t)))
                self._insert(main, list(compress(p, map(not_, t))))
        # ops of another layout went in with the batch's layout: move them
        layout = self._layout
        for i in odd:
            if tags[i] == _TAG_ALLOC:
                self._insert(layout(sizes[i], aligns[i]), [ptrs[i]])
            else:
                self._remove(layout(sizes[i], aligns[i]), [ptrs[i]])

    def _insert(self, layout: tuple[int, int], ptrs: list[int]) -> None:
        """Alloc ``ptrs`` with ``layout``, replacing any entry they have (fold lock held)."""
        if layout == self._main_layout:
            other = self._other
            if other and not other.keys().isdisjoint(ptrs):
                for ptr in other.keys() & set(ptrs):
                    del other[ptr]
            self._main.update(ptrs)
        else:
            main = self._main
            if main and not main.isdisjoint(ptrs):
                main.difference_update(ptrs)
            self._other.update(zip(ptrs, repeat(layout)))

    def _remove(self, layout: tuple[int, int], ptrs: list[int]) -> None:
        """Dealloc ``ptrs``, wherever they are.

        The dealloc's layout says where a pointer normally is, but not always:
        entries made before the main layout was chosen stay in the dict. So the
        other structure is checked too (a C-level scan; the dict is usually small).
        """
        # A pointer is in one structure only: when the expected one held them all,
        # the other needs no scan (the common case).
        main, other = self._main, self._other
        if layout == self._main_layout:
            before = len(main)
            main.difference_update(ptrs)
            if before - len(main) != len(ptrs) and other and \
                    not other.keys().isdisjoint(ptrs):
                deque(map(other.pop, ptrs, repeat(None)), maxlen=0)
        else:
            before = len(other)
            if other:
                deque(map(other.pop, ptrs, repeat(None)), maxlen=0)
            if before - len(other) != len(ptrs) and main and not main.isdisjoint(ptrs):
                main.difference_update(ptrs)

    def clear(self) -> None:
        """Forget every allocation (the module freed them all); the counters stay."""
        self.fold()
        with self._fold_lock:
            self._main = set()
            self._other = {}
            self._layouts = {}

    def is_ptr_allocated(self, ptr: int) -> bool:
        """Whether ``ptr`` is currently a live allocation of this module."""
        # always through fold(): a batch the background folder already took off
        # the queue is only in the map once it releases the fold lock
        self.fold()
        return ptr in self._main or ptr in self._other

    def total_bytes(self) -> int:
        """Sum of the sizes of the live allocations."""
        self.fold()
        with self._fold_lock:
            main = self._main_layout[0] * len(self._main) if self._main_layout else 0
            return main + sum(size for size, _align in self._other.values())

    def pack(self) -> PackedAllocations:
        """The live set as a contiguous ``Allocation[]`` for the module's ``exit``.

        The layouts are exactly what the module reported: 0.7 rebuilds them
        without checks, so anything else would be undefined behaviour.
        """
        self.fold()
        with self._fold_lock:
            main = array("Q", self._main)
            main_layout = self._main_layout or (0, 0)
            other = list(self._other.items())
        count = len(main) + len(other)
        flat = array("Q", bytes(count * ALLOCATION_SIZE))
        # the main-layout entries are interleaved with C-level slice assignments
        n = len(main)
        flat[0:3 * n:3] = main
        flat[1:3 * n:3] = array("Q", [main_layout[0]]) * n
        flat[2:3 * n:3] = array("Q", [main_layout[1]]) * n
        flat[3 * n:] = array("Q", chain.from_iterable((ptr, size, align)
                                                       for ptr, (size, align) in other))
        buffer = bytearray(flat.tobytes())
        total = main_layout[0] * n + sum(size for _ptr, (size, _align) in other)
        return PackedAllocations(buffer, count, total)


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
