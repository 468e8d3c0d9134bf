"""The host's internal import callbacks (§1.4), one set per protocol generation.

The callbacks are process-wide: every callback receives the module id (or, for
``unrecoverable`` before 0.7, needs none), so one set per generation serves
every module. They are created once and referenced from this module forever,
which keeps every ``CFUNCTYPE`` alive for as long as any library may stay
mapped, leaked ones included.

Rules, because these run inside ctypes callbacks on arbitrary threads while the
module holds its own allocator mutex: never raise (ctypes would print the error
and return garbage), never call module code, never wait for something module
code might hold. A callback that cannot do its job aborts the process, as the
Rust host does, because the module's state would otherwise be corrupt.
"""

from __future__ import annotations

import ctypes
import os
import threading
import traceback
from typing import Any, NoReturn

from relib_pure.abi import Generation
from relib_pure.relib import allocs
from relib_pure.relib.layouts import (EPRINTLN, IS_PTR_ALLOCATED, ON_ALLOC, ON_CACHED_ALLOCS,
                                      UNRECOVERABLE, UNRECOVERABLE_WITH_ID, RawSlice,
                                      StableLayout, Str)
from relib_pure.runtime.hostcode import note_callback

__all__ = ["InternalCallbacks", "callbacks_for", "write_stderr", "fatal"]


def write_stderr(text: str) -> None:
    """Write ``text`` straight to file descriptor 2.

    Why not ``sys.stderr``: the process may abort right after, and module code
    prints to fd 2 directly, so buffering would reorder or lose the text.
    """
    data = text.encode("utf-8", "replace")
    while data:
        try:
            written = os.write(2, data)
        except InterruptedError:
            continue
        except OSError:
            return
        data = data[written:]


def fatal(message: str, *, module_id: int | None = None, backtrace: bool = False) -> NoReturn:
    """Print relib's "something unrecoverable happened" text and abort the process."""
    try:
        prefix = "[module]" if module_id is None else f"[module id: {module_id}]"
        write_stderr(f"{prefix} something unrecoverable happened: {message}\n")
        if backtrace:
            write_stderr("host backtrace (Python):\n" + "".join(traceback.format_stack()))
        write_stderr("aborting\n")
    finally:
        os.abort()


def _on_alloc(module_id: int, ptr: int | None, layout: StableLayout) -> None:
    try:
        store = allocs.lookup(module_id)
        if store is None:
            fatal(f"on_alloc for unknown module id {module_id}", module_id=module_id)
        store.on_alloc(ptr or 0, layout.size, layout.align)
    except BaseException as exc:  # why: a lost allocation would corrupt unload
        fatal(f"host failed to record an allocation: {exc!r}", module_id=module_id)


def _on_cached_allocs(module_id: int, ops: RawSlice) -> None:
    try:
        store = allocs.lookup(module_id)
        if store is None:
            fatal(f"on_cached_allocs for unknown module id {module_id}", module_id=module_id)
        store.on_cached_allocs(ops.ptr, ops.len)
    except BaseException as exc:
        fatal(f"host failed to record allocations: {exc!r}", module_id=module_id)


def _is_ptr_allocated(module_id: int, ptr: int | None) -> bool:
    try:
        store = allocs.lookup(module_id)
        if store is None:
            fatal(f"is_ptr_allocated for unknown module id {module_id}", module_id=module_id)
        return store.is_ptr_allocated(ptr or 0)
    except BaseException as exc:
        fatal(f"host failed to answer is_ptr_allocated: {exc!r}", module_id=module_id)


def _unrecoverable(message: Str) -> None:
    text = "<unreadable message>"
    try:
        text = message.to_str()
    finally:
        fatal(text)


def _unrecoverable_with_id(module_id: int, message: Str) -> None:
    text = "<unreadable message>"
    try:
        text = message.to_str()
    finally:
        fatal(text, module_id=module_id, backtrace=True)


def _eprintln(message: Str) -> None:
    try:
        write_stderr(message.to_str() + "\n")
    except BaseException:  # why: printing is best effort, never fatal
        pass


class InternalCallbacks:
    """The callback objects of one generation, by internal import suffix."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        funcs: dict[str, Any] = {
            "on_alloc": ON_ALLOC(_on_alloc),
            "on_cached_allocs": ON_CACHED_ALLOCS(_on_cached_allocs),
        }
        if generation.unrecoverable_has_module_id:
            funcs["unrecoverable"] = UNRECOVERABLE_WITH_ID(_unrecoverable_with_id)
        else:
            funcs["unrecoverable"] = UNRECOVERABLE(_unrecoverable)
        if generation.has_eprintln:
            funcs["eprintln"] = EPRINTLN(_eprintln)
        if generation.has_is_ptr_allocated:
            funcs["is_ptr_allocated"] = IS_PTR_ALLOCATED(_is_ptr_allocated)
        missing = set(generation.internal_imports) - set(funcs)
        assert not missing, f"no callback for {missing}"
        for callback in funcs.values():
            note_callback(callback)
        self.funcs = funcs
        #: ``(suffix, code address)`` of each callback: what an import slot receives
        self.addresses: tuple[tuple[str, int], ...] = tuple(
            (suffix, ctypes.cast(func, ctypes.c_void_p).value or 0)
            for suffix, func in funcs.items())


# Never cleared: the libraries that use these may stay mapped until exit.
_by_generation: dict[str, InternalCallbacks] = {}
_lock = threading.Lock()


def callbacks_for(generation: Generation) -> InternalCallbacks:
    """The (shared, immortal) callback set of ``generation``."""
    with _lock:
        cbs = _by_generation.get(generation.name)
        if cbs is None:
            cbs = _by_generation[generation.name] = InternalCallbacks(generation)
        return cbs

