"""Findings and the check report: the result shape of :func:`relib_pure.compat.check`.

Finding codes are public API (hosts key policies on them, a test freezes the
set): ``<namespace>.<problem>``, one namespace per check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relib_pure.errors import IncompatibleModuleError

__all__ = ["FINDING_CODES", "NAMESPACES", "SEVERITIES", "Finding", "CheckReport"]

SEVERITIES = ("error", "warning", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

#: Every finding code, with its meaning. The namespace (before the dot) names
#: the check that produces it.
FINDING_CODES: dict[str, str] = {
    "compilation.match": "the compilation info matches the expectation",
    "compilation.rustc-version": "built by another rustc than expected",
    "compilation.host-triple": "built by a rustc for another host triple than expected",
    "compilation.llvm-version": "built with another LLVM version than expected",
    "compilation.relib-version": "built with another relib version than expected",
    "compilation.unloading": "the unloading flag differs from the expectation",
    "compilation.missing": "an expectation was given but the library has no compilation info",
    "compilation.unreadable": "the relib compilation info is present but could not be read",
    "relib.generation": "the relib protocol generation the host will speak",
    "relib.unsupported": "the relib version is not supported by this host",
    "relib.no-unloading": "unloading was requested but the module was built without it",
    "relib.not-relib": "the library is not a relib module (no compilation info)",
    "relib.missing-internal": "built with unloading, but internal exports or import slots of its protocol are missing",
    "arch.format": "the file format cannot be loaded on this OS (e.g. PE on Linux)",
    "arch.machine": "built for another CPU architecture than this interpreter",
    "arch.bits": "built for another bitness than this interpreter",
    "arch.endianness": "built for another byte order than this interpreter",
    "arch.os": "built for another operating system than this interpreter",
    "arch.executable": "a position-independent executable (DF_1_PIE): dlopen refuses it",
    "interface.missing-export": "a function the interface requires is not exported",
    "interface.missing-import": "an import the interface declares has no slot / reference",
    "interface.unexpected-export": "the module exports a relib function the interface does not declare",
    "interface.unexpected-import": "the module has an import slot the interface does not provide",
    "interface.boxing-mismatch": "a declared Rust return type disagrees with the module's __post companion",
    "interface.signature-arity": "a declared function has another parameter count than its DWARF signature",
    "interface.signature-type": "a declared parameter or return type differs in size or class (int, float, pointer) from the DWARF",
    "interface.signature-layout": "a declared struct has the DWARF struct's size but other field offsets or sizes",
    "interface.signatures-checked": "the declared signatures agree with the DWARF debug information",
    "interface.signatures-unchecked": "declared signatures could not be compared (no DWARF, or no entry for the function)",
    "diff.platform-changed": "diff: the format, architecture, bitness, byte order or OS changed",
    "diff.soname-changed": "diff: the soname changed",
    "diff.compilation-changed": "diff: the relib compilation info changed (relib's host refuses a module that is not built like itself)",
    "diff.generation-changed": "diff: the relib protocol generation changed",
    "diff.export-removed": "diff: an exported symbol (relib: a public export) is gone",
    "diff.export-added": "diff: a symbol is newly exported",
    "diff.export-kind-changed": "diff: an export changed between function and data",
    "diff.object-size-changed": "diff: an exported data object changed size (copy relocations keep the old one)",
    "diff.variable-type-changed": "diff: an exported variable's type changed (DWARF of both builds)",
    "diff.symbol-version-changed": "diff: an export moved to another symbol version",
    "diff.boxing-changed": "diff: a relib return value became boxed or unboxed (__post companion)",
    "diff.import-added": "diff: a relib import slot (error) or an undefined symbol (info) is new",
    "diff.import-removed": "diff: a relib import slot (error) or an undefined symbol (info) is gone",
    "diff.signature-changed": "diff: the DWARF signature of a function in both builds changed (arity, parameter, return or pointed-to layout)",
    "diff.signatures-unavailable": "diff: signatures not compared (a build has no DWARF)",
    "diff.needed-added": "diff: a new NEEDED dependency",
    "diff.needed-removed": "diff: a NEEDED dependency was dropped",
    "diff.version-removed": "diff: a symbol version definition is gone",
    "diff.version-added": "diff: a symbol version definition is new",
    "diff.version-need-added": "diff: a new symbol version is required from a dependency",
    "diff.hazard-added": "diff: a new unload hazard",
    "diff.hazard-removed": "diff: an unload hazard went away",
    "resolve.ok": "every NEEDED library and undefined symbol was resolved",
    "resolve.needed-not-found": "a NEEDED library is not found where the dynamic loader looks",
    "resolve.version-not-found": "a NEEDED library lacks a symbol version the library requires",
    "resolve.undefined-symbol": "an undefined non-weak symbol is defined by no library in scope",
    "resolve.unreadable-dependency": "a dependency was found but could not be inspected",
    "resolve.skipped": "resolvability was not checked (foreign architecture or format)",
    "resolve.python-host": "a Python extension module: the interpreter whose Py* symbols it was resolved against",
    "resolve.python-unavailable": "the Python an extension module targets is not installed here: its Py* symbols were not checked",
    "hazard.nodelete": "DF_1_NODELETE: the library is never unmapped after dlclose",
    "hazard.gnu-unique": "STB_GNU_UNIQUE symbols: glibc marks the library NODELETE when it binds one",
    "hazard.static-tls": "static TLS: each load takes surplus static TLS that is not given back",
    "hazard.thread-atexit": "thread_local destructors pin the library while threads that used it live",
    "hazard.textrel": "text relocations: code pages are written at load time",
    "hazard.execstack": "PT_GNU_STACK asks for an executable stack (-z execstack): glibc 2.41+ refuses to dlopen it",
}

_SIGNATURE_CODES = frozenset({"interface.signature-arity", "interface.signature-type",
                              "interface.signature-layout"})

#: Check namespaces in the order check() runs them.
NAMESPACES = ("arch", "relib", "compilation", "interface", "resolve", "hazard")


@dataclass(frozen=True)
class Finding:
    """One result of one check.

    ``code`` is one of :data:`FINDING_CODES`; ``severity`` one of
    :data:`SEVERITIES`; ``message`` a human sentence; ``details`` JSON-ready
    facts (symbol names, paths, expected and actual values).
    """

    code: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.code not in FINDING_CODES:
            raise ValueError(f"unknown finding code {self.code!r}")
        if self.severity not in _RANK:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def namespace(self) -> str:
        return self.code.split(".", 1)[0]

    def with_severity(self, severity: str) -> Finding:
        """A copy with another severity (policy downgrades and escalations)."""
        return Finding(self.code, severity, self.message, dict(self.details))

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "severity", "message", "details"}``."""
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "details": dict(self.details)}


