"""Wiring Python callables into a module's public import slots (§1.6).

Per generation the slot expects:

- ``plain`` (0.1.8-0.2.2): ``R f(args...)``. There is no way to report
  failure, so an exception prints its traceback and aborts the process (the
  Rust host would panic inside ``extern "C"`` and abort too). Structure returns
  are impossible from a ctypes callback and are refused at load.
- ``A`` (0.2.3): ``bool f(R* ret, args...)``; the value is written through
  ``ret``.
- ``B`` (0.3+): ``R' f(bool* success, args...)``; when the module has a
  ``__post`` slot for the import, R' is a pointer to a host-owned box that must
  stay alive until the module calls the post slot with it.

In A and B the wrapper always writes the success flag (the module passes it
uninitialised); an exception prints its traceback and reports failure, and the
module then aborts with relib's "host panicked" message, as upstream does.
"""

from __future__ import annotations

import ctypes
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from ctypes import CFUNCTYPE, POINTER, c_bool, c_void_p
from typing import Any

from relib_pure.abi import Generation, post_symbol
from relib_pure.errors import LoadError, SymbolMissing
from relib_pure.relib.callbacks import write_stderr
from relib_pure.runtime.hostcode import note_callback
from relib_pure.relib.layouts import POST_CALLBACK, RString, RVecU8
from relib_pure.relib.signatures import FunctionSpec
from relib_pure.relib.values import is_struct, to_ctype

__all__ = ["ImportTable", "build_imports", "write_slots"]


def _report_exception(spec: FunctionSpec) -> None:
    write_stderr(f"[relib_pure] host import {spec.name!r} ({spec.symbol}) raised:\n"
                 + traceback.format_exc())


def _checked_return(restype: Any, result: Any) -> Any:
    """``result`` as the plain value ctypes returns for ``restype``; raises if it has none.

    A callback's return value is converted by ctypes only after the Python
    function returned, where a failure cannot be reported: ctypes prints it as
    unraisable and the module receives an undefined value (relib-abi.md §7).
    """
    if restype is None:
        return None
    if isinstance(result, restype):
        return result.value
    return restype(result).value


class ImportTable:
    """The callbacks of one module's public imports and the boxes it still holds.

    Must stay referenced as long as the library is mapped (the runtime keeps
    it in the module; a leaked module keeps it forever).
    """

    def __init__(self, generation: Generation, path: str | None) -> None:
        self.generation = generation
        self.path = path
        #: symbol -> CFUNCTYPE object written into that slot
        self.callbacks: dict[str, Any] = {}
        #: address -> host value, for boxes the module has not released yet
        self.boxes: dict[int, Any] = {}
        #: values convention A wrote out (views whose buffers the module may keep)
        self.written: list[Any] = []
        self._lock = threading.Lock()
        self.calls = 0

    def _count_call(self) -> None:
        # module threads call imports concurrently: a bare += would lose counts
        with self._lock:
            self.calls += 1

    def pending_boxes(self) -> int:
        """Boxes returned to the module and not yet released through post."""
        return len(self.boxes)

    # -- wrappers --------------------------------------------------------------

    def _plain(self, spec: FunctionSpec, func: Callable[..., Any]) -> Any:
        if is_struct(spec.restype):
            raise LoadError(
                f"import {spec.name!r} returns a structure, which relib "
                f"{self.generation.name} passes by value and a ctypes callback cannot "
                "return; use relib 0.2.3+ or a primitive return", path=self.path,
                code="load.init-failed")

        def wrapper(*args: Any) -> Any:
            self._count_call()
            try:
                # converted here, inside the guard: ctypes would convert a bad value
                # after the wrapper returned, print it as unraisable and hand the
                # module a garbage value
                return _checked_return(spec.restype, func(*args))
            except BaseException:
                try:
                    _report_exception(spec)
                    write_stderr(f"[relib_pure] relib {self.generation.name} imports cannot "
                                 "report failure, aborting\n")
                finally:
                    os.abort()
        return note_callback(CFUNCTYPE(spec.restype, *spec.argtypes)(wrapper))

    def _convention_a(self, spec: FunctionSpec, func: Callable[..., Any]) -> Any:
        if spec.restype in (RString, RVecU8):
            # the module takes the written value as its own and drops it through the
            # vtable, which a host-built abi_stable value does not have
            raise LoadError(
                f"import {spec.name!r} returns an owning {spec.restype.__name__}, which relib "
                f"{self.generation.name} takes over and frees with abi_stable's vtable; a "
                "host cannot hand it one (relib 0.3+ copies such returns, which works)",
                path=self.path, code="load.init-failed")
        def wrapper(ret: int | None, *args: Any) -> bool:
            self._count_call()
            try:
                result = func(*args)
                if spec.restype is not None and ret:
                    value = to_ctype(spec.restype, result)
                    ctypes.memmove(ret, ctypes.addressof(value), ctypes.sizeof(value))
                    if getattr(value, "_keep", None) is not None:
                        with self._lock:
                            self.written.append(value)
                return True
            except BaseException:
                _report_exception(spec)
                return False
        return note_callback(CFUNCTYPE(c_bool, c_void_p, *spec.argtypes)(wrapper))

    def _convention_b(self, spec: FunctionSpec, func: Callable[..., Any], boxed: bool) -> Any:
        if not boxed and is_struct(spec.restype):
            raise LoadError(
                f"import {spec.name!r} returns a structure but the module has no "
                f"{post_symbol(spec.symbol)} slot, so relib {self.generation.name} expects it "
                "by value, which a ctypes callback cannot return", path=self.path,
                code="load.init-failed")
        restype = c_void_p if boxed else spec.restype
        # what a failed call returns: a plain value (a ctypes instance is not one)
        zero = None if restype is None else restype().value

        def wrapper(success: Any, *args: Any) -> Any:
            self._count_call()
            try:
                result = func(*args)
                if boxed:
                    box = to_ctype(spec.restype, result)
                    address = ctypes.addressof(box)
                    with self._lock:
                        self.boxes[address] = box
                    out: Any = address
                else:
                    out = _checked_return(spec.restype, result)
                success[0] = True
                return out
            except BaseException:
                _report_exception(spec)
                try:
                    success[0] = False
                except BaseException:
                    pass
                return zero
        return note_callback(CFUNCTYPE(restype, POINTER(c_bool), *spec.argtypes)(wrapper))

    def _post(self) -> Any:
        def release(address: int | None) -> None:
            try:
                with self._lock:
                    self.boxes.pop(address or 0, None)
            except BaseException:
                pass
        return note_callback(POST_CALLBACK(release))


