"""Hosting modules built with relib's ``relib_module`` crate (relib 0.1.8 through 0.7).

:func:`load_module` reads the module's compilation info statically, picks the
protocol generation (:data:`relib_pure.abi.GENERATIONS`), and loads it through
the generic runtime host with a :class:`~relib_pure.relib.protocol.RelibDriver`,
which speaks relib's load/unload protocol and tracks the module's
allocations so that unloading frees what it leaked::

    from relib_pure.relib import load_module
    from relib_pure.interface import Interface

    api = Interface.from_rust("shared/src/exports.rs", "Exports")
    with load_module("target/debug/libmodule.so", exports=api,
                     imports={"log": lambda s: print(s.to_str())},
                     import_types={"log": (None, [RStr])}) as m:
        m.call_main()
        print(m.exports.add(1, 2))
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from relib_pure.abi import SUPPORTED_VERSIONS, Generation, generation_for
from relib_pure.errors import (IncompatibleModuleError, InspectionError, ModuleUnloaded,
                               SymbolMissing, UnloadError)
from relib_pure.model import CompilationInfo, LibraryInfo
from relib_pure.relib.protocol import RelibDriver
from relib_pure.relib.exports import ExportFunction, bind_export
from relib_pure.relib.layouts import U128, RStr, RString, RVecU8
from relib_pure.relib.signatures import FunctionSpec, normalize_specs, relib_spec

__all__ = ["load_module", "RelibModule", "RelibDriver", "select_generation", "auto_driver",
           "FunctionSpec", "RStr", "RString", "RVecU8", "U128"]

log = logging.getLogger(__name__)


def select_generation(info: LibraryInfo) -> tuple[Generation, CompilationInfo]:
    """The protocol generation of an inspected library, or a typed error.

    :class:`~relib_pure.errors.InspectionError` (``inspect.no-compilation-info``)
    when the library is not a relib module,
    :class:`~relib_pure.errors.IncompatibleModuleError`
    (``compat.unsupported-relib``) when its relib version is not supported or
    its field count does not fit that version (§2.1).
    """
    relib = info.relib
    ci = relib.compilation_info if relib is not None else None
    if ci is None:
        why = relib.compilation_info_error if relib is not None else None
        raise InspectionError("not a relib module: no readable relib compilation info"
                              + (f" ({why})" if why else ""), path=info.path,
                              code="inspect.no-compilation-info")
    gen = generation_for(ci.relib_version)
    if gen is None:
        raise IncompatibleModuleError(
            f"relib {ci.relib_version!r} is not supported by this host ({SUPPORTED_VERSIONS})",
            path=info.path, code="compat.unsupported-relib")
    if gen.has_unloading_flag != (ci.unloading is not None):
        fields = 5 if ci.unloading is not None else 4
        raise IncompatibleModuleError(
            f"relib {ci.relib_version} compilation info has {fields} fields, "
            f"expected {5 if gen.has_unloading_flag else 4}", path=info.path,
            code="compat.unsupported-relib")
    return gen, ci


def auto_driver(info: LibraryInfo) -> RelibDriver | None:
    """A relib driver for plain ``relib_pure.load(path)``: relib modules built with unloading.

    ``None`` for anything else (not relib, unsupported, or built without
    unloading), which the runtime loads with its plain driver.
    """
    try:
        gen, ci = select_generation(info)
    except (InspectionError, IncompatibleModuleError):
        return None
    if not ci.unloading_enabled:
        return None
    return RelibDriver(gen, ci, path=info.path)


def _expectation(expect: Any) -> Any:
    if expect is None:
        return None
    from relib_pure.compat import Expectation

    if isinstance(expect, Expectation):
        return expect
    if isinstance(expect, RelibModule):
        return Expectation.like(expect.module.info)
    return Expectation.like(expect)  # a LibraryInfo or a path


def _import_specs(import_types: Any, interface: Any,
                  imports: Mapping[str, Any]) -> tuple[tuple[FunctionSpec, ...],
                                                       dict[str, Callable[..., Any]]]:
    impls: dict[str, Callable[..., Any]] = {}
    inline: dict[str, tuple[Any, Any]] = {}
    for name, value in imports.items():
        if isinstance(value, tuple):  # (restype, [argtypes], callable)
            restype, argtypes, func = value
            inline[name] = (restype, list(argtypes))
            impls[name] = func
        else:
            impls[name] = value
    specs: list[FunctionSpec] = []
    if interface is not None:
        specs.extend(normalize_specs(getattr(interface, "imports", ()), "Imports"))
    specs.extend(normalize_specs(import_types, "Imports"))
    specs.extend(normalize_specs(inline, "Imports"))
    return _dedupe(specs), impls


def _with_signature_findings(report: Any, validated: Any, specs: tuple[FunctionSpec, ...],
                             policy: Any) -> Any:
    """``report`` plus the declared specs compared with the module's DWARF
    (read once per file identity: a module without debug information costs one
    section lookup)."""
    from relib_pure.compat.report import CheckReport, sort_findings
    from relib_pure.compat.signatures import check_signatures, unreadable_dwarf_finding
    from relib_pure.runtime.validate import debug_info

    if policy.interface is not None:  # check() compared those already
        taken = {f.symbol for f in (*policy.interface.exports, *policy.interface.imports)}
        specs = tuple(s for s in specs if s.symbol not in taken)
    if not specs:
        return report
    try:
        findings = check_signatures(debug_info(validated), specs)
    except InspectionError as e:  # corrupt DWARF: the module itself passed validation
        findings = [unreadable_dwarf_finding(e, specs)]
    extra = [f for f in (policy.apply(f) for f in findings) if f is not None]
    return CheckReport(report.path, sort_findings([*report.findings, *extra]), report.checks)


def _dedupe(specs: list[FunctionSpec]) -> tuple[FunctionSpec, ...]:
    by_name: dict[str, FunctionSpec] = {}
    for s in specs:
        by_name[s.name] = s  # later declarations win
    return tuple(by_name.values())


class _Exports:
    """Attribute access to a module's bound exports: ``m.exports.add(1, 2)``."""

    def __init__(self, funcs: Mapping[str, ExportFunction]) -> None:
        self._funcs = dict(funcs)

    def __getattr__(self, name: str) -> ExportFunction:
        try:
            return self._funcs[name]
        except KeyError:
            raise AttributeError(f"no declared export {name!r}") from None

    def __getitem__(self, name: str) -> ExportFunction:
        return self._funcs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._funcs

    def __iter__(self) -> Any:
        return iter(self._funcs)

    def __dir__(self) -> list[str]:
        return sorted(self._funcs)


