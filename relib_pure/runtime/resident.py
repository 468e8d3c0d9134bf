"""Libraries the host keeps loaded for the life of the process, before any module needs them.

``libgcc_s.so.1`` (the unwinder every Rust ``cdylib`` links) is not mapped by
CPython. Left to itself, the first Rust module's ``RTLD_DEEPBIND`` dlopen brings
it in, and libgcc_s then binds ``pthread_key_create`` to that module's relib
hook (relib 0.4.1+). glibc records the dependency, so while any later module
keeps libgcc_s loaded the first module can never leave the process. A Rust host
has libgcc_s linked in from the start; loading it here, once, before the first
module that needs it, gives the same picture (and saves remapping it on every
reload cycle).
"""

from __future__ import annotations

import logging
import threading

from relib_pure.runtime import dl

__all__ = ["BINDING_DEPENDENCIES", "RESIDENT", "ensure_for"]

logger = logging.getLogger(__name__)

#: libraries known to bind symbols to the module that first brings them in
BINDING_DEPENDENCIES: tuple[str, ...] = ("libgcc_s.so.1",)
#: NEEDED names the host loads itself before a module that needs them
RESIDENT: tuple[str, ...] = BINDING_DEPENDENCIES

_handles: dict[str, int] = {}
_failed: dict[str, str] = {}
_lock = threading.Lock()


def ensure_for(needed: tuple[str, ...]) -> None:
    """Load (once per process, never closed) each of :data:`RESIDENT` that ``needed`` names.

    A failure is logged, not raised: the module's own dlopen then reports the
    real problem, and the unload report names this cause if it ever matters.
    """
    wanted = [name for name in RESIDENT if name in needed]
    if not wanted:
        return
    with _lock:
        for name in wanted:
            if name in _handles or name in _failed:
                continue
            try:
                _handles[name] = dl.dlopen(name, dl.RTLD_NOW | dl.RTLD_LOCAL)
            except dl.DlError as e:
                _failed[name] = str(e)
                logger.warning("cannot keep %s resident: %s", name, e)

