"""relib protocol check: does this host speak the module's relib version?"""

from __future__ import annotations

from relib_pure import abi
from relib_pure.compat.report import Finding
from relib_pure.model import LibraryInfo, RelibInfo

__all__ = ["check_relib", "is_relib_module"]


def is_relib_module(info: LibraryInfo) -> bool:
    """True when the library carries relib's compilation-info symbol (read or not)."""
    r = info.relib
    if r is None:
        return False
    return r.compilation_info is not None or r.compilation_info_error is not None


def _missing_internal(relib: RelibInfo, gen: abi.Generation) -> list[str]:
    """Internal exports (code) and import slots the generation's host resolves, absent here."""
    exports = set(relib.internal_exports)
    imports = set(relib.internal_imports)
    return ([abi.internal_export(s) for s in gen.internal_exports
             if abi.internal_export(s) not in exports]
            + [abi.internal_import(s) for s in gen.internal_imports
               if abi.internal_import(s) not in imports])


def check_relib(info: LibraryInfo, *, unloading: bool, require_relib: bool) -> list[Finding]:
    """Protocol generation supported (abi §0), the internal symbols of that
    generation present when the module was built with unloading (§1.3-§1.4),
    and unloading compiled in when wanted."""
    if not is_relib_module(info):
        severity = "error" if require_relib else "info"
        return [Finding("relib.not-relib", severity,
                        "not a relib module: no __RELIB__CRATE_COMPILATION_INFO__ symbol")]
    assert info.relib is not None
    ci = info.relib.compilation_info
    if ci is None:
        # compilation.unreadable says why; without the version no protocol can be chosen.
        return []
    gen = abi.generation_for(ci.relib_version)
    if gen is None:
        return [Finding("relib.unsupported", "error",
                        f"relib {ci.relib_version} is not supported by this host "
                        f"(supported: {abi.SUPPORTED_VERSIONS})",
                        {"relib_version": ci.relib_version, "supported": [g.name for g in abi.GENERATIONS]})]
    found = [Finding("relib.generation", "info",
                     f"relib {ci.relib_version}: protocol generation {gen.name}, exports in "
                     f"convention {gen.export_convention}",
                     {"relib_version": ci.relib_version, "generation": gen.name,
                      "unloading": ci.unloading_enabled})]
    # The internal symbol set is the Linux one (relib-abi.md §1.3-§1.4).
    if ci.unloading_enabled and info.format == "elf":
        missing = _missing_internal(info.relib, gen)
        if missing:
            shown = ", ".join(missing[:4]) + (f" (+{len(missing) - 4} more)"
                                              if len(missing) > 4 else "")
            found.append(Finding("relib.missing-internal", "error",
                                 f"built with unloading but {len(missing)} internal symbol(s) of "
                                 f"protocol {gen.name} are missing: {shown}; the host cannot "
                                 f"initialise or unload it (the Rust host panics)",
                                 {"missing": missing, "generation": gen.name}))
    if unloading and not ci.unloading_enabled:
        found.append(Finding("relib.no-unloading", "error",
                             f"built without relib's unloading feature (compilation info flag 0): "
                             f"the module has no internal exports, so it cannot be unloaded (to load "
                             f"it for the life of the process: Policy(unloading=False), "
                             f"relib_pure.load_module(), or `check --no-unload`)",
                             {"relib_version": ci.relib_version}))
    return found
