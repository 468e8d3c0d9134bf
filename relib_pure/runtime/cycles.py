"""Repeated load -> call -> unload cycles, with the process figures after each.

One implementation behind :func:`relib_pure.testing.assert_unloads_cleanly`,
the pytest plugin's ``--relib-cycles``, ``relib-pure run --cycles`` and
``tools/soak.py``:

- :class:`LibraryCycle` is one cycle of one library (plain or relib): load,
  call, verified unload, as a :class:`CycleOutcome`;
- :func:`run_cycles` repeats any cycle function, samples the process after
  each (:mod:`.figures`) and returns a :class:`CycleRun`: every cycle's
  figures and time, the unload reports that were not clean, what stopped the
  run, and the growth between the warm-up and the last cycle.

The first ``warmup`` cycles fill the caches a first load fills (imports,
allocator arenas, the loader's own structures): growth is measured from the
figures after them to the figures after the last cycle, and must still be
under way in the second half of the cycles (:class:`~.figures.Growth`), so
with one warm-up cycle growth is judged from three cycles on; fewer check the
unload verdicts only.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relib_pure.errors import RelibError, UnloadError
from relib_pure.runtime.figures import Growth, ProcessFigures, growth, sample, tolerances
from relib_pure.runtime.report import UnloadReport

logger = logging.getLogger(__name__)

__all__ = ["CycleOutcome", "CycleRecord", "CycleRun", "LibraryCycle", "run_cycles",
           "check_library"]

#: argument-less return types a symbol named by ``call`` may have
_RESTYPES = ("void", "int", "int64", "uint64", "double", "pointer")


@dataclass(frozen=True)
class CycleOutcome:
    """What one cycle came to.

    ``reports``: the unload reports of the libraries it unloaded; ``error``:
    the typed error that ended it early (a failed load, call or unload);
    ``problems``: further reasons it is not clean (e.g. relib allocations over
    the allowed number); ``stop``: the cycle cannot be repeated (the library
    stayed loaded or mapped, so a reload would find it still there);
    ``result``/``main_result``: what the call and a relib module's main returned.
    """

    reports: tuple[UnloadReport, ...] = ()
    error: RelibError | None = None
    problems: tuple[str, ...] = ()
    stop: bool = False
    result: Any = None
    main_result: Any = None

    @property
    def clean(self) -> bool:
        return self.error is None and not self.problems and all(r.clean for r in self.reports)

    def describe(self) -> str:
        """The reports and problems as indented text (empty when clean)."""
        lines: list[str] = []
        if self.error is not None:
            lines.append(f"error: {self.error}")
            carried = getattr(self.error, "report", None)
            if isinstance(carried, UnloadReport) and carried not in self.reports:
                lines.append(carried.summary())
        for r in self.reports:
            if not r.clean:
                lines.append(r.summary())
        lines.extend(self.problems)
        return "\n".join(lines)


@dataclass(frozen=True)
class CycleRecord:
    """One cycle's figures: the process after it, its wall time, its verdict."""

    cycle: int
    figures: ProcessFigures
    seconds: float
    clean: bool
    warmup: bool
    freed_allocations: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cycle": self.cycle, **self.figures.to_dict(),
                "seconds": round(self.seconds, 6), "clean": self.clean, "warmup": self.warmup,
                "freed_allocations": self.freed_allocations}


