"""Calling a relib module's public exports (§1.5), in conventions A and B.

Convention A (0.1.8-0.2.x): ``bool f(R* ret, args...)``; the value is written
whole, never boxed. Convention B (0.3+): ``R' f(bool* success, args...)``; R' is
``R*`` (a Box) exactly when the module exports a ``__post`` companion, which
must be called once the value has been copied out. A failed call (the module
caught a panic and already printed it) becomes :class:`ExportPanicked`.

Function pointers are built from symbol addresses with ``CFUNCTYPE`` so that
every call releases the GIL (module threads may need it to report allocations).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from ctypes import CFUNCTYPE, POINTER, c_bool, c_uint8, c_void_p
from typing import Any

from relib_pure.abi import Generation, post_symbol, type_needs_box
from relib_pure.errors import ExportPanicked
from relib_pure.relib.signatures import FunctionSpec
from relib_pure.relib.values import copy_from_address, copy_out, is_struct, to_ctype

__all__ = ["ExportFunction", "Invoker", "bind_export"]

log = logging.getLogger(__name__)

#: runs a zero-argument call under the module's rules (alive, right thread)
Invoker = Callable[[Callable[[], Any]], Any]


def _direct(call: Callable[[], Any]) -> Any:
    return call()


class ExportFunction:
    """A callable bound to one public export of a loaded module.

    Calling it converts the arguments (``bytes``/``str`` for ``RStr``
    parameters), calls the module, raises :class:`ExportPanicked` when the
    module reports a panic, and returns a copy of the value that outlives the
    module's memory (see :mod:`relib_pure.relib.values`).
    """

    def __init__(self, spec: FunctionSpec, generation: Generation, address: int,
                 post_address: int | None, *, path: str | None = None,
                 invoke: Invoker = _direct) -> None:
        self.spec = spec
        self.name = spec.name
        self.symbol = spec.symbol
        self.generation = generation
        self.boxed = generation.export_convention == "B" and post_address is not None
        self._path = path
        self._invoke = invoke
        argtypes = list(spec.argtypes)
        if generation.export_convention == "A":
            self._func = CFUNCTYPE(c_bool, c_void_p, *argtypes)(address)
            self._post = None
        else:
            restype = c_void_p if self.boxed else spec.restype
            self._func = CFUNCTYPE(restype, POINTER(c_bool), *argtypes)(address)
            self._post = (CFUNCTYPE(None, c_void_p)(post_address)
                          if self.boxed and post_address is not None else None)
        if spec.rust_return is not None and generation.export_convention == "B":
            expected = type_needs_box(spec.rust_return, generation)
            if expected != self.boxed:
                log.warning("%s: %s returns %r, which relib %s boxes=%s, but the module %s a "
                            "__post symbol; following the module", path, self.symbol,
                            spec.rust_return, generation.name, expected,
                            "has" if self.boxed else "has no")

    def __repr__(self) -> str:
        return f"<relib export {self.symbol} ({self.generation.name}{', boxed' if self.boxed else ''})>"

    def _convert_args(self, args: tuple[Any, ...]) -> list[Any]:
        if len(args) != len(self.spec.argtypes):
            raise TypeError(f"{self.name}() takes {len(self.spec.argtypes)} arguments, "
                            f"got {len(args)}")
        return [to_ctype(t, a) if is_struct(t) else a for t, a in zip(self.spec.argtypes, args)]

    def __call__(self, *args: Any) -> Any:
        cargs = self._convert_args(args)
        return self._invoke(lambda: self._call_now(cargs))

    def call_raw(self, *args: Any) -> tuple[bool, Any]:
        """``(succeeded, value)`` without raising on a panic (``before_unload`` uses it)."""
        cargs = self._convert_args(args)

        def run() -> tuple[bool, Any]:
            try:
                return True, self._call_now(cargs)
            except ExportPanicked:
                return False, None
        return self._invoke(run)  # type: ignore[no-any-return]

    def _panicked(self) -> ExportPanicked:
        return ExportPanicked(f"export {self.name!r} ({self.symbol}) panicked", path=self._path)

    def _call_now(self, cargs: list[Any]) -> Any:
        restype = self.spec.restype
        if self.generation.export_convention == "A":
            # the out-pointer must be valid even for (): a 1-byte dummy is enough
            out = restype() if restype is not None else c_uint8()
            if not self._func(ctypes.addressof(out), *cargs):
                raise self._panicked()
            if restype is None:
                return None
            return copy_out(restype, out if is_struct(restype) else out.value)
        success = c_bool(False)
        result = self._func(ctypes.byref(success), *cargs)
        if not success.value:
            # the return register holds garbage: read nothing, post nothing
            raise self._panicked()
        if not self.boxed:
            return copy_out(restype, result)
        assert self._post is not None
        if not result:
            # Box::into_raw never gives NULL; post(NULL) would drop a box that is not there
            log.warning("%s: %s reported success but returned a NULL box", self._path,
                        self.symbol)
            return None
        try:
            return copy_from_address(restype, result)
        finally:
            self._post(result)


def bind_export(spec: FunctionSpec, generation: Generation,
                resolve: Callable[[str], int | None], *, path: str | None = None,
                invoke: Invoker = _direct) -> ExportFunction | None:
    """Bind ``spec`` using ``resolve(symbol) -> address``; ``None`` if the symbol is absent."""
    address = resolve(spec.symbol)
    if not address:
        return None
    post = resolve(post_symbol(spec.symbol)) if generation.export_convention == "B" else None
    return ExportFunction(spec, generation, address, post or None, path=path, invoke=invoke)
