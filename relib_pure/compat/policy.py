"""What a host expects of a library: the input of :func:`relib_pure.compat.check`.

A :class:`Policy` is frozen data. The runtime host's ``load()`` refuses a
library when ``check(info, policy)`` reports errors, so a caller that knows
better tunes the policy instead of bypassing the check::

    Policy(ignore={"hazard.nodelete"})            # drop one finding code
    Policy(ignore={"resolve"})                    # do not run a whole check
    Policy().relaxed("resolve.undefined-symbol")  # keep it, as a warning
    Policy(escalate={"hazard"})                   # hazards become errors
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relib_pure.compat.expectation import Expectation
from relib_pure.compat.host import HostPlatform
from relib_pure.compat.report import FINDING_CODES, NAMESPACES, Finding

if TYPE_CHECKING:
    from relib_pure.interface import Interface

__all__ = ["Policy"]


def _names(values: Iterable[str]) -> frozenset[str]:
    """Normalise code selectors: ``"hazard.*"`` and ``"hazard"`` both name a namespace."""
    out = set()
    for v in ([values] if isinstance(values, str) else values):
        v = v[:-2] if v.endswith(".*") else v
        if v not in FINDING_CODES and v not in NAMESPACES:
            raise ValueError(f"{v!r} is neither a finding code nor a check namespace "
                             f"({', '.join(NAMESPACES)})")
        out.add(v)
    return frozenset(out)


@dataclass(frozen=True)
class Policy:
    """The host's expectations and how strictly to apply them.

    - ``expect``: compilation info to compare (``None``: no comparison).
    - ``unloading``: the host intends to unload the library; relib modules
      built without unloading are then an error and unload hazards warnings
      (info when false).
    - ``require_relib``: a library without relib compilation info is an error.
    - ``interface``: declared exports/imports; ``exports``/``imports`` add
      plain required symbol names (e.g. from the command line).
    - ``report_unexpected``: report relib functions the interface does not
      declare (only when an interface or names were given).
    - ``resolve``: run the resolvability check; ``ld_library_path`` overrides
      ``$LD_LIBRARY_PATH`` for it (``None``: the environment's) and
      ``resolve_loaded``: names already loaded in this process count as found.
    - ``python``: the interpreter a Python extension module is checked for,
      a version (``"3.13"``) or an interpreter path (``None``: the
      ``cpython-3XY`` tag of the file name, else this interpreter); its
      program and libpython provide the ``Py*`` symbols.
    - ``host``: the platform to compare with (``None``: this interpreter).
    - ``ignore``: finding codes or namespaces dropped (a namespace is not run);
      ``downgrade``: error findings reported as warnings; ``escalate``:
      warning findings reported as errors. Entries are codes or namespaces.
    """

    expect: Expectation | None = None
    unloading: bool = True
    require_relib: bool = False
    interface: Interface | None = None
    exports: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    report_unexpected: bool = True
    resolve: bool = True
    ld_library_path: str | None = None
    resolve_loaded: bool = True
    host: HostPlatform | None = None
    python: str | None = None
    ignore: frozenset[str] = field(default_factory=frozenset)
    downgrade: frozenset[str] = field(default_factory=frozenset)
    escalate: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("ignore", "downgrade", "escalate"):
            object.__setattr__(self, name, _names(getattr(self, name)))
        for name in ("exports", "imports"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    def replace(self, **changes: object) -> Policy:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def relaxed(self, *codes: str, skip: Iterable[str] = ()) -> Policy:
        """A copy where ``codes`` (codes or namespaces) are downgraded to
        warnings and ``skip`` ones ignored."""
        return self.replace(downgrade=self.downgrade | _names(codes),
                            ignore=self.ignore | _names(skip))

    def runs(self, namespace: str) -> bool:
        """Whether the check of this namespace runs at all."""
        if namespace == "resolve" and not self.resolve:
            return False
        return namespace not in self.ignore

    def apply(self, finding: Finding) -> Finding | None:
        """The finding as this policy reports it (``None`` when ignored)."""
        keys = {finding.code, finding.namespace}
        if keys & self.ignore:
            return None
        if finding.severity == "error" and keys & self.downgrade:
            return finding.with_severity("warning")
        if finding.severity == "warning" and keys & self.escalate:
            return finding.with_severity("error")
        return finding

    def host_platform(self) -> HostPlatform:
        return self.host if self.host is not None else HostPlatform.detect()
