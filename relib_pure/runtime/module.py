"""``Module``: one loaded library, its owner thread, its checked functions, its unload.

Load order (see :mod:`relib_pure.runtime.driver`): static validation ->
process-wide load lock -> already-loaded check -> snapshot -> ``dlopen`` ->
identity check (the inode mapped is the inode validated) ->
``driver.after_open``. Unload order: ``driver.before_close`` -> native-thread
check -> owner thread exits (and is gone from ``/proc/self/task``) ->
``dlclose`` -> verification -> ``driver.after_close``/``report_extra``.

Cost of a cycle (``tools/bench_cycle.py`` prints it next to a C loop doing
the bare ``dlopen``/``dlclose``): every guarantee above is kept, and what
remains is mostly two full reads of ``/proc/self/maps`` (the "before" snapshot
and the verification; the kernel formats every line, about half a microsecond
each). The rest was made small:

- validation is cached by file identity and policy (:mod:`.validate`);
- the snapshot is taken on the calling thread before the owner thread
  starts, so in a reload loop the text after unload equals the snapshot
  byte for byte: one comparison replaces the leak diff, and the next load's
  already-mapped search is a comparison too (``Host.last_clean``);
- the identity check asks the kernel for the one mapping at the library's
  ``.dynamic`` (``PROCMAP_QUERY``) instead of reading maps text;
- the owner thread starts without a handshake, runs the close steps as its
  last job and exits by itself; its exit is awaited on a thread pidfd, not by
  sleeping (:mod:`.owner`, :func:`.procfs.wait_task_gone`);
- descriptors are compared by ``fstat`` identity, ``readlink`` only for the
  ones reported.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from relib_pure import _hostfds
from relib_pure.errors import (AlreadyLoaded, CallError, LoadError, ModuleUnloaded, RelibError,
                               StillMapped, SymbolMissing, ThreadsStillRunning, UnloadError)
from relib_pure.runtime import dl, procfs, resident, verify
from relib_pure.runtime.driver import Driver, PlainDriver
from relib_pure.runtime.host import Host, default_host
from relib_pure.runtime.owner import OwnerThread
from relib_pure.runtime.report import Cause, LeakedThread, UnloadReport
from relib_pure.runtime.validate import Validated, validate

if TYPE_CHECKING:
    from relib_pure.interface import Interface

logger = logging.getLogger(__name__)

__all__ = ["Module", "BoundFunction", "load", "load_validated", "live_modules",
           "protocol_driver", "clear_caches"]

T = TypeVar("T")
OwnerMode = Literal["thread", "caller"]

#: how long unload waits for the owner thread to leave the kernel's task list
OWNER_EXIT_TIMEOUT = 5.0
#: how long a thread that is just exiting (joined, or a Python thread whose
#: ``join`` already returned) may take to leave the task list before it counts
THREAD_SETTLE = 0.2

# CPython maps executable pages for ctypes callbacks on first use and never
# unmaps them; one callback made now keeps the first page out of every
# module's "left behind" report (drivers create callbacks during a lifetime).
_CALLBACK_PAGE = ctypes.CFUNCTYPE(None)(lambda: None)


def clear_caches() -> None:
    """Forget what speeds up reloading an unchanged file (the default host's caches:
    inspection, check report, DWARF, the last clean maps text); for benchmarks of a
    first load."""
    default_host().clear_caches()


def live_modules() -> tuple[Module, ...]:
    """Modules loaded through the default host and not unloaded yet."""
    return default_host().live_modules()


class BoundFunction:
    """A native function of a :class:`Module`, callable from any Python thread.

    With ``owner="thread"`` the call runs on the module's owner thread (the
    caller waits); with ``owner="caller"`` it runs directly and only on the
    thread that loaded the module. After unload it raises
    :class:`~relib_pure.errors.ModuleUnloaded` instead of jumping into
    unmapped memory.
    """

    __slots__ = ("name", "address", "_module", "_fn")

    def __init__(self, module: Module, name: str, address: int, fn: Any) -> None:
        self.name = name
        self.address = address
        self._module = module
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        m = self._module
        if not m._loaded:
            raise ModuleUnloaded(f"{self.name}() called after unload", path=m.path)
        owner = m._owner
        if owner is None:
            if threading.get_ident() != m._owner_ident:
                raise CallError(f"{self.name}() called from a thread that does not own the "
                                "module (owner='caller')", path=m.path, code="call.wrong-thread")
            return self._fn(*args)
        return owner.submit(m._guarded_call, self.name, self._fn, args)

    def __repr__(self) -> str:
        return f"<BoundFunction {self.name} of {self._module.path}>"


class Module:
    """A library mapped into this process by :func:`load`.

    Attributes: ``path`` (absolute, as given), ``info`` (the validated
    :class:`~relib_pure.model.LibraryInfo`), ``driver``, ``owner`` (``"thread"``
    or ``"caller"``), ``validated``. ``loaded`` is true until :meth:`unload`
    succeeded (or the module was given up as leaked). A context manager:
    leaving the ``with`` block unloads it.
    """

    def __init__(self, validated: Validated, driver: Driver, owner: OwnerMode, flags: int,
                 host: Host | None = None) -> None:
        #: the process-wide state this module is registered with
        self.host = host if host is not None else default_host()
        self.validated = validated
        self.path = validated.path
        self.info = validated.info
        self.driver = driver
        self.owner: OwnerMode = owner
        self.flags = flags
        self.report: UnloadReport | None = None
        self._handle: int | None = None
        self._link_map: int | None = None
        self._loaded = False
        self._owner: OwnerThread | None = None
        self._owner_ident = threading.get_ident()
        self._before: verify.Snapshot | None = None
        self._before_pages: int | None = None  # VmSize (pages) of the before state
        self._dyn_address = 0  # the mapped .dynamic: asked again after dlclose
        self._base: int | None = None  # load bias, for own_address
        self._unload_lock = threading.Lock()
        self._timings: dict[str, float] = {}

    # -- state ----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def handle(self) -> int:
        """The ``dlopen`` handle; :class:`~relib_pure.errors.ModuleUnloaded` once closed."""
        if self._handle is None:
            raise ModuleUnloaded("the module is not loaded", path=self.path)
        return self._handle

    @property
    def owner_ident(self) -> int:
        """``threading.get_ident()`` (= ``pthread_self()``) of the owner thread."""
        return self._owner.ident if self._owner is not None else self._owner_ident

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "closed"
        return f"<Module {self.path} {state} driver={self.driver.name} owner={self.owner}>"

    def __enter__(self) -> Module:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._loaded:
            return
        if exc is None:
            self.unload()
            return
        try:
            self.unload()
        except RelibError as e:  # the body's exception is the one to see
            logger.warning("%s: unload after an error failed: %s", self.path, e)

    # -- symbols and calls ------------------------------------------------------

    def symbol(self, name: str) -> int:
        """Address of the symbol ``name`` that this library itself exports.

        A name only its dependencies define (``getpid`` of libc, say) is
        :class:`~relib_pure.errors.SymbolMissing` too: ``dlsym`` on the handle
        would find it, but a module's functions are its own exports.
        """
        addr = self._own_symbol(name)
        if addr is None:
            raise SymbolMissing(f"symbol {name!r} is not defined", path=self.path,
                                symbols=(name,))
        if isinstance(addr, str):
            raise SymbolMissing(f"symbol {name!r} is not defined by this library (it "
                                f"resolves to {addr or 'another object'})", path=self.path,
                                symbols=(name,))
        return addr

    def own_address(self, name: str) -> int | None:
        """Address of ``name`` as this library's own dynamic symbol table defines it.

        Read from the inspection (base + ``st_value``), so no ``dlsym`` runs and
        a symbol some dependency defines instead is never taken for the
        library's: ``None`` when the library does not define it (or defines it
        as something only ``dlsym`` can place: a thread-local or an IFUNC,
        which fall back to :meth:`symbol`'s check).
        """
        if not self._loaded:
            raise ModuleUnloaded(f"cannot resolve {name}: the module is not loaded", path=self.path)
        return self.own_resolver()(name)

    def own_resolver(self) -> Callable[[str], int | None]:
        """:meth:`own_address` for many names (a protocol driver wiring the module):
        the load bias and the symbol table are looked up once."""
        if not self._loaded:
            raise ModuleUnloaded("cannot resolve symbols: the module is not loaded",
                                 path=self.path)
        index, placed = _export_index(self.info)
        if self._base is None:
            self._base = dl.load_base(self.handle)
        base = self._base

        def resolve(name: str) -> int | None:
            if not self._loaded:
                raise ModuleUnloaded(f"cannot resolve {name}: the module is not loaded",
                                     path=self.path)
            value = placed.get(name)
            if value is not None:
                return base + value
            if name not in index:
                return None
            found = self._own_symbol(name)
            return found if isinstance(found, int) else None
        return resolve

    def _own_symbol(self, name: str) -> int | str | None:
        """``dlsym`` restricted to this object: the address, the file name of the
        dependency that defines it instead, or ``None`` when nothing does."""
        handle = self.handle
        addr = dl.dlsym(handle, name)
        if addr is None:
            return None
        found = dl.defining_object(addr)
        if self._link_map is None:
            self._link_map = dl.link_map(handle)
        if found is not None and found[0] == self._link_map:
            return addr
        return found[1] if found is not None else ""

    def function(self, name: str, restype: Any = ctypes.c_int,
                 argtypes: Sequence[Any] = ()) -> BoundFunction:
        """A checked callable for the C function ``name`` that this library exports
        (``restype=None`` for void); :class:`~relib_pure.errors.SymbolMissing` otherwise."""
        if not self._loaded:
            raise ModuleUnloaded(f"cannot bind {name}(): the module is not loaded", path=self.path)
        addr = self.symbol(name)
        proto = ctypes.CFUNCTYPE(restype, *argtypes)(addr)
        return BoundFunction(self, name, addr, proto)

    def bind(self, interface: Interface) -> dict[str, BoundFunction]:
        """Checked callables for every export ``interface`` declares, by name.

        Only plain C functions (``trait=None``): relib trait functions follow
        relib's calling conventions and are bound by :mod:`relib_pure.relib`.
        Every missing symbol is named in one :class:`~relib_pure.errors.SymbolMissing`.
        """
        traits = [f.name for f in interface.exports if f.trait is not None]
        if traits:
            raise CallError(f"relib trait functions ({', '.join(traits)}) need the relib host "
                            "(relib_pure.load_module), not plain binding", path=self.path)
        missing = [f.symbol for f in interface.exports
                   if not isinstance(self._own_symbol(f.symbol), int)]
        if missing:
            raise SymbolMissing(f"declared exports missing: {', '.join(missing)}",
                                path=self.path, symbols=tuple(missing))
        return {f.name: self.function(f.symbol, f.restype, f.argtypes) for f in interface.exports}

    def run_on_owner(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the owner thread (drivers use it for protocol calls)."""
        if self._owner is not None:
            return self._owner.submit(fn, *args)
        self._require_owner_thread("call.wrong-thread")
        return fn(*args)

    def _guarded_call(self, name: str, fn: Any, args: tuple[Any, ...]) -> Any:
        # re-checked on the owner thread: an unload queued ahead of this call wins
        if not self._loaded:
            raise ModuleUnloaded(f"{name}() called after unload", path=self.path)
        return fn(*args)

    def _require_owner_thread(self, code: str) -> None:
        if threading.get_ident() != self._owner_ident:
            cls = UnloadError if code.startswith("unload.") else CallError
            raise cls("not on the thread that loaded the module (owner='caller')",
                      path=self.path, code=code)

    # -- load -------------------------------------------------------------------

    def _snapshot(self) -> None:
        """Calling thread, load lock held: the already-loaded check and the "before" state.

        Taken before the owner thread starts, so a steady reload loop finds the
        maps text after unload byte-for-byte equal to this one (the owner's
        frame stack comes and goes in between) and verification skips the diff.
        In that steady loop the text itself is not even read again: when VmSize
        (one short ``statm`` read) is what it was with the last clean text of
        this very file, the same threads are running, and the loader does not
        know the path, that text is the before state (anything else that mapped
        or unmapped memory changed VmSize, and the full text is read).
        """
        v = self.validated
        key = (v.file.dev, v.file.inode, v.real_path, v.path)
        pages = procfs.vm_pages()
        last = self.host.last_clean
        if last is not None and last[0] == key and last[2] == pages and \
                not dl.is_loaded(v.path):
            snap = verify.take_snapshot(last[1])
            # the same threads too: a thread that came and went may have moved stacks
            if snap.tasks == last[3]:
                self._before = snap
                self._before_pages = pages
                return
        data = procfs.read_maps()
        # a reload loop sees the same text every time: one comparison replaces
        # the searches (both are linear, but memcmp is ten times faster)
        if last is None or (last[0], last[1]) != (key, data):
            if procfs.maps_mention(data, v.file, v.real_path) or \
                    (v.path != v.real_path and procfs.maps_mention(data, None, v.path)):
                raise AlreadyLoaded("the library (path or inode) is already mapped in this "
                                    "process", path=self.path)
        # VmSize read after the text, so a change in between only costs a full read later
        pages = procfs.vm_pages()
        self._before = verify.take_snapshot(data)
        self._before_pages = pages
        self.host.last_clean = (key, data, pages, self._before.tasks)

    def _open(self) -> None:
        """Owner thread (or the calling thread in ``caller`` mode): map and identify."""
        v = self.validated
        t1 = time.perf_counter()
        try:
            handle = dl.dlopen(v.path, self.flags)
        except dl.DlError as e:
            raise LoadError(f"dlopen failed: {e}", path=self.path, code="load.dlopen") from None
        self._handle = handle
        t2 = time.perf_counter()
        self._confirm_identity(handle)
        t3 = time.perf_counter()
        self._loaded = True
        self.driver.after_open(self)
        self._timings.update(opened_at=t1, dlopen=(t2 - t1) * 1e6, identity=(t3 - t2) * 1e6,
                             after_open=(time.perf_counter() - t3) * 1e6)

    def _confirm_identity(self, handle: int) -> None:
        v = self.validated
        try:
            self._base, where, self._link_map = dl.link_info(handle)
        except dl.DlError as e:
            raise LoadError(f"cannot locate the mapped object: {e}", path=self.path,
                            code="load.swapped") from None
        mapping = procfs.query_mapping(where)
        self._dyn_address = where
        if mapping is None or (mapping.dev, mapping.inode) != (v.file.dev, v.file.inode):
            got = f"inode {mapping.inode}" if mapping else "no file"
            raise LoadError(f"the mapped file ({got}) is not the validated one "
                            f"(inode {v.file.inode})", path=self.path, code="load.swapped")
        try:
            st = os.stat(v.real_path)
        except OSError:
            return  # renamed away after dlopen: what is mapped is still what was checked
        if (st.st_dev, st.st_ino) == (v.file.dev, v.file.inode) and \
                procfs.file_id(st) != v.file:
            raise LoadError("the file was modified in place after validation", path=self.path,
                            code="load.swapped")

    def _start(self) -> None:
        """Snapshot, then open the library (on the owner thread in ``thread`` mode).

        Undoes everything on error.
        """
        t0 = time.perf_counter()
        # before the snapshot: the host's own residents are never the module's mappings
        resident.ensure_for(self.info.needed)
        self.host.begin_loading(self)
        self._snapshot()
        t1 = time.perf_counter()
        if self.owner == "thread":
            try:
                self._owner = OwnerThread(self.path)
            except RuntimeError as e:  # "can't start new thread": nothing is mapped yet
                raise LoadError(f"cannot start the module's owner thread: {e}",
                                path=self.path, code="load.init-failed") from None
        try:
            self.run_on_owner(self._open)
        except BaseException:
            self._loaded = False
            self.host.end_loading(self)
            handle, self._handle = self._handle, None
            self._retire_owner()
            if handle is not None:
                try:
                    dl.dlclose(handle)
                except dl.DlError as e:
                    logger.warning("%s: dlclose after a failed load: %s", self.path, e)
            raise
        timings = self._timings
        timings["snapshot"] = (t1 - t0) * 1e6
        # from asking for an owner thread to that thread running the load
        timings["owner_start"] = (timings.pop("opened_at") - t1) * 1e6
        self.host.register(self)

    def _retire_owner(self) -> bool:
        """Stop the owner thread and wait until the OS thread is gone (its TLS destructors ran)."""
        owner = self._owner
        if owner is None:
            return True
        owner.stop()
        return _wait_owner_gone(owner)

    # -- unload -----------------------------------------------------------------

    def unload(self) -> UnloadReport:
        """Close the library and prove it left the process.

        Raises :class:`~relib_pure.errors.ThreadsStillRunning` (the module stays
        loaded and usable) when native threads that appeared during its
        lifetime are alive, :class:`~relib_pure.errors.StillMapped` (with the
        report) when ``dlclose`` left it mapped, and
        :class:`~relib_pure.errors.ModuleUnloaded` when it is not loaded.
        Leaked descriptors, mappings and threads are in the returned report.
        """
        with self._unload_lock:
            if not self._loaded:
                raise ModuleUnloaded("the module is not loaded", path=self.path)
            if self._owner is None:
                self._require_owner_thread("unload.wrong-thread")
            elif threading.get_ident() == self._owner.ident:
                # e.g. from a callback inside a call into the module: the owner
                # could never exit, and dlclose would unmap the caller's frames
                raise UnloadError("unload() cannot run on the module's own owner thread",
                                  path=self.path, code="unload.wrong-thread")
            t0 = time.perf_counter()
            owner = self._owner
            if owner is not None:
                # the thread exits by itself once the close steps succeeded
                owner.submit_last(self._close_protocol)
            else:
                self._close_protocol()
            t1 = time.perf_counter()
            owner_gone = True if owner is None else _wait_owner_gone(owner)
            t2 = time.perf_counter()
            handle, self._handle = self.handle, None
            try:
                dl.dlclose(handle)
            except dl.DlError as e:
                self._give_up()
                raise UnloadError(f"dlclose failed: {e}", path=self.path,
                                  code="unload.dlclose") from None
            t3 = time.perf_counter()
            self._timings.update(before_close=(t1 - t0) * 1e6, owner_exit=(t2 - t1) * 1e6,
                                 dlclose=(t3 - t2) * 1e6)
            report = self._verify(owner_gone)
            self.report = report
            if not report.unloaded:
                self._give_up()
                raise StillMapped("the library is still mapped after dlclose: "
                                  + ", ".join(report.cause_codes), path=self.path, report=report)
            self.host.unregister(self)
            return report

    def retry_unload(self) -> UnloadReport:
        """Finish an unload that raised :class:`~relib_pure.errors.StillMapped`.

        Once whatever pinned the library is gone (typically: threads that
        touched its thread-locals have exited, so glibc's TLS-destructor count
        dropped to zero), one more ``dlopen(RTLD_NOLOAD)`` + ``dlclose`` lets
        glibc unmap it. Returns the new report (``retried`` set) or raises
        ``StillMapped`` again. On a loaded module it is :meth:`unload`. Any
        thread may call it: nothing runs on the owner thread any more.
        """
        with self._unload_lock:
            if self._loaded:
                pass
            elif self.report is None or self.report.unloaded:
                raise ModuleUnloaded("the module is not loaded", path=self.path)
            else:
                report = self._verify(owner_gone=True)
                self.report = report
                if not report.unloaded:
                    raise StillMapped("the library is still mapped: "
                                      + ", ".join(report.cause_codes), path=self.path,
                                      report=report)
                self.host.unregister(self)
                return report
        return self.unload()

    def _close_protocol(self) -> None:
        """Owner thread: the driver's unload steps, then the native-thread check."""
        try:
            self.driver.before_close(self)
        except ThreadsStillRunning as e:
            # a protocol driver counts the threads; name them from the task list
            if e.report is None and self._before is not None:
                threads = verify.new_threads(self._before, settle=THREAD_SETTLE)
                named = ", ".join(f"tid {t.tid} {t.name!r}" for t in threads)
                refusal = ThreadsStillRunning(e.message + (f" ({named})" if named else ""),
                                              path=self.path,
                                              report=self._refusal_report(threads))
                if not self._still_usable():
                    self._give_up()
                raise refusal from None
            if not self._still_usable():
                self._give_up()
            raise
        except BaseException:
            if not self._still_usable():
                self._give_up()
            raise
        assert self._before is not None
        threads = verify.new_threads(self._before, settle=THREAD_SETTLE)
        if threads:
            usable = self._still_usable()
            if not usable:
                self._give_up()
            raise ThreadsStillRunning(
                f"{len(threads)} native thread(s) started during the module's lifetime are "
                f"still running ({', '.join(str(t.tid) for t in threads)}); the module stays "
                + ("loaded" if usable else "mapped (given up)"),
                path=self.path, report=self._refusal_report(threads))
        self._loaded = False

    def _still_usable(self) -> bool:
        check = getattr(self.driver, "module_still_usable", None)
        return True if check is None else bool(check())

    def _refusal_report(self, threads: tuple[LeakedThread, ...]) -> UnloadReport:
        return UnloadReport(self.path, self.driver.name, self.owner, unloaded=False,
                            loader_knows=True, threads=threads)

    def _rebase_after_fork(self) -> None:
        """In a forked child, owner='caller': the forking thread (the only one
        here) has a new thread id, which the module did not start."""
        if self._before is not None:
            self._before = dataclasses.replace(
                self._before, tasks=self._before.tasks | procfs.task_ids())

    def _forget_owner_after_fork(self) -> None:
        """In a forked child: the owner thread did not come along; nothing can run here."""
        self._loaded = False
        self._owner = None
        self._unload_lock = threading.Lock()

    def _give_up(self) -> None:
        """Leave the library mapped for good, keeping everything it may call back into."""
        self._loaded = False
        self.host.give_up(self)
        if self._owner is not None:
            if threading.get_ident() == self._owner.ident:
                self._owner.stop()  # the loop ends after the current job
            else:
                self._retire_owner()

    def _verify(self, owner_gone: bool) -> UnloadReport:
        v = self.validated
        before = self._before
        assert before is not None
        t0 = time.perf_counter()
        # other modules' files, read before and after the maps: one loaded or
        # unloaded meanwhile is in either
        others = self.host.other_files(self)
        hosted: frozenset[tuple[int, int]] = frozenset()
        steady = self._steady_gone()
        if steady:
            # VmSize is back to the before state and the library's own mapping is
            # gone: the text is the before text, which maps neither the file nor
            # anything new (tasks and descriptors are still checked below)
            maps = before.maps
        else:
            maps, hosted = _maps_and_hosted_files()
        # the snapshot names neither the inode nor the path (or the load was
        # refused): an unchanged text maps neither
        still = () if maps == before.maps else verify.mappings_of_file(maps, v.file, v.real_path)
        retried = False
        if still:
            if not owner_gone and self._owner is not None:
                procfs.wait_task_gone(self._owner.native_id, OWNER_EXIT_TIMEOUT)
            # dlclose keeps an object whose TLS destructors were pending; once
            # they ran, one more reference and release lets glibc unmap it
            again = dl.reopen_noload(v.path)
            if again is not None:
                try:
                    dl.dlclose(again)
                except dl.DlError as e:
                    logger.warning("%s: retry dlclose: %s", self.path, e)
                maps, hosted = _maps_and_hosted_files()
                still = verify.mappings_of_file(maps, v.file, v.real_path)
                retried = not still
        # the steady path asked the loader a moment ago (after dlclose, as here)
        loader_knows = False if steady and not still else dl.is_loaded(v.path)
        unloaded = not still and not loader_knows
        causes = () if unloaded else self._causes(loader_knows, owner_gone)
        extra: dict[str, Any] = {}
        try:
            self.driver.after_close(self, unloaded)
            extra = dict(self.driver.report_extra(self))
        except Exception as e:  # a driver's bookkeeping must not hide the verdict
            logger.warning("%s: driver %s after unload: %s", self.path, self.driver.name, e)
            extra = {"driver_error": str(e)}
        threads = verify.new_threads(before, settle=THREAD_SETTLE)
        others |= self.host.other_files(self) | hosted
        fds = verify.leaked_fds(before, others, lambda: self.host.other_files(self))
        mappings = verify.leaked_mappings(before, maps, v.file, v.real_path, others)
        timings = dict(self._timings)
        timings["verify"] = (time.perf_counter() - t0) * 1e6
        return UnloadReport(
            path=self.path, driver=self.driver.name, owner=self.owner, unloaded=unloaded,
            loader_knows=loader_knows, causes=causes, still_mapped=still, retried=retried,
            threads=threads, fds=fds, mappings=mappings, timings_us=timings, extra=extra)

    def _steady_gone(self) -> bool:
        """The fast verification: no full maps read when nothing at all changed.

        VmSize equal to the before state, the loader no longer knowing the
        path, and no mapping of the file at its ``.dynamic`` address
        (``PROCMAP_QUERY``). Any difference falls back to the full text.
        """
        if not self._dyn_address or self._before_pages is None:
            return False
        if procfs.vm_pages() != self._before_pages:
            return False
        if dl.is_loaded(self.validated.path):
            return False
        m = procfs.query_mapping(self._dyn_address)
        v = self.validated
        return m is None or (m.dev, m.inode) != (v.file.dev, v.file.inode)

    def _causes(self, loader_knows: bool, owner_gone: bool) -> tuple[Cause, ...]:
        hz = self.info.hazards
        causes: list[Cause] = []
        if hz.nodelete:
            causes.append(Cause("nodelete", "DF_1_NODELETE in the dynamic section"))
        if hz.gnu_unique:
            causes.append(Cause("gnu-unique", ", ".join(hz.gnu_unique)))
        # with an owner thread every call ran there, and that thread is gone (its
        # destructors ran) and so are the module's own threads (checked before
        # dlclose): pending destructors cannot be what holds the library
        tls_possible = self._owner is None or not owner_gone
        if loader_knows and hz.thread_atexit and not hz.blocks_unload and tls_possible:
            causes.append(Cause("tls-destructors",
                                "owner='caller': a thread that called it (the loading thread "
                                "or one it started) is alive" if self._owner is None else
                                "the owner thread had not exited before dlclose"))
        if loader_knows and not causes:
            brought = self._dependencies_brought_in()
            if brought:
                causes.append(Cause("dependency-bound", ", ".join(brought)))
        if loader_knows and not causes:
            causes.append(Cause("another-handle"))
        if not loader_knows:
            causes.append(Cause("leftover-mapping"))
        return tuple(causes)


    def _dependencies_brought_in(self) -> tuple[str, ...]:
        """Binding-kind NEEDED libraries first mapped by this module's load and still mapped."""
        before = self._before
        if before is None:
            return ()
        names = [n for n in resident.BINDING_DEPENDENCIES if n in self.info.needed]
        if not names:
            return ()
        now = procfs.read_maps()
        out = []
        for name in names:
            tail = b"/" + os.fsencode(name) + b"\n"
            if tail not in before.maps and tail in now:
                out.append(name)
        return tuple(out)


