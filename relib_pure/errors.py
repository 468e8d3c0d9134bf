"""Exception tree of relib_pure.

Every exception raised on purpose derives from :class:`RelibError` and carries a
stable string ``code`` (part of the public API: tests freeze the set in
``ERROR_CODES``) and, where one is involved, the ``path`` of the library.

Codes are namespaced by layer: ``inspect.*`` (bytes not understood),
``compat.*`` (strict compatibility failures), ``load.*``, ``call.*``,
``unload.*``, ``reload.*``, ``example.*``, ``cycle.*``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "ERROR_CODES",
    "RelibError",
    "InspectionError",
    "IncompatibleModuleError",
    "LoadError",
    "AlreadyLoaded",
    "SymbolMissing",
    "CallError",
    "ModuleUnloaded",
    "ExportPanicked",
    "UnloadError",
    "ThreadsStillRunning",
    "StillMapped",
    "BeforeUnloadPanicked",
    "ReloadError",
    "UnloadNotClean",
]

#: Every error code relib_pure may raise, with a one-line meaning.
ERROR_CODES: dict[str, str] = {
    # inspection: the file or its bytes are not a library we understand
    "inspect.not-found": "the path does not exist",
    "inspect.not-a-file": "the path is a directory or other non-regular file",
    "inspect.permission": "the file cannot be read (permission denied)",
    "inspect.io": "the file could not be read",
    "inspect.empty": "the file is empty",
    "inspect.unknown-format": "not an ELF or PE file (e.g. random bytes, Mach-O)",
    "inspect.truncated": "the file ends before a structure it declares",
    "inspect.malformed": "a header, table or string is corrupt",
    "inspect.not-a-library": "an ELF executable or relocatable object, not a shared library",
    "inspect.unsupported": "a valid file of a kind this version cannot read",
    "inspect.too-large": "a table declares more entries than any real library holds (the bound that keeps time and memory in check)",
    "inspect.no-compilation-info": "the library has no relib compilation info",
    "inspect.bad-dwarf": "the DWARF debug information is corrupt or exceeds a reading bound",
    # compatibility (raised only by strict calls; otherwise reported as findings)
    "compat.failed": "one or more error findings from check()",
    "compat.unsupported-relib": "relib protocol version not supported by this host",
    "compat.compilation-mismatch": "compilation info differs from the expectation",
    "compat.signature-mismatch": "a declared signature disagrees with the library's DWARF debug information",
    "compat.arch": "architecture, bitness or OS does not match this interpreter",
    "compat.expectation": "the expectation could not be established (rustc not runnable, --like file without compilation info)",
    # loading
    "load.dlopen": "dlopen failed (dlerror text attached)",
    "load.already-loaded": "the library (path or inode) is already mapped in this process",
    "load.symbol-missing": "a required symbol is missing",
    "load.path-not-utf8": "the path is not valid UTF-8",
    "load.swapped": "the file mapped is not the file that was validated",
    "load.init-failed": "module initialisation failed",
    # calls
    "call.unloaded": "the module was unloaded; its functions cannot be called",
    "call.panicked": "the export panicked (the module printed the panic)",
    "call.wrong-thread": "the call was made on a thread the module does not allow",
    "call.failed": "the call could not be made",
    # unloading
    "unload.before-unload-panicked": "before_unload panicked",
    "unload.threads-running": "threads started by the module are still running",
    "unload.dlclose": "dlclose failed",
    "unload.still-mapped": "the library is still mapped after dlclose",
    "unload.wrong-thread": "unload was requested from a thread that does not own the module",
    "unload.not-supported": "the relib module was built without unloading; it stays loaded",
    # the example module, built on first use
    "example.no-compiler": "building the example needs rustc or a C compiler, and neither is on PATH",
    "example.no-source": "the example's source is missing from the installed package",
    "example.build-failed": "the compiler failed to build the example (its output attached)",
    # reload loops
    "reload.failed": "a reload cycle failed; the last good module stays loaded",
    "reload.incomplete": "the new library file is incomplete (truncated, or still being written when the wait ran out)",
    "reload.build-failed": "the build command failed or could not be run",
    "reload.invalid": "the reloader's validate callable refused the new version",
    "reload.main-failed": "the new version's init function returned nonzero",
    "reload.trial-failed": "the new version crashed or failed when first run in a trial child process",
    "reload.trial-unsupported": "a declared type cannot be named in the trial child process",
    "reload.callback-failed": "on_unload or on_load raised",
    "reload.not-unloadable": "the relib module was built without unloading, so no version of it can be replaced",
    # repeated load/unload checks (relib_pure.testing, run --cycles)
    "cycle.not-clean": "a load/call/unload cycle did not unload cleanly (report attached)",
    "cycle.growth": "process figures (memory, descriptors, threads, mappings) grew over the cycles",
}


class RelibError(Exception):
    """Base of every error relib_pure raises on purpose.

    ``code`` is one of :data:`ERROR_CODES`; ``path`` names the library concerned
    (or is ``None``); ``message`` is the human text without the path.
    """

    default_code = "inspect.io"

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 code: str | None = None) -> None:
        self.code = code or self.default_code
        if self.code not in ERROR_CODES:
            raise ValueError(f"unknown relib_pure error code {self.code!r}")
        self.path = os.fspath(path) if path is not None else None
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        if self.path is not None:
            return f"{self.path}: {self.message} [{self.code}]"
        return f"{self.message} [{self.code}]"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.path, self.code, self.__dict__))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of this error: ``{"code", "message", "path"}``."""
        return {"code": self.code, "message": self.message, "path": self.path}