@dataclass(frozen=True)
class CycleRun:
    """Every cycle of a run and the verdict over them.

    ``requested`` cycles were asked for; ``records`` holds those that ran (a
    run stops at a cycle that cannot be repeated). ``failures`` are the cycles
    that were not clean, with their outcome; ``stopped_by`` is the outcome that
    ended the run early. ``growth()`` compares the figures after the warm-up
    cycles with those after the last.
    """

    path: str
    requested: int
    warmup: int
    before: ProcessFigures
    records: tuple[CycleRecord, ...]
    tolerance: dict[str, int]
    failures: tuple[tuple[int, CycleOutcome], ...] = ()
    stopped_by: CycleOutcome | None = None
    last: CycleOutcome | None = None

    @property
    def completed(self) -> int:
        return len(self.records)

    @property
    def baseline(self) -> ProcessFigures:
        """The figures growth is measured from: after the warm-up cycles."""
        if self.warmup and len(self.records) >= self.warmup:
            return self.records[self.warmup - 1].figures
        return self.before

    def growth(self) -> tuple[Growth, ...]:
        """Each figure's move from :attr:`baseline` to the last cycle (empty when no
        cycle ran after the warm-up)."""
        measured = self.records[self.warmup:]
        if not measured:
            return ()
        mid = measured[len(measured) // 2 - 1].figures if len(measured) >= 2 else None
        return growth(self.baseline, measured[-1].figures, self.tolerance, mid)

    @property
    def grew(self) -> tuple[Growth, ...]:
        """The figures that rose by more than their tolerance."""
        return tuple(g for g in self.growth() if g.grew)

    @property
    def clean(self) -> bool:
        """Every requested cycle ran and was clean, and nothing grew."""
        return (not self.failures and self.stopped_by is None and not self.grew
                and self.completed == self.requested)

    @property
    def error_code(self) -> str | None:
        """``cycle.not-clean`` (an unload verdict), ``cycle.growth`` (only figures grew)
        or ``None`` (clean)."""
        if self.clean:
            return None
        return "cycle.growth" if not self.failures and self.stopped_by is None \
            and self.completed == self.requested else "cycle.not-clean"

    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def describe(self, *, table_rows: int = 6, with_path: bool = True) -> str:
        """The verdict as text: what grew, the first cycle that was not clean, the figures."""
        verdict = "clean" if self.clean else "NOT CLEAN"
        where = f"{self.path}: " if with_path else ""
        lines = [f"{where}{verdict} after {self.completed} of {self.requested} cycle(s) "
                 f"(warm-up {self.warmup}, {self.seconds():.3f} s)"]
        moves = self.growth()
        if moves:
            since = f"cycle {self.warmup}" if self.warmup else "the start"
            lines.append(f"  growth from {since} to cycle {self.completed}:")
            lines.extend(f"    {g.describe()}" for g in moves)
        if self.failures:
            first, outcome = self.failures[0]
            lines.append(f"  cycle {first} was not clean:")
            lines.extend(f"    {line}" for line in outcome.describe().splitlines())
            if len(self.failures) > 1:
                lines.append(f"  ({len(self.failures) - 1} more cycle(s) not clean: "
                             + ", ".join(str(n) for n, _ in self.failures[1:8])
                             + (", ..." if len(self.failures) > 8 else "") + ")")
        if self.stopped_by is not None and self.completed < self.requested:
            lines.append(f"  stopped after cycle {self.completed}: the library could not be "
                         "loaded again")
        lines.extend(self._table(table_rows))
        return "\n".join(lines)

    def _table(self, rows: int) -> list[str]:
        if not self.records:
            return []
        head = "    cycle   rss_kb  vmsize_kb  fds  threads  mappings      ms"
        out = ["  per cycle:", head]
        shown = list(self.records)
        cut = len(shown) > rows
        if cut:
            shown = shown[:rows // 2] + shown[-(rows - rows // 2):]
        b = self.before
        out.append(f"    {'before':>5} {b.rss_kb:8} {b.vmsize_kb:10} {b.fds:4} {b.threads:8} "
                   f"{b.mappings:9}")
        for i, r in enumerate(shown):
            if cut and i == rows // 2:
                out.append("      ...")
            f = r.figures
            mark = "" if r.clean else "  not clean"
            mark += "  (warm-up)" if r.warmup else ""
            out.append(f"    {r.cycle:5} {f.rss_kb:8} {f.vmsize_kb:10} {f.fds:4} {f.threads:8} "
                       f"{f.mappings:9} {r.seconds * 1e3:7.2f}{mark}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``cycles`` object of ``relib-pure run --json`` (``schemas/run.json``)."""
        return {
            "requested": self.requested, "completed": self.completed, "warmup": self.warmup,
            "clean": self.clean, "seconds": round(self.seconds(), 6),
            "before": self.before.to_dict(), "tolerance": dict(self.tolerance),
            "growth": [g.to_dict() for g in self.growth()],
            "not_clean": [n for n, _ in self.failures],
            "per_cycle": [r.to_dict() for r in self.records],
        }


def run_cycles(cycle: Callable[[], CycleOutcome], *, path: str, cycles: int,
               warmup: int = 1, tolerance: Mapping[str, int] | None = None,
               on_cycle: Callable[[CycleRecord, CycleOutcome], None] | None = None) -> CycleRun:
    """Run ``cycle`` ``cycles`` times (fewer if one says ``stop``), sampling after each.

    The first ``warmup`` cycles count like the others for cleanliness but not
    for growth. ``tolerance`` overrides :data:`~.figures.DEFAULT_TOLERANCE`
    per resource. Exceptions other than the outcome's own propagate (the
    cycle function decides what is a verdict).
    """
    _check_counts(cycles, warmup)
    limits = tolerances(dict(tolerance or {}))
    judged = _judged_cycles(cycles, min(warmup, cycles))
    gc.collect()
    before = sample()
    records: list[CycleRecord] = []
    failures: list[tuple[int, CycleOutcome]] = []
    stopped: CycleOutcome | None = None
    outcome: CycleOutcome | None = None
    for n in range(1, cycles + 1):
        t0 = time.perf_counter()
        outcome = cycle()
        seconds = time.perf_counter() - t0
        if n in judged:
            # garbage in reference cycles (a DWARF read leaves thousands) is
            # freed at the collector's leisure: not a leak, but it would look
            # like one in the samples that growth is judged on
            gc.collect()
        freed = [r.extra["freed_allocations"] for r in outcome.reports
                 if isinstance(r.extra.get("freed_allocations"), int)]
        record = CycleRecord(n, sample(), seconds, outcome.clean, n <= warmup,
                             sum(freed) if freed else None)
        records.append(record)
        if not outcome.clean:
            failures.append((n, outcome))
        if on_cycle is not None:
            on_cycle(record, outcome)
        if outcome.stop:
            stopped = outcome
            break
    run = CycleRun(path, cycles, min(warmup, cycles), before, tuple(records), limits,
                   tuple(failures), stopped, outcome)
    logger.debug("%s", run.describe())
    return run


def _judged_cycles(cycles: int, warmup: int) -> frozenset[int]:
    """The cycles whose samples :meth:`CycleRun.growth` compares: the last warm-up
    cycle, the one halfway through the rest, the last."""
    measured = cycles - warmup
    return frozenset((warmup, warmup + measured // 2, cycles)) if measured >= 2 \
        else frozenset((warmup, cycles))


def _check_counts(cycles: int, warmup: int) -> None:
    for name, value, low in (("cycles", cycles, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer of at least {low}, not {value!r}")


CallSpec = str | Callable[[Any], Any] | None


class LibraryCycle:
    """One load -> call -> unload cycle of the library at ``path``, callable again and again.

    A relib module's ``main`` is called right after loading, as relib's own
    host does (and as ``relib-pure run`` does). Then ``call``: ``None``
    (nothing more), ``"main"`` (a relib module's main again, ``times`` times,
    instead of the first call), the name of an exported C function taking no
    arguments (returning ``restype``, one of ``void int int64 uint64 double
    pointer``), or a callable given the loaded module (a
    :class:`~relib_pure.runtime.Module`, or a :class:`~relib_pure.relib.RelibModule`
    for relib modules). It runs ``times`` times per cycle.

    ``relib``: ``None`` loads relib modules with relib's protocol
    (:func:`~relib_pure.relib.load_module`, with ``exports``/``imports``/
    ``import_types``/``interface`` as it takes them) and
    anything else as a plain library; ``False`` loads every library plain
    (``lazy``/``deepbind`` apply to plain loads).
    ``max_freed_allocations``: a relib unload that had to free more of the
    module's allocations than this is not clean (``None``: not checked).
    """

    def __init__(self, path: str | os.PathLike[str], *, call: CallSpec = None,
                 restype: str = "void", times: int = 1, exports: Any = None,
                 imports: Mapping[str, Any] | None = None, import_types: Any = None,
                 relib: bool | None = None, owner: str = "thread", check: bool = True,
                 policy: Any = None, max_freed_allocations: int | None = None,
                 lazy: bool = False, deepbind: bool = False, interface: Any = None) -> None:
        if restype not in _RESTYPES:
            raise ValueError(f"restype must be one of {', '.join(_RESTYPES)}, not {restype!r}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be an integer of at least 1, not {times!r}")
        if owner not in ("thread", "caller"):
            raise ValueError(f"owner must be 'thread' or 'caller', not {owner!r}")
        if call is not None and not isinstance(call, str) and not callable(call):
            raise TypeError(f"call must be a symbol name or a callable, not {call!r}")
        self.path = os.fspath(path)
        self.call = call
        self.restype = restype
        self.times = times
        self.exports = exports
        self.imports = dict(imports or {})
        self.import_types = import_types
        self.interface = interface
        self.owner = owner
        self.check = check
        self.policy = policy
        self.max_freed_allocations = max_freed_allocations
        self.lazy = lazy
        self.deepbind = deepbind
        self._relib_choice = relib
        self._is_relib: bool | None = None
        self._has_main = False

    @property
    def is_relib(self) -> bool:
        """Whether cycles speak relib's protocol (decided from the file on first use)."""
        if self._is_relib is None:
            from relib_pure.runtime.validate import validate

            info = validate(self.path, check=False).info
            ci = info.relib.compilation_info if info.relib is not None else None
            self._is_relib = ci is not None and self._relib_choice is not False
            self._has_main = bool(info.relib is not None and info.relib.has_main)
        return self._is_relib

    @property
    def calls_main(self) -> bool:
        """Whether each cycle starts with the relib module's ``main``."""
        return self.is_relib and self._has_main

    def load(self) -> Any:
        """Load the library once: a ``Module``, or a ``RelibModule`` for relib cycles."""
        if self.is_relib:
            from relib_pure.relib import load_module

            return load_module(self.path, exports=self.exports, imports=self.imports,
                               import_types=self.import_types, interface=self.interface,
                               policy=self.policy, owner=self.owner, check=self.check)
        from relib_pure.runtime.module import load

        return load(self.path, policy=self.policy, owner=self.owner,  # type: ignore[arg-type]
                    check=self.check, lazy=self.lazy, deepbind=self.deepbind)

    def invoke(self, module: Any) -> tuple[Any, Any]:
        """Make the cycle's calls on a loaded module: ``(main's result, the call's last)``."""
        call = self.call
        main_result = None
        if self.calls_main and call != "main":
            main_result = module.call_main()
        if call is None:
            return main_result, None
        if callable(call):
            fn: Callable[[], Any] = lambda: call(module)  # noqa: E731
        elif call == "main" and self.is_relib:
            fn = module.call_main
        else:
            from relib_pure.runtime.probe import RESTYPES

            target = module.module if self.is_relib else module
            fn = target.function(call, RESTYPES[self.restype], ())
        last = None
        for _ in range(self.times):
            last = fn()
        return main_result, last

    def __call__(self) -> CycleOutcome:
        module = self.load()
        try:
            main_result, result = self.invoke(module)
        except RelibError as e:
            return self._unload_after(module, e)
        except BaseException:
            self._unload_quietly(module)
            raise
        return self.unload(module, result, main_result)

    def unload(self, module: Any, result: Any = None, main_result: Any = None) -> CycleOutcome:
        """Unload a module :meth:`load` returned and judge it (``result``: the call's)."""
        try:
            report: UnloadReport = module.unload()
        except UnloadError as e:
            # refused (threads, not supported: the module stays loaded) or
            # still mapped (given up): either way a reload would find it
            return CycleOutcome(_carried(e), e, stop=True, result=result,
                                main_result=main_result)
        return CycleOutcome((report,), problems=self._allocation_problems(report),
                            result=result, main_result=main_result)

    def _unload_after(self, module: Any, error: RelibError) -> CycleOutcome:
        if not module.loaded:
            return CycleOutcome((), error, stop=True)
        outcome = self.unload(module)
        # a call that fails once fails every time: one failure is the verdict
        return CycleOutcome(outcome.reports, error, outcome.problems, stop=True)

    def _unload_quietly(self, module: Any) -> None:
        if module.loaded:
            try:
                module.unload()
            except RelibError as e:
                logger.warning("%s: unload after a failed call: %s", self.path, e)

    def _allocation_problems(self, report: UnloadReport) -> tuple[str, ...]:
        limit = self.max_freed_allocations
        freed = report.extra.get("freed_allocations")
        if limit is None or not isinstance(freed, int) or freed <= limit:
            return ()
        return (f"relib allocations left at unload: {freed} ({report.extra.get('freed_bytes')} "
                f"bytes) freed by the host, more than the {limit} allowed",)


def _carried(error: UnloadError) -> tuple[UnloadReport, ...]:
    report = getattr(error, "report", None)
    return (report,) if isinstance(report, UnloadReport) else ()


def check_library(path: str | os.PathLike[str], *, cycles: int = 1, warmup: int = 1,
                  tolerance: Mapping[str, int] | None = None,
                  on_cycle: Callable[[CycleRecord, CycleOutcome], None] | None = None,
                  **options: Any) -> CycleRun:
    """:func:`run_cycles` of a :class:`LibraryCycle` (``options`` are its arguments)."""
    cycle = LibraryCycle(path, **options)
    return run_cycles(cycle, path=cycle.path, cycles=cycles, warmup=warmup,
                      tolerance=tolerance, on_cycle=on_cycle)

