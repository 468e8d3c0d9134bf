"""Checks for library authors: does my library unload cleanly, cycle after cycle?

Usable from any test runner (the pytest plugin, :mod:`relib_pure.pytest_plugin`,
is built on the same code)::

    from relib_pure.testing import assert_unloads_cleanly

    run = assert_unloads_cleanly("target/release/libmy.so", call="my_init", cycles=200)
    print(run.records[-1].figures.rss_kb, run.records[-1].seconds)

Every cycle loads the library, makes the call, unloads it and verifies the
unload (:meth:`relib_pure.runtime.Module.unload`); after each, the process's
resident memory, address space, descriptors, threads and mappings are
sampled. :class:`~relib_pure.errors.UnloadNotClean` is raised when a cycle
was not clean (``cycle.not-clean``: still mapped, threads, descriptors or
mappings left, unload refused, a failed call) or when a figure grew between
the warm-up cycle and the last one by more than its tolerance and was still
growing over the second half of the cycles (``cycle.growth``; a one-time step
such as a new malloc arena is not growth, and so growth needs at least three
cycles to be judged).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from relib_pure.errors import UnloadNotClean
from relib_pure.runtime.cycles import (CallSpec, CycleOutcome, CycleRecord, CycleRun,
                                       LibraryCycle, check_library, run_cycles)
from relib_pure.runtime.figures import DEFAULT_TOLERANCE, Growth, ProcessFigures, sample

__all__ = ["assert_unloads_cleanly", "raise_if_not_clean", "CycleRun", "CycleRecord",
           "CycleOutcome", "LibraryCycle", "ProcessFigures", "Growth", "DEFAULT_TOLERANCE",
           "run_cycles", "check_library", "sample"]


def raise_if_not_clean(run: CycleRun) -> CycleRun:
    """Return ``run`` when it is clean, else raise :class:`~relib_pure.errors.UnloadNotClean`
    (its message is the run's readable verdict, its ``run`` the figures)."""
    code = run.error_code
    if code is None:
        return run
    raise UnloadNotClean(run.describe(with_path=False), path=run.path, code=code, run=run)


def assert_unloads_cleanly(path: str | os.PathLike[str], call: CallSpec = None, cycles: int = 1,
                           *, warmup: int = 1, restype: str = "void", times: int = 1,
                           exports: Any = None, imports: Mapping[str, Any] | None = None,
                           import_types: Any = None, interface: Any = None,
                           relib: bool | None = None,
                           owner: str = "thread", check: bool = True, policy: Any = None,
                           tolerance: Mapping[str, int] | None = None,
                           max_freed_allocations: int | None = None) -> CycleRun:
    """Load, call and unload the library at ``path`` ``cycles`` times; return the figures.

    A relib module's ``main`` is called right after each load, as relib's host
    does. ``call``: ``None`` (nothing more), ``"main"`` (main ``times`` times
    instead), an exported C function's name (no arguments, returning
    ``restype``) or a callable receiving the loaded module (``Module``, or
    ``RelibModule`` for a relib module loaded with ``exports``/``imports``/
    ``import_types``/``interface`` as :func:`relib_pure.load_module` takes them), run
    ``times`` times per cycle. ``relib=False`` loads a relib module as a plain
    library. ``tolerance`` overrides the allowed growth per resource
    (:data:`DEFAULT_TOLERANCE`: ``rss_kb``, ``vmsize_kb``, ``fds``, ``threads``,
    ``mappings``), measured from the end of the first ``warmup`` cycles.
    ``max_freed_allocations``: fail a relib cycle whose unload freed more of
    the module's leaked allocations than this (unchecked by default: relib
    frees them, and the Rust standard library keeps a few caches).

    Returns the :class:`CycleRun` (``records[i].figures``, ``.seconds``,
    ``growth()``). Raises :class:`~relib_pure.errors.UnloadNotClean`, or the
    typed error of a library that cannot be loaded at all.
    """
    run = check_library(path, cycles=cycles, warmup=warmup, tolerance=tolerance, call=call,
                        restype=restype, times=times, exports=exports, imports=imports,
                        import_types=import_types, interface=interface, relib=relib,
                        owner=owner, check=check,
                        policy=policy, max_freed_allocations=max_freed_allocations)
    return raise_if_not_clean(run)