@dataclass(frozen=True)
class CheckReport:
    """What :func:`~relib_pure.compat.check` found about one library.

    ``findings`` are sorted errors first, then warnings, then infos (stable
    within a severity); ``checks`` names the namespaces that ran.
    """

    path: str
    findings: tuple[Finding, ...]
    checks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not self.errors

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def infos(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    def codes(self, severity: str | None = None) -> set[str]:
        """Codes of the findings (of one severity when given)."""
        return {f.code for f in self.findings if severity is None or f.severity == severity}

    def by_code(self, code: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.code == code)

    def raise_for_errors(self) -> None:
        """Raise :class:`~relib_pure.errors.IncompatibleModuleError` when there
        are error findings; its ``findings`` hold them and ``report`` this report.

        The error code is the specific ``compat.*`` code when every error is of
        one kind that has one (architecture, compilation, relib version,
        signatures against DWARF), else ``compat.failed``.
        """
        errors = self.errors
        if not errors:
            return
        namespaces = {f.namespace for f in errors}
        code = "compat.failed"
        if namespaces == {"arch"} and "arch.executable" not in {f.code for f in errors}:
            code = "compat.arch"
        elif namespaces == {"compilation"}:
            code = "compat.compilation-mismatch"
        elif {f.code for f in errors} == {"relib.unsupported"}:
            code = "compat.unsupported-relib"
        elif {f.code for f in errors} <= _SIGNATURE_CODES:
            code = "compat.signature-mismatch"
        first = errors[0].message
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IncompatibleModuleError(f"{first}{more}", path=self.path, code=code,
                                      findings=errors, report=self)

    def to_dict(self) -> dict[str, Any]:
        """The ``relib-pure check --json`` shape (``schemas/check.json``)."""
        return {
            "version": 1,
            "path": self.path,
            "ok": self.ok,
            "checks": list(self.checks),
            "counts": {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES},
            "findings": [f.to_dict() for f in self.findings],
        }


def sort_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """Errors first, then warnings, then infos; stable within a severity."""
    return tuple(sorted(findings, key=lambda f: _RANK[f.severity]))
