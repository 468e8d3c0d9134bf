"""The runtime host: load a native library, call it from any thread, unload it, prove it left.

Public API: :func:`load` (-> :class:`Module`), :meth:`Module.function` /
:meth:`Module.bind`, :meth:`Module.unload` (-> :class:`UnloadReport`),
:meth:`Module.retry_unload`, :func:`probe` (the same cycle in a child
process). :func:`validate` / :func:`load_validated` split ``load`` in its two
steps. Protocols (relib) plug in through :mod:`relib_pure.runtime.driver`.

::

    from ctypes import c_int
    import relib_pure

    with relib_pure.load("libplain.so") as lib:          # static checks, dlopen, identity
        add = lib.function("plain_add", c_int, (c_int, c_int))
        add(1, 2)                                         # from any thread
    print(lib.report.summary())                           # unloaded? leaks? why still mapped?

    report = relib_pure.probe("libcrashy.so", call="boom")   # a segfault becomes a report
    report.signal_name                                        # 'SIGSEGV'

Modules: :mod:`.dl` (libc loader calls), :mod:`.procfs` (``/proc/self``
snapshots), :mod:`.owner` (owner thread), :mod:`.validate` (static validation
and file identity), :mod:`.module` (``Module``), :mod:`.verify` and
:mod:`.report` (what unload proves), :mod:`.probe` (child-process cycle),
:mod:`.exit` (interpreter exit), :mod:`.host` (the process-wide state: registries,
load lock, caches, fork handling, the injected protocol-driver factory).
"""

from __future__ import annotations

from relib_pure.runtime.driver import Driver, PlainDriver
from relib_pure.runtime.host import Host, default_host
from relib_pure.runtime.module import BoundFunction, Module, live_modules, load, load_validated
from relib_pure.runtime.probe import ProbeReport, RunResult, probe, run_cycle
from relib_pure.runtime.report import CAUSES, Cause, LeakedFd, LeakedThread, UnloadReport
from relib_pure.runtime.validate import Validated, validate
from relib_pure.runtime import exit as _exit  # noqa: F401  (registers the atexit hook)

__all__ = [
    "load", "load_validated", "validate", "Validated", "Module", "BoundFunction",
    "UnloadReport", "Cause", "CAUSES", "LeakedFd", "LeakedThread", "probe", "ProbeReport",
    "run_cycle", "RunResult", "Driver", "PlainDriver", "live_modules", "Host", "default_host",
]


def __dir__() -> list[str]:
    return sorted(__all__)