class RelibModule:
    """A loaded relib module: its exports, ``main``, allocation tracking and unload.

    ``module`` is the runtime :class:`~relib_pure.runtime.Module` underneath;
    ``generation`` the protocol generation; ``module_id`` relib's id (``None``
    for modules built without unloading). Calls run on the module's owner
    thread (``owner="thread"``) or only on the loading thread
    (``owner="caller"``).
    """

    def __init__(self, module: Any, driver: RelibDriver) -> None:
        self.module = module
        self.driver = driver
        self.path: str = module.path
        self.generation = driver.generation
        self.compilation_info = driver.compilation_info
        self.exports = _Exports(driver.exports)
        # main as the driver bound it while loading (``()``; this module's invoker)
        self._main_by_restype: dict[Any, ExportFunction] = \
            {None: driver.main} if driver.main is not None else {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"<RelibModule {self.path} relib {self.generation.name} id={self.module_id} "
                f"{'loaded' if self.loaded else 'closed'}>")

    def __enter__(self) -> RelibModule:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.loaded and self.unloading:
            if exc is None:
                self.unload()
            else:
                try:
                    self.unload()
                except UnloadError as e:
                    log.warning("%s: unload after an error failed: %s", self.path, e)

    @property
    def module_id(self) -> int | None:
        return self.driver.module_id

    @property
    def unloading(self) -> bool:
        """Whether the module was built with relib's unloading support."""
        return self.driver.unloading

    @property
    def loaded(self) -> bool:
        return bool(self.module.loaded)

    def _invoke(self, call: Callable[[], Any]) -> Any:
        module = self.module

        def guarded() -> Any:
            # checked again on the owner thread: an unload queued first wins
            if not module.loaded:
                raise ModuleUnloaded("the module was unloaded", path=self.path)
            return call()
        if not module.loaded:
            raise ModuleUnloaded("the module was unloaded", path=self.path)
        return module.run_on_owner(guarded)

    def call_main(self, restype: Any = None) -> Any:
        """Call the module's ``main`` (``#[relib_module::export] fn main``).

        ``restype`` is the ctypes type of its return value (``None`` for
        ``()``); boxed returns (0.3+) are copied out and released. Raises
        :class:`~relib_pure.errors.ExportPanicked` if main panicked and
        :class:`~relib_pure.errors.SymbolMissing` if there is no main.
        """
        fn = self._main_by_restype.get(restype)
        if fn is not None:
            return fn()
        with self._lock:
            fn = self._main_by_restype.get(restype)
            if fn is None:
                fn = bind_export(relib_spec("main", restype), self.generation,
                                 self._resolve, path=self.path, invoke=self._invoke)
                if fn is None:
                    raise SymbolMissing("the module has no main (__relib__main)",
                                        path=self.path, symbols=("__relib__main",))
                self._main_by_restype[restype] = fn
        return fn()

    def export(self, name: str, restype: Any = None, argtypes: Any = (), *,
               trait: str | None = "Exports") -> ExportFunction:
        """Bind an export that was not declared at load (``trait=None`` for exportify fns)."""
        spec = relib_spec(name, restype, tuple(argtypes), trait)
        fn = bind_export(spec, self.generation, self._resolve, path=self.path,
                         invoke=self._invoke)
        if fn is None:
            raise SymbolMissing(f"the module does not export {spec.symbol}", path=self.path,
                                symbols=(spec.symbol,))
        return fn

    def _resolve(self, name: str) -> int | None:
        if not self.module.loaded:
            raise ModuleUnloaded("the module was unloaded", path=self.path)
        address: int | None = self.module.own_address(name)
        return address

    def spawned_threads_count(self) -> int:
        """Threads the module spawned that are still running (modules with unloading)."""
        if not self.unloading:
            raise UnloadError("the module was built without unloading", path=self.path,
                              code="unload.not-supported")
        return int(self._invoke(self.driver.spawned_threads_count))

    def live_allocations(self) -> int:
        """Number of the module's allocations the host currently tracks."""
        store = self.driver.store
        return len(store) if store is not None else 0

    def unload(self) -> Any:
        """Run relib's unload protocol, close and verify; returns the UnloadReport.

        Its ``extra`` holds ``freed_allocations`` and ``freed_bytes``. Raises
        :class:`~relib_pure.errors.BeforeUnloadPanicked` or
        :class:`~relib_pure.errors.ThreadsStillRunning` (the module stays
        loaded and usable), :class:`~relib_pure.errors.StillMapped`, and
        ``unload.not-supported`` for modules built without unloading.
        """
        if not self.unloading:
            raise UnloadError("the module was built without relib unloading; it stays loaded "
                              "for the life of the process", path=self.path,
                              code="unload.not-supported")
        return self.module.unload()


