"""The ``resolve.*`` findings: what :mod:`relib_pure.loader.resolve` found, judged.

The loader emulation (search, ``ld.so.cache``, the NEEDED closure and its
symbol check) lives in :mod:`relib_pure.loader`, apart from this judgement, as
auditwheel keeps ``lddtree`` apart from its policies.
"""

from __future__ import annotations

import os

from relib_pure.compat.report import Finding
from relib_pure.loader.resolve import Resolution, Undefined

__all__ = ["resolution_findings"]


def resolution_findings(res: Resolution) -> list[Finding]:
    """The ``resolve.*`` findings of a resolution."""
    found: list[Finding] = []
    for lib in res.missing:
        where = ", ".join(lib.searched[-6:]) if lib.searched else "nowhere"
        found.append(Finding("resolve.needed-not-found", "error",
                             f"{lib.name} (needed by {os.path.basename(lib.required_by)}) not "
                             f"found; searched RPATH/LD_LIBRARY_PATH/RUNPATH, ld.so.cache and "
                             f"system dirs",
                             {"name": lib.name, "required_by": lib.required_by,
                              "searched": list(lib.searched), "skipped": list(lib.skipped),
                              "last_searched": where}))
    for vp in res.version_problems:
        if vp.no_version_info:
            found.append(Finding("resolve.version-not-found", "warning",
                                 f"{vp.provider}: no version information available "
                                 f"(required by {os.path.basename(vp.required_by)})",
                                 {"file": vp.file, "provider": vp.provider,
                                  "required_by": vp.required_by, "version": None}))
        else:
            found.append(Finding("resolve.version-not-found", "error",
                                 f"{vp.provider}: version `{vp.version}' not found "
                                 f"(required by {os.path.basename(vp.required_by)})",
                                 {"file": vp.file, "provider": vp.provider,
                                  "required_by": vp.required_by, "version": vp.version}))
    for path, why in res.unreadable:
        found.append(Finding("resolve.unreadable-dependency", "warning",
                             f"dependency {path} could not be inspected: {why}",
                             {"path": path, "error": why}))
    if res.undefined:
        # Symbols of a dependency that is missing or unreadable are unknown: the
        # library not found is the error, these may well be its symbols.
        unknown = bool(res.unreadable or res.missing)
        severity = "warning" if unknown else "error"
        maybe = (" (a dependency that was not found or not read may define them)"
                 if unknown else "")
        by_lib: dict[str, list[Undefined]] = {}
        for u in res.undefined:
            by_lib.setdefault(u.required_by, []).append(u)
        for required_by, items in by_lib.items():
            names = [u.name + (f"@{u.version}" if u.version else "") for u in items]
            shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
            found.append(Finding("resolve.undefined-symbol", severity,
                                 f"{len(names)} undefined symbol(s) in "
                                 f"{os.path.basename(required_by)} defined by no library in "
                                 f"scope: {shown}{maybe}",
                                 {"required_by": required_by, "symbols": [
                                     {"name": u.name, "version": u.version} for u in items]}))
    if not found:
        left = f", {len(res.assumed)} left to the host" if res.assumed else ""
        found.append(Finding("resolve.ok", "info",
                             f"{len(res.scope) - 1} dependencies found, "
                             f"{res.symbols_checked - len(res.assumed)} undefined symbols "
                             f"resolved{left}",
                             {"libraries": {k: v for k, v in res.found.items()},
                              "symbols_checked": res.symbols_checked}))
    return found
