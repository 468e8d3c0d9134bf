"""relib protocol check: does this host speak the module's relib version?"""

from __future__ import annotations

from relib_pure import abi
from relib_pure.compat.report import Finding
from relib_pure.model import LibraryInfo

__all__ = ["check_relib", "is_relib_module"]


def is_relib_module(info: LibraryInfo) -> bool:
    """True when the library carries relib's compilation-info symbol (read or not)."""
    r = info.relib
    if r is None:
        return False
    return r.compilation_info is not None or r.compilation_info_error is not None


def check_relib(info: LibraryInfo, *, unloading: bool, require_relib: bool) -> list[Finding]:
    """Protocol generation supported (abi §0) and unloading compiled in when wanted."""
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
        supported = f"{abi.GENERATIONS[0].name} to {abi.GENERATIONS[-1].name}.x"
        return [Finding("relib.unsupported", "error",
                        f"relib {ci.relib_version} is not supported by this host "
                        f"(supported: {supported})",
                        {"relib_version": ci.relib_version, "supported": [g.name for g in abi.GENERATIONS]})]
    found = [Finding("relib.generation", "info",
                     f"relib {ci.relib_version}: protocol generation {gen.name}, exports in "
                     f"convention {gen.export_convention}",
                     {"relib_version": ci.relib_version, "generation": gen.name,
                      "unloading": ci.unloading_enabled})]
    if unloading and not ci.unloading_enabled:
        found.append(Finding("relib.no-unloading", "error",
                             f"built without relib's unloading feature (compilation info flag 0): "
                             f"the module has no internal exports, so it cannot be unloaded",
                             {"relib_version": ci.relib_version}))
    return found
