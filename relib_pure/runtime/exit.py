"""Interpreter exit: unload what is still loaded, or leave it mapped on purpose.

Runs from ``atexit``, i.e. after non-daemon threads were joined but before
finalisation, while owner threads (daemons) still run. Nothing here may raise
or block for good: a module that cannot be unloaded, or whose owner thread is
still inside a call after :data:`BUSY_TIMEOUT` (a daemon thread's call that
never returns), is logged and left mapped, which is safe because the process
is about to end.
"""

from __future__ import annotations

import atexit
import logging

from relib_pure.errors import RelibError

logger = logging.getLogger(__name__)

__all__ = ["unload_all", "BUSY_TIMEOUT"]

#: how long exit waits for a module's owner thread to finish the calls it runs
BUSY_TIMEOUT = 2.0


def unload_all() -> None:
    from relib_pure.runtime.module import live_modules

    # newest first, like the loader at exit: a module loaded later may depend
    # on an earlier one, and its mappings must be gone before the earlier is checked
    for module in reversed(live_modules()):
        if getattr(module.driver, "unloading", True) is False:
            # the driver says it can never unload (Driver.unloading): leaked by design
            logger.info("%s: built without unloading, left loaded at exit", module.path)
            continue
        owner = module._owner
        if owner is not None and not owner.wait_idle(BUSY_TIMEOUT):
            # unload would queue behind a call that may never return
            logger.warning("%s: left loaded at exit: a call into it is still running after "
                           "%.1f s", module.path, BUSY_TIMEOUT)
            continue
        try:
            report = module.unload()
            if report.clean:
                logger.info("%s: unloaded cleanly at exit", module.path)
            else:
                logger.warning("%s: unloaded at exit, leaving:\n%s", module.path,
                               report.summary())
        except RelibError as e:
            # a module that can never be unloaded is no news at exit
            level = logging.INFO if e.code == "unload.not-supported" else logging.WARNING
            logger.log(level, "%s: left loaded at exit: %s", module.path, e)
        except Exception:  # never turn interpreter exit into a crash
            logger.exception("%s: left loaded at exit", module.path)


atexit.register(unload_all)
