"""Compatibility checks: is this library safe and sensible to load here?

:func:`check` runs pure checks over the inspection model
(:class:`~relib_pure.model.LibraryInfo`) and gathers :class:`Finding` values
into a :class:`CheckReport`; a :class:`Policy` says what the host expects and
which findings it tolerates. Only the resolvability check reads other files
(the NEEDED libraries), and only when the policy asks for it.

Checks, in order (finding-code namespace in brackets): architecture
[``arch``], relib protocol version and unloading flag [``relib``],
compilation info against an :class:`Expectation` [``compilation``], the
declared :class:`~relib_pure.interface.Interface`, its signatures against the
library's DWARF when it has debug information [``interface``],
resolvability of NEEDED libraries and symbols [``resolve``], unload hazards
[``hazard``].
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Union

from relib_pure.compat.arch import check_arch
from relib_pure.compat.compilation import check_compilation
from relib_pure.compat.declared import check_interface
from relib_pure.compat.expectation import Expectation
from relib_pure.compat.hazards import check_hazards
from relib_pure.compat.host import HostPlatform
from relib_pure.compat.policy import Policy
from relib_pure.compat.relib_version import check_relib
from relib_pure.compat.signatures import Declared, check_signatures, unreadable_dwarf_finding
from relib_pure.compat.report import (FINDING_CODES, NAMESPACES, SEVERITIES, CheckReport,
                                      Finding, sort_findings)
from relib_pure.model import LibraryInfo

if TYPE_CHECKING:
    from relib_pure.compat.python_ext import PythonTarget
    from relib_pure.loader.resolve import Resolution

__all__ = [
    "check",
    "check_resolvable",
    "CheckReport",
    "Finding",
    "Policy",
    "Expectation",
    "HostPlatform",
    "FINDING_CODES",
    "NAMESPACES",
    "SEVERITIES",
]

logger = logging.getLogger(__name__)

InfoOrPath = Union[LibraryInfo, str, "os.PathLike[str]"]


def __dir__() -> list[str]:
    return sorted(__all__)


def check(info_or_path: InfoOrPath, policy: Policy | None = None) -> CheckReport:
    """Check one library against ``policy`` (default: :class:`Policy()`).

    ``info_or_path`` is a :class:`~relib_pure.model.LibraryInfo` or a path,
    which is inspected first (an unreadable file raises
    :class:`~relib_pure.errors.InspectionError`). The report's ``ok`` is
    false when any finding is an error; ``raise_for_errors()`` turns that
    into :class:`~relib_pure.errors.IncompatibleModuleError`.
    """
    policy = policy or Policy()
    if isinstance(info_or_path, LibraryInfo):
        info = info_or_path
    else:
        from relib_pure.inspection import inspect

        info = inspect(info_or_path)
    host = policy.host_platform()
    raw: list[Finding] = []
    ran: list[str] = []
    arch_findings: list[Finding] = []
    if policy.runs("arch"):
        ran.append("arch")
        arch_findings = check_arch(info, host)
        raw.extend(arch_findings)
    if policy.runs("relib"):
        ran.append("relib")
        raw.extend(check_relib(info, unloading=policy.unloading,
                               require_relib=policy.require_relib))
    if policy.runs("compilation"):
        ran.append("compilation")
        raw.extend(check_compilation(info, policy.expect))
    if policy.runs("interface") and (policy.interface is not None or policy.exports
                                     or policy.imports):
        ran.append("interface")
        raw.extend(check_interface(info, policy.interface, policy.exports, policy.imports,
                                   report_unexpected=policy.report_unexpected))
        if policy.interface is not None and len(policy.interface):
            raw.extend(_signature_findings(info, (*policy.interface.exports,
                                                  *policy.interface.imports)))
    if policy.runs("resolve"):
        ran.append("resolve")
        # A PIE matches the platform: its dependencies are searched as usual.
        foreign = any(f.code != "arch.executable" for f in arch_findings)
        raw.extend(check_resolvable(info, policy,
                                    foreign=foreign or not _same_platform(info, host)))
    if policy.runs("hazard"):
        ran.append("hazard")
        raw.extend(check_hazards(info, unloading=policy.unloading))
    findings = [f for f in (policy.apply(f) for f in raw) if f is not None]
    report = CheckReport(info.path, sort_findings(findings), tuple(ran))
    logger.debug("check %s: %d error(s), %d warning(s)", info.path, len(report.errors),
                 len(report.warnings))
    return report


def _signature_findings(info: LibraryInfo, declared: tuple[Declared, ...]) -> list[Finding]:
    """Declared signatures against the DWARF, read now when ``info`` lacks it.

    DWARF that cannot be read (corrupt, or ``info`` made from bytes no longer
    at hand) leaves the signatures unchecked with a warning: the rest of the
    library is still what the other checks judged.
    """
    from relib_pure.errors import InspectionError

    if info.debug is None:
        from relib_pure.inspection.dwarf import with_debug_info

        try:
            info = with_debug_info(info)
        except InspectionError as e:
            return [unreadable_dwarf_finding(e, declared)]
    return check_signatures(info.debug, declared)


def _same_platform(info: LibraryInfo, host: HostPlatform) -> bool:
    return (info.format == "elf" and host.os == "linux" and info.machine == host.machine
            and info.bits == host.bits and info.endianness == host.endianness)


def check_resolvable(info: LibraryInfo, policy: Policy | None = None, *,
                     foreign: bool = False) -> list[Finding]:
    """The ``resolve.*`` findings for ``info`` (see :mod:`relib_pure.compat.resolve`).

    A library this interpreter cannot load anyway (``foreign``: other
    architecture or format) gets one ``resolve.skipped`` info: its
    dependencies would be searched in the wrong directories.
    """
    from relib_pure.compat.resolve import resolution_findings
    from relib_pure.loader.resolve import resolve

    policy = policy or Policy()
    if foreign or info.format != "elf":
        return [Finding("resolve.skipped", "info",
                        f"resolvability not checked: {info.format} {info.machine} "
                        f"{info.bits}-bit library is not loadable by this interpreter",
                        {"format": info.format, "machine": info.machine})]
    from relib_pure.compat.python_ext import is_python_symbol, python_target

    target = python_target(info, policy.python)
    if target is None:
        res = resolve(info, ld_library_path=policy.ld_library_path,
                      include_loaded=policy.resolve_loaded)
        return resolution_findings(res)
    if target.executable is not None:
        # the interpreter is the host: its program and libpython define Py*
        res = resolve(info, ld_library_path=policy.ld_library_path,
                      include_loaded=policy.resolve_loaded, host_program=target.executable)
    else:
        # not installed here: another Python's symbols would answer by chance
        res = resolve(info, ld_library_path=policy.ld_library_path,
                      include_loaded=policy.resolve_loaded, global_scope=False,
                      assume_host=is_python_symbol)
    return resolution_findings(res) + [_python_finding(target, res)]


def _python_finding(target: PythonTarget, res: Resolution) -> Finding:
    import sys

    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    details = {"version": target.version, "source": target.source,
               "executable": target.executable, "running": target.running,
               "running_version": running, "assumed": list(res.assumed)}
    if target.executable is None:
        return Finding("resolve.python-unavailable", "warning",
                       f"{target.describe()} is not installed here: {len(res.assumed)} Py* "
                       f"symbol(s) left to that interpreter, not checked", details)
    libpython = next((p for p in res.global_scope if "libpython" in os.path.basename(p)), None)
    details["libpython"] = libpython
    where = target.executable + (f" and {libpython}" if libpython else "")
    note = ""
    if target.version and target.version != running:
        note = f"; this interpreter is Python {running}, which cannot import it"
    return Finding("resolve.python-host", "info",
                   f"Python extension module for {target.describe()}: Py* symbols resolved "
                   f"against {where}{note}", details)
