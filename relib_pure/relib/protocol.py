"""The relib protocol as a runtime :class:`~relib_pure.runtime.driver.Driver`.

Load (§4.1, after the runtime's ``dlopen`` with ``RTLD_LOCAL|RTLD_DEEPBIND``):
resolve every internal and public symbol first (a missing one is a typed error
before any module code runs), write the internal import slots, take a module
id (from 1), create its allocation store, call ``init`` on the owner thread,
then write the public import slots.

Unload (§4.2, on the owner thread, before ``dlclose``): ``before_unload``,
thread check, allocator lock, thread-local destructors, mmap/pthread-key
cleanup, flush of the module's cache, ``exit`` with every live allocation.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Mapping
from ctypes import CFUNCTYPE, c_char, c_uint64
from typing import Any

from relib_pure.abi import Generation, internal_export, internal_import
from relib_pure.errors import (BeforeUnloadPanicked, SymbolMissing, ThreadsStillRunning,
                               UnloadError)
from relib_pure.model import CompilationInfo
from relib_pure.relib import allocs
from relib_pure.relib.callbacks import callbacks_for
from relib_pure.relib.exports import ExportFunction, Invoker, bind_export
from relib_pure.relib.imports import ImportTable, build_imports, write_slots
from relib_pure.relib.layouts import RawSlice, init_argtypes
from relib_pure.relib.signatures import FunctionSpec, relib_spec

__all__ = ["RelibDriver", "RTLD_DEEPBIND"]

log = logging.getLogger(__name__)

RTLD_DEEPBIND = 0x8

_VOID = CFUNCTYPE(None)
_COUNT = CFUNCTYPE(c_uint64)
_EXIT = CFUNCTYPE(None, RawSlice)

_NO_ALLOC_TRACKER = ("seems like this module doesn't have a registered global alloc tracker")


_MAIN = relib_spec("main")
_BEFORE_UNLOAD = relib_spec("before_unload")
#: ``init``'s prototype, by whether the generation passes the alloc-tracker flag
_INIT_PROTOTYPES = {flag: CFUNCTYPE(None, *init_argtypes(flag)) for flag in (False, True)}


def _resolver(module: Any) -> Callable[[str], int | None]:
    """Symbols as the module's own table defines them (no ``dlsym``: relib's
    symbols must be the module's, never a dependency's)."""
    many = getattr(module, "own_resolver", None)
    if many is not None:
        return many()  # type: ignore[no-any-return]
    own = getattr(module, "own_address", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    from relib_pure.runtime import dl

    handle = module.handle

    def resolve(name: str) -> int | None:
        return dl.dlsym(handle, name)
    return resolve


class RelibDriver:
    """Speaks relib's host protocol for one module of one generation.

    ``exports``/``imports`` are the declared public functions;
    ``implementations`` maps import names to Python callables. ``invoke``
    runs an export call under the module's rules (the runtime's owner thread);
    it is set by whoever builds the :class:`~relib_pure.relib.RelibModule`.
    """

    extra_dlopen_flags = RTLD_DEEPBIND

    def __init__(self, generation: Generation, compilation_info: CompilationInfo | None, *,
                 exports: tuple[FunctionSpec, ...] = (), imports: tuple[FunctionSpec, ...] = (),
                 implementations: Mapping[str, Callable[..., Any]] | None = None,
                 enable_alloc_tracker: bool = True, path: str | None = None) -> None:
        self.generation = generation
        self.compilation_info = compilation_info
        self.unloading = compilation_info is None or compilation_info.unloading_enabled
        self.name = f"relib-{generation.name}"
        self.path = path
        self.export_specs = exports
        self.import_specs = imports
        self.implementations = dict(implementations or {})
        self.enable_alloc_tracker = enable_alloc_tracker
        self.invoke: Invoker = lambda call: call()
        self.module_id: int | None = None
        self.store: allocs.AllocStore | None = None
        self.exports: dict[str, ExportFunction] = {}
        self.main: ExportFunction | None = None
        self.before_unload: ExportFunction | None = None
        self.import_table: ImportTable | None = None
        self.freed: allocs.PackedAllocations | None = None
        self._internal: dict[str, int] = {}
        self._bound: dict[tuple[str, Any], Any] = {}
        self._resolve: Callable[[str], int | None] | None = None
        self._owner_ident: int | None = None
        self._unload_started = False

    # -- load -----------------------------------------------------------------

    def after_open(self, module: Any) -> None:
        """Resolve, wire and ``init`` the freshly opened module (owner thread)."""
        path = self.path or getattr(module, "path", None)
        self.path = path
        resolve = self._resolve = _resolver(module)
        gen = self.generation
        missing: list[str] = []
        if self.unloading:
            for suffix in gen.internal_exports:
                addr = resolve(internal_export(suffix))
                if addr:
                    self._internal[suffix] = addr
                else:
                    missing.append(internal_export(suffix))
            slots: dict[str, int] = {}
            for suffix in gen.internal_imports:
                addr = resolve(internal_import(suffix))
                if addr:
                    slots[suffix] = addr
                else:
                    missing.append(internal_import(suffix))
        for spec in self.export_specs:
            bound = bind_export(spec, gen, resolve, path=path, invoke=self._invoke)
            if bound is None:
                missing.append(spec.symbol)
            else:
                self.exports[spec.name] = bound
        table: ImportTable | None = None
        writes: dict[int, Any] = {}
        try:
            table, writes = build_imports(self.import_specs, self.implementations, gen, resolve,
                                          path=path)
        except SymbolMissing as e:
            missing.extend(e.symbols)
        if missing:
            raise SymbolMissing(f"relib {gen.name} module lacks required symbols: "
                                f"{', '.join(missing)}", path=path, symbols=tuple(missing))
        self.import_table = table
        self.main = bind_export(_MAIN, gen, resolve, path=path, invoke=self._invoke)
        self.before_unload = bind_export(_BEFORE_UNLOAD, gen, resolve, path=path,
                                         invoke=self._invoke)
        if self.unloading:
            self._init(slots)
        # upstream writes public import slots after init (init never calls them)
        write_slots(writes)
        # a library that is never closed keeps its callbacks for good: the runtime's
        # Host holds its Module (live, or leaked once given up), the Module this driver,
        # this driver its import table; there is no second registry for them

    def _init(self, slots: dict[str, int]) -> None:
        """Point the internal import ``slots`` (by suffix, resolved by
        :meth:`after_open`) at the host's callbacks, then call ``init``."""
        gen = self.generation
        write = ctypes.c_void_p.from_address
        for suffix, address in callbacks_for(gen).addresses:
            slot = slots.get(suffix)
            assert slot, suffix  # checked in after_open
            write(slot).value = address
        self.module_id = allocs.new_module_id()
        # before init: init already reports the cache's own buffers through on_alloc
        self.store = allocs.register(self.module_id)
        # relib compares pthread_self() of later calls with this value; on Linux
        # threading.get_ident() is pthread_self()
        self._owner_ident = threading.get_ident()
        init = _INIT_PROTOTYPES[gen.init_has_alloc_tracker_flag](self._internal["init"])
        if gen.init_has_alloc_tracker_flag:
            init(self._owner_ident, self.module_id, self.enable_alloc_tracker)
        else:
            init(self._owner_ident, self.module_id)
        log.debug("%s: relib %s module id %d initialised (%d init allocations)", self.path,
                  gen.name, self.module_id, len(self.store))

    def _invoke(self, call: Callable[[], Any]) -> Any:
        return self.invoke(call)

    # -- unload ---------------------------------------------------------------

    def _call_internal(self, suffix: str, proto: Any = _VOID, *args: Any) -> Any:
        # one function object per export and prototype for the module's lifetime
        key = (suffix, proto)
        fn = self._bound.get(key)
        if fn is None:
            fn = self._bound[key] = proto(self._internal[suffix])
        return fn(*args)

    def spawned_threads_count(self) -> int:
        """Threads the module started that have not returned yet."""
        return int(self._call_internal("spawned_threads_count", _COUNT))

    def before_close(self, module: Any) -> None:
        """relib's unload sequence up to ``exit`` (owner thread)."""
        if not self.unloading:
            raise UnloadError("the module was built without relib unloading; it stays loaded",
                              path=self.path, code="unload.not-supported")
        if self.before_unload is not None:
            ok, _ = self.before_unload.call_raw()
            if not ok:
                raise BeforeUnloadPanicked("before_unload panicked; the module stays loaded",
                                           path=self.path)
        running = self.spawned_threads_count()
        if running > 0:
            raise ThreadsStillRunning(f"{running} thread(s) spawned by the module are still "
                                      "running; the module stays loaded", path=self.path)
        self._unload_started = True
        self._call_internal("lock_module_allocator")
        # on the owner thread: the module queued its TLS destructors privately
        self._call_internal("run_thread_local_dtors")
        if self.generation.cleanup_export:
            self._call_internal(self.generation.cleanup_export)
        if self.store is not None:
            self.store.fold_on_read = True  # pack() below folds what the flush reports
        self._call_internal("take_cached_allocs_before_exit")
        assert self.module_id is not None
        store = allocs.remove(self.module_id)
        packed = store.pack() if store is not None else allocs.PackedAllocations(bytearray(), 0, 0)
        warn = (self.generation.name != "0.1.8"
                and (not self.generation.init_has_alloc_tracker_flag or self.enable_alloc_tracker))
        if warn and packed.count == 0:
            log.warning("%s: %s", self.path, _NO_ALLOC_TRACKER)
        self._exit(packed)
        # keep the figures only: the list and the store's tables are host memory made
        # during the module's lifetime, which the verified unload would report as
        # mappings the module left behind (and they describe freed memory now)
        self.freed = allocs.PackedAllocations(bytearray(), packed.count, packed.total_bytes)
        if store is not None:
            store.clear()

    def _exit(self, packed: allocs.PackedAllocations) -> None:
        if packed.count:
            array = (c_char * len(packed.buffer)).from_buffer(packed.buffer)
            # the module only reads the list during the call; `array` outlives it
            arg = RawSlice(ctypes.addressof(array), packed.count)
        else:
            arg = RawSlice(8, 0)  # an empty slice carries a dangling, aligned pointer
        _EXIT(self._internal["exit"])(arg)

    def after_close(self, module: Any, unloaded: bool) -> None:
        """Nothing to keep by hand: a library left mapped is a leaked Module of the
        runtime's Host, which keeps this driver and its callbacks alive for good."""

    def module_still_usable(self) -> bool:
        """True until the unload sequence went past the thread check."""
        return not self._unload_started

    def report_extra(self, module: Any) -> dict[str, Any]:
        """relib facts for the unload report."""
        extra: dict[str, Any] = {
            "relib_generation": self.generation.name,
            "module_id": self.module_id,
        }
        if self.freed is not None:
            extra["freed_allocations"] = self.freed.count
            extra["freed_bytes"] = self.freed.total_bytes
        if self.import_table is not None:
            extra["import_calls"] = self.import_table.calls
            extra["pending_import_boxes"] = self.import_table.pending_boxes()
        return extra