def _rebuild(cls: type[RelibError], message: str, path: str | None, code: str,
             state: dict[str, Any]) -> RelibError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    err.args = (err._render(),)
    return err


class InspectionError(RelibError, ValueError):
    """The file could not be read as a native library (``inspect.*``)."""

    default_code = "inspect.malformed"


class IncompatibleModuleError(RelibError):
    """A strict compatibility check failed (``compat.*``).

    ``findings`` holds the error findings that caused it (may be empty).
    """

    default_code = "compat.failed"

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 code: str | None = None, findings: tuple[Any, ...] = (),
                 report: Any = None) -> None:
        self.findings = tuple(findings)
        self.report = report
        super().__init__(message, path=path, code=code)


class LoadError(RelibError, OSError):
    """The library could not be loaded (``load.*``)."""

    default_code = "load.dlopen"


class AlreadyLoaded(LoadError):
    """The library's path or inode is already mapped in this process."""

    default_code = "load.already-loaded"


class SymbolMissing(LoadError):
    """Required symbols are missing; ``symbols`` lists them."""

    default_code = "load.symbol-missing"

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 code: str | None = None, symbols: tuple[str, ...] = ()) -> None:
        self.symbols = tuple(symbols)
        super().__init__(message, path=path, code=code)


class CallError(RelibError):
    """A call into a module could not be made or did not succeed (``call.*``)."""

    default_code = "call.failed"


class ModuleUnloaded(CallError):
    """The module was unloaded; none of its functions may be called any more."""

    default_code = "call.unloaded"


class ExportPanicked(CallError):
    """A relib export panicked; the module already printed the panic message."""

    default_code = "call.panicked"


class UnloadError(RelibError):
    """Unloading failed (``unload.*``). ``report`` may hold an UnloadReport."""

    default_code = "unload.dlclose"

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 code: str | None = None, report: Any = None) -> None:
        self.report = report
        super().__init__(message, path=path, code=code)


class ThreadsStillRunning(UnloadError):
    """Threads started by the module are alive; the module stays loaded and usable."""

    default_code = "unload.threads-running"


class BeforeUnloadPanicked(UnloadError):
    """The module's ``before_unload`` panicked."""

    default_code = "unload.before-unload-panicked"


class StillMapped(UnloadError):
    """``dlclose`` returned but the library is still mapped; ``report`` says why."""

    default_code = "unload.still-mapped"


class ReloadError(RelibError):
    """A reload cycle failed; the last good module stays loaded."""

    default_code = "reload.failed"


class UnloadNotClean(RelibError):
    """Repeated cycles of a library were not clean (``cycle.*``).

    ``run`` is the :class:`~relib_pure.runtime.cycles.CycleRun` with every
    cycle's figures; the message is its readable verdict (what grew, the first
    unload report that was not clean).
    """

    default_code = "cycle.not-clean"

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 code: str | None = None, run: Any = None) -> None:
        self.run = run
        super().__init__(message, path=path, code=code)


class ExampleError(RelibError):
    """The example module could not be built (``example.*``)."""

    default_code = "example.build-failed"
