"""The runtime host: load a native library, call it from any thread, unload it, prove it left.

Public API: :func:`load` (-> :class:`Module`), :meth:`Module.function`,
:meth:`Module.unload` (-> :class:`UnloadReport`), :func:`probe` (the same cycle
in a child process). :func:`validate` / :func:`load_validated` split ``load``
in its two steps. Protocols (relib) plug in through
:mod:`relib_pure.runtime.driver`.
"""

from __future__ import annotations

from relib_pure.runtime.driver import Driver, PlainDriver
from relib_pure.runtime.module import BoundFunction, Module, live_modules, load, load_validated
from relib_pure.runtime.probe import ProbeReport, RunResult, probe, run_cycle
from relib_pure.runtime.report import CAUSES, Cause, LeakedFd, LeakedThread, UnloadReport
from relib_pure.runtime.validate import Validated, validate
from relib_pure.runtime import exit as _exit  # noqa: F401  (registers the atexit hook)

__all__ = [
    "load", "load_validated", "validate", "Validated", "Module", "BoundFunction",
    "UnloadReport", "Cause", "CAUSES", "LeakedFd", "LeakedThread", "probe", "ProbeReport",
    "run_cycle", "RunResult", "Driver", "PlainDriver", "live_modules",
]


def __dir__() -> list[str]:
    return sorted(__all__)