_RUNTIME: tuple[Any, Any, Any] | None = None


def _runtime() -> tuple[Any, Any, Any]:
    """``(load_validated, validate, check_report_for)``, imported on first use (the
    runtime is imported lazily; an import statement per load costs more than this)."""
    global _RUNTIME
    if _RUNTIME is None:
        from relib_pure.runtime.module import load_validated
        from relib_pure.runtime.validate import check_report_for, validate

        _RUNTIME = (load_validated, validate, check_report_for)
    return _RUNTIME


_DEFAULT_POLICIES: dict[bool, Any] = {}


def _default_policy(unloading: bool) -> Any:
    """``Policy(unloading=unloading)``, made once (policies are frozen)."""
    pol = _DEFAULT_POLICIES.get(unloading)
    if pol is None:
        from relib_pure.compat import Policy

        pol = _DEFAULT_POLICIES[unloading] = Policy(unloading=unloading)
    return pol


def load_module(path: str | os.PathLike[str], *, exports: Any = None,
                imports: Mapping[str, Any] | None = None, import_types: Any = None,
                interface: Any = None, policy: Any = None, expect: Any = None,
                owner: str = "thread", enable_alloc_tracker: bool = True,
                check: bool = True) -> RelibModule:
    """Load a relib module and speak relib's host protocol with it.

    - ``exports``: declared public exports (an ``Interface``, a mapping
      ``{name: (restype, [argtypes])}`` or :class:`FunctionSpec` items; trait
      ``Exports`` unless they name one); ``interface`` may carry both
      directions (its ``exports`` and ``imports``), and so may an
      ``Interface`` given as ``exports``.
    - ``imports``: ``{name: callable}`` implementations of the module's public
      imports (or ``{name: (restype, [argtypes], callable)}``); their signatures
      come from ``interface``/``import_types`` otherwise.
    - ``policy``: the static checks' :class:`relib_pure.compat.Policy`
      (default: accept the module's generation, with or without unloading).
      ``expect``: compilation info to require, an ``Expectation``, a
      ``LibraryInfo``, a path or another :class:`RelibModule` (rustc, host,
      LLVM, relib version and unloading must then be equal).
    - ``owner``: ``"thread"`` (a dedicated owner thread runs init, every call
      and unload) or ``"caller"``.
    - ``enable_alloc_tracker``: relib 0.7's ``init`` flag. Only pass ``False``
      for a module whose global allocator is *not* relib's tracker: the tracker
      deadlocks on its first allocation without it (relib-abi.md §4.3).
      Earlier generations have no such flag (a warning is logged).

    Errors before anything is mapped: ``inspect.*`` (unreadable, not relib),
    ``compat.unsupported-relib``, ``compat.*`` from the policy, and
    ``compat.signature-mismatch`` when a debug build's DWARF shows that a
    declared export or import has another arity, parameter or return type
    (the findings name the function, the parameter, declared and found). Then
    ``load.already-loaded``, ``load.dlopen``, ``load.symbol-missing`` (every
    missing symbol listed).
    """
    load_validated, validate, check_report_for = _runtime()
    validated = validate(path, check=False)
    gen, ci = select_generation(validated.info)
    if interface is None and getattr(exports, "imports", None):
        # an Interface passed as ``exports`` declares both directions, as it reads
        interface, exports = exports, None
    export_specs = list(normalize_specs(getattr(interface, "exports", ()), "Exports")) \
        if interface is not None else []
    if exports is not None:
        export_specs.extend(normalize_specs(getattr(exports, "exports", exports), "Exports"))
    declared = _dedupe(export_specs)
    import_specs: tuple[FunctionSpec, ...] = ()
    impls: dict[str, Callable[..., Any]] = {}  # nothing declared: the common reload loop
    if import_types is not None or interface is not None or imports:
        import_specs, impls = _import_specs(import_types, interface, imports or {})
    if check:
        pol = policy if policy is not None else _default_policy(ci.unloading_enabled)
        wanted = _expectation(expect)
        if wanted is not None:
            pol = dataclasses.replace(pol, expect=wanted)
        # cached by file identity, policy and the loaded objects: a reload loop
        # over an unchanged file checks it once
        report = check_report_for(validated, pol)
        if pol.runs("interface"):
            report = _with_signature_findings(report, validated,
                                              (*declared, *import_specs), pol)
        report.raise_for_errors()
        validated = validated.with_report(report)
    if not enable_alloc_tracker and not gen.init_has_alloc_tracker_flag:
        log.warning("%s: relib %s has no enable_alloc_tracker flag; the tracker stays on",
                    validated.path, gen.name)
    driver = RelibDriver(gen, ci, exports=declared, imports=import_specs,
                         implementations=impls, enable_alloc_tracker=enable_alloc_tracker,
                         path=validated.path)
    module = load_validated(validated, owner=owner, driver=driver)
    relib_module = RelibModule(module, driver)
    driver.invoke = relib_module._invoke
    return relib_module