def build_imports(specs: tuple[FunctionSpec, ...], implementations: Mapping[str, Callable[..., Any]],
                  generation: Generation, resolve: Callable[[str], int | None],
                  *, path: str | None = None) -> tuple[ImportTable, dict[int, Any]]:
    """Check the import slots and build their callbacks.

    Returns the table and ``{slot address: callback}`` to write once the
    library is ready. Every declared import needs an implementation and a slot
    in the library; all missing ones are reported together.
    """
    table = ImportTable(generation, path)
    writes: dict[int, Any] = {}
    if not specs and not implementations:
        return table, writes  # a module loaded without imports: nothing to check
    missing_symbols = []
    missing_impls = [s.name for s in specs if s.name not in implementations]
    if missing_impls:
        raise LoadError(f"no implementation given for imports {missing_impls}", path=path,
                        code="load.init-failed")
    unknown = sorted(set(implementations) - {s.name for s in specs})
    if unknown:
        raise LoadError(f"implementations given for undeclared imports {unknown}", path=path,
                        code="load.init-failed")
    for spec in specs:
        slot = resolve(spec.symbol)
        if not slot:
            missing_symbols.append(spec.symbol)
            continue
        func = implementations[spec.name]
        post_slot = None
        if generation.import_convention == "plain":
            cb = table._plain(spec, func)
        elif generation.import_convention == "A":
            cb = table._convention_a(spec, func)
        else:
            post_slot = resolve(post_symbol(spec.symbol))
            cb = table._convention_b(spec, func, boxed=bool(post_slot))
        table.callbacks[spec.symbol] = cb
        writes[slot] = cb
        if post_slot:
            post_cb = table._post()
            table.callbacks[post_symbol(spec.symbol)] = post_cb
            writes[post_slot] = post_cb
    if missing_symbols:
        raise SymbolMissing(f"import slots missing: {', '.join(missing_symbols)}", path=path,
                            symbols=tuple(missing_symbols))
    return table, writes


def write_slots(writes: Mapping[int, Any]) -> None:
    """Write each callback's address into its 8-byte slot."""
    for slot, cb in writes.items():
        c_void_p.from_address(slot).value = ctypes.cast(cb, c_void_p).value
