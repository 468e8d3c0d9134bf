"""Unload hazards: why a library may stay mapped after ``dlclose``."""

from __future__ import annotations

from relib_pure.compat.report import Finding
from relib_pure.inspection._elfconst import THREAD_ATEXIT_SYMBOLS
from relib_pure.model import LibraryInfo

__all__ = ["check_hazards"]


def check_hazards(info: LibraryInfo, *, unloading: bool) -> list[Finding]:
    """Warnings (infos when the host does not intend to unload) from
    :class:`~relib_pure.model.Hazards`, each explaining the consequence."""
    h = info.hazards
    severity = "warning" if unloading else "info"
    found: list[Finding] = []
    if h.nodelete:
        found.append(Finding("hazard.nodelete", severity,
                             "linked with -z nodelete (DF_1_NODELETE): glibc never unmaps it, "
                             "dlclose only drops the reference and a reload reuses the old copy"))
    if h.gnu_unique:
        names = list(h.gnu_unique)
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
        found.append(Finding("hazard.gnu-unique", severity,
                             f"{len(names)} STB_GNU_UNIQUE symbol(s) ({shown}): glibc marks the "
                             "library NODELETE once it binds one, so it stays mapped "
                             "(build with -fno-gnu-unique to avoid)", {"symbols": names}))
    if h.static_tls:
        found.append(Finding("hazard.static-tls", severity,
                             f"uses static TLS (initial-exec, {h.tls_size} bytes of TLS): every "
                             "load takes space from glibc's small static TLS surplus that is not "
                             "reused, so repeated reloads end in 'cannot allocate memory in "
                             "static TLS block'", {"tls_size": h.tls_size}))
    if h.thread_atexit:
        names = sorted({s.name for s in info.imports} & THREAD_ATEXIT_SYMBOLS) or [
            "__cxa_thread_atexit_impl"]
        found.append(Finding("hazard.thread-atexit", severity,
                             f"references {' and '.join(names)} (thread_local destructors; "
                             "every Rust cdylib and C++ thread_local with a destructor does): "
                             "once a thread registers one, glibc keeps the library mapped until "
                             "that thread has exited", {"symbols": names}))
    if h.exec_stack is not None:
        # an error whatever the unloading intent: the load itself fails (or, on
        # older glibc, makes every thread's stack executable)
        found.append(Finding("hazard.execstack", "error",
                             f"program header {h.exec_stack} (GNU_STACK) has PF_X set: the "
                             "library asks for an executable stack (linked with -z execstack); "
                             "glibc 2.41+ refuses to dlopen it, older glibc makes every thread "
                             "stack of the process executable (rebuild with -z noexecstack)",
                             {"program_header": h.exec_stack}))
    if h.textrel:
        found.append(Finding("hazard.textrel", "info",
                             "has text relocations: code pages are made writable and copied "
                             "privately at load time"))
    return found
