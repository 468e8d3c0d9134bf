"""One version of a reloaded library: how it is checked, loaded, started and bound.

:class:`LoadSpec` is what the reloader was told about the library (relib
module or plain, declared exports and imports, policy, what to run after
loading); :func:`check_candidate` is the static validation a new file must
pass before the serving version is touched; :class:`Version` is one loaded
copy with its functions bound lazily.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relib_pure.errors import (IncompatibleModuleError, ReloadError, RelibError,
                               SymbolMissing)
from relib_pure.model import LibraryInfo
from relib_pure.reload.shadow import ShadowCopy
from relib_pure.relib.signatures import FunctionSpec, normalize_specs
from relib_pure.runtime.report import UnloadReport

__all__ = ["LoadSpec", "Version", "check_candidate", "open_version"]


@dataclass(frozen=True)
class LoadSpec:
    """How every version is loaded.

    ``relib``: speak relib's protocol (``load_module``) or load a plain
    library (``load``). ``exports``: declared exports (relib: as
    ``load_module`` takes them; plain: ``{name: (restype, [argtypes])}``);
    ``imports``/``import_types``/``interface``: relib imports. ``main``: call
    a relib module's ``main`` (when it has one) after each load, with
    ``main_restype``. ``init``: for a plain library, a function ``int
    init(void)`` called after each load; a nonzero result refuses the
    version. ``validate``: a callable given the new version's
    :class:`~relib_pure.model.LibraryInfo` before anything is swapped; a
    string it returns (or an exception it raises) refuses the version.
    """

    relib: bool
    exports: Any = None
    imports: Mapping[str, Any] | None = None
    import_types: Any = None
    interface: Any = None
    policy: Any = None
    owner: str = "thread"
    main: bool = True
    main_restype: Any = None
    init: str | None = None
    enable_alloc_tracker: bool = True
    validate: Callable[[LibraryInfo], str | None] | None = None
    export_specs: tuple[FunctionSpec, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        specs: list[FunctionSpec] = []
        trait = "Exports" if self.relib else None
        if self.interface is not None:
            specs.extend(normalize_specs(getattr(self.interface, "exports", ()), trait))
        if self.exports is not None:
            specs.extend(normalize_specs(getattr(self.exports, "exports", self.exports), trait))
        object.__setattr__(self, "export_specs", tuple(specs))

    def required_symbols(self) -> tuple[str, ...]:
        """Symbols a version must export: the declared exports (and ``init``)."""
        names = [s.symbol if self.relib else s.name for s in self.export_specs]
        if self.init is not None and not self.relib:
            names.append(self.init)
        return tuple(names)


def check_candidate(path: str, spec: LoadSpec) -> LibraryInfo:
    """Static validation of a new version: inspection, compatibility checks, the
    declared interface, and the user's ``validate`` callable. Raises a
    :class:`~relib_pure.errors.RelibError` saying what is wrong."""
    from relib_pure.runtime.validate import validate

    if spec.relib:
        from relib_pure.compat import Policy, check
        from relib_pure.relib import select_generation

        validated = validate(path, check=False)
        info = validated.info
        _gen, ci = select_generation(info)
        if not ci.unloading_enabled:
            raise IncompatibleModuleError(
                "the module was built without relib's unloading feature: it could never be "
                "unloaded, so it cannot replace a version", path=path,
                code="reload.not-unloadable")
        report = check(info, spec.policy if spec.policy is not None else Policy(unloading=True))
        report.raise_for_errors()
    else:
        info = validate(path, policy=spec.policy).info
    missing = sorted(set(spec.required_symbols()) - info.export_names())
    if missing:
        raise SymbolMissing(f"declared exports missing: {', '.join(missing)}", path=path,
                            symbols=tuple(missing))
    if spec.validate is not None:
        try:
            verdict = spec.validate(info)
        except RelibError:
            raise
        except Exception as e:
            raise ReloadError(f"validation raised {type(e).__name__}: {e}", path=path,
                              code="reload.invalid") from e
        if isinstance(verdict, str):
            raise ReloadError(f"validation refused it: {verdict}", path=path,
                              code="reload.invalid")
    return info


class Version:
    """A loaded shadow copy: ``number``, ``copy``, ``handle`` (a
    :class:`~relib_pure.relib.RelibModule` or a :class:`~relib_pure.runtime.Module`)
    and the result of its ``main``/``init``."""

    def __init__(self, number: int, copy: ShadowCopy, handle: Any, spec: LoadSpec) -> None:
        self.number = number
        self.copy = copy
        self.handle = handle
        self.spec = spec
        self.main_result: Any = None
        self._bound: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Version {self.number} {self.copy.path}>"

    @property
    def loaded(self) -> bool:
        return bool(self.handle.loaded)

    def start(self) -> Any:
        """Run ``main`` (relib) or ``init`` (plain); raises when it fails or panics."""
        if self.spec.relib:
            info = self.handle.module.info.relib
            if self.spec.main and info is not None and info.has_main:
                self.main_result = self.handle.call_main(self.spec.main_restype)
        elif self.spec.init is not None:
            result = self.handle.function(self.spec.init, ctypes.c_int, ())()
            self.main_result = result
            if result != 0:
                raise ReloadError(f"{self.spec.init}() returned {result}",
                                  path=self.copy.path, code="reload.main-failed")
        return self.main_result

    def export(self, name: str) -> Callable[..., Any]:
        """The declared export ``name`` of this version."""
        key = ("export", name)
        cached = self._bound.get(key)
        if cached is not None:
            return cached
        with self._lock:
            found: Callable[..., Any] | None
            if self.spec.relib:
                found = self.handle.exports[name] if name in self.handle.exports else None
            else:
                spec = next((s for s in self.spec.export_specs if s.name == name), None)
                found = (self.handle.function(spec.name, spec.restype, spec.argtypes)
                         if spec is not None else None)
            if found is None:
                raise AttributeError(f"no declared export {name!r}")
            self._bound[key] = found
        return self._bound[key]

    def function(self, name: str, restype: Any, argtypes: Sequence[Any],
                 trait: str | None) -> Callable[..., Any]:
        """A function of this version bound by name and signature (cached)."""
        key = ("function", name, restype, tuple(argtypes), trait)
        fn = self._bound.get(key)
        if fn is not None:
            return fn
        with self._lock:
            bound: Callable[..., Any]
            if self.spec.relib:
                bound = self.handle.export(name, restype, argtypes, trait=trait)
            else:
                bound = self.handle.function(name, restype, argtypes)
            self._bound[key] = bound
        return bound

    def unload(self) -> UnloadReport:
        report: UnloadReport = self.handle.unload()
        return report


def open_version(number: int, copy: ShadowCopy, spec: LoadSpec) -> Version:
    """Load ``copy`` as version ``number`` (not started: see :meth:`Version.start`)."""
    if spec.relib:
        from relib_pure.relib import load_module

        # check_candidate ran the checks on these very bytes (the copy is private)
        handle: Any = load_module(copy.path, exports=spec.exports, imports=spec.imports,
                                  import_types=spec.import_types, interface=spec.interface,
                                  owner=spec.owner,
                                  enable_alloc_tracker=spec.enable_alloc_tracker, check=False)
    else:
        from relib_pure.runtime import load

        handle = load(copy.path, policy=spec.policy, owner=spec.owner,  # type: ignore[arg-type]
                      check=False)
    return Version(number, copy, handle, spec)