_export_indexes: dict[int, tuple[Any, dict[str, Any], dict[str, int]]] = {}
_export_indexes_lock = threading.Lock()


def _export_index(info: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """``({name: Symbol}, {name: st_value})`` of an inspection's default-version
    exports, built once per inspection (the validation cache hands the same
    object to every reload). The second holds the ones placed by base +
    ``st_value`` alone (not thread-locals, IFUNCs or undefined values)."""
    key = id(info)
    entry = _export_indexes.get(key)
    if entry is not None and entry[0] is info:
        return entry[1], entry[2]
    index = {s.name: s for s in info.exports if s.default_version}
    placed = {name: int(s.value) for name, s in index.items()
              if s.kind in ("func", "object", "notype") and s.value}
    with _export_indexes_lock:
        if len(_export_indexes) >= 128:
            _export_indexes.clear()
        _export_indexes[key] = (info, index, placed)
    return index, placed


def _maps_and_hosted_files() -> tuple[bytes, frozenset[tuple[int, int]]]:
    """The maps text and, as of the same moment, the files the host itself maps
    (inspection: never a module's leak)."""
    with _hostfds.lock:
        return procfs.read_maps(), frozenset(_hostfds.files)


def _wait_owner_gone(owner: OwnerThread) -> bool:
    """Wait for a stopping owner thread to leave the task list.

    A job queued before the stop may still be running after the timeout: then
    wait for it without limit (``dlclose`` must never unmap code a thread may
    be running) and give the exit one more timeout.
    """
    if procfs.wait_task_gone(owner.native_id, OWNER_EXIT_TIMEOUT):
        return True
    owner.join()
    return procfs.wait_task_gone(owner.native_id, OWNER_EXIT_TIMEOUT)


def load_validated(validated: Validated, *, owner: OwnerMode = "thread", lazy: bool = False,
                   deepbind: bool = False, driver: Driver | None = None,
                   host: Host | None = None) -> Module:
    """Map a library that :func:`~relib_pure.runtime.validate.validate` accepted.

    The mapped object must be the validated file (same device and inode, not
    modified since): otherwise it is closed again and
    :class:`~relib_pure.errors.LoadError` ``load.swapped`` is raised.
    """
    if owner not in ("thread", "caller"):
        raise ValueError(f"owner must be 'thread' or 'caller', not {owner!r}")
    drv: Driver = driver if driver is not None else PlainDriver()
    flags = (dl.RTLD_LOCAL | (dl.RTLD_LAZY if lazy else dl.RTLD_NOW)
             | (dl.RTLD_DEEPBIND if deepbind else 0) | drv.extra_dlopen_flags)
    module = Module(validated, drv, owner, flags, host)
    with module.host.load_lock:
        # the cheap refusal first (no maps read, no owner thread): this is what
        # the losers of a race to load one file hit
        module.host.refuse_if_live(validated)
        module._start()
    logger.debug("%s: loaded (driver %s, owner %s)", module.path, drv.name, owner)
    return module


def load(path: str | os.PathLike[str], *, policy: Any = None, owner: OwnerMode = "thread",
         lazy: bool = False, deepbind: bool = False, driver: Driver | None = None,
         check: bool = True, host: Host | None = None) -> Module:
    """Validate, then map the library at ``path``; returns the loaded :class:`Module`.

    ``policy`` relaxes the static checks (:class:`relib_pure.compat.Policy`;
    ``check=False`` skips them). ``owner="thread"`` (default) gives the module a
    dedicated owner thread that runs load, every call and unload, so calls
    work from any thread and thread-local destructors never pin the library;
    ``owner="caller"`` runs everything on the calling thread (cheapest calls,
    but only that thread may call or unload). ``lazy`` uses ``RTLD_LAZY``
    instead of ``RTLD_NOW``; ``deepbind`` adds ``RTLD_DEEPBIND``; ``driver``
    adds a protocol (:mod:`relib_pure.runtime.driver`; by default the host's
    factory picks relib's for relib modules). ``host`` is the
    :class:`~relib_pure.runtime.host.Host` to register with (default: the
    process's).

    Raises :class:`~relib_pure.errors.InspectionError`,
    :class:`~relib_pure.errors.IncompatibleModuleError`,
    :class:`~relib_pure.errors.AlreadyLoaded` or
    :class:`~relib_pure.errors.LoadError`; nothing is mapped when the static
    checks fail.
    """
    validated = validate(path, policy=policy, check=check)
    h = host if host is not None else default_host()
    if driver is None:
        driver = h.protocol_driver(validated)
    return load_validated(validated, owner=owner, lazy=lazy, deepbind=deepbind, driver=driver,
                          host=h)


def protocol_driver(validated: Validated) -> Driver | None:
    """The default host's protocol driver for ``validated`` (relib's for relib modules
    built with unloading; ``None``, plain, otherwise)."""
    return default_host().protocol_driver(validated)
