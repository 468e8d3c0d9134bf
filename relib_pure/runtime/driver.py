"""The seam between the generic runtime host and a library protocol.

The runtime host (:mod:`relib_pure.runtime.module`) owns the handle, the owner
thread and the verified unload. A *driver* adds what one kind of library needs
on top: the plain driver adds nothing; the relib driver
(:mod:`relib_pure.relib`) writes import slots, calls ``init`` and runs relib's
unload sequence. Every hook runs **on the module's owner thread** (for
``owner="caller"``, on the caller's thread, which the host checks is the
owner).

Order during ``load``: static checks -> ``dlopen`` -> inode verification ->
``driver.after_open(module)`` (an exception here closes the library again and
propagates). Order during ``unload``: ``driver.before_close(module)`` (may
raise :class:`~relib_pure.errors.ThreadsStillRunning` or
:class:`~relib_pure.errors.BeforeUnloadPanicked`: the module then stays loaded
and usable only if ``module_still_usable`` says so) -> owner thread exits ->
``dlclose`` -> verification -> ``driver.report_extra(module)`` merged into the
report's ``extra`` dict.

As implemented by the host (:mod:`relib_pure.runtime.module`):

- After ``before_close`` returns, the host's own check for native threads
  that appeared during the module's lifetime runs (it comes second so that a
  protocol's ``before_unload`` can still join its threads). If threads are
  alive it raises ``ThreadsStillRunning``: the module stays loaded when the
  driver's optional ``module_still_usable() -> bool`` returns true (or the
  driver has no such method), otherwise it is given up (left mapped, never
  closed, everything it references kept alive).
- The same ``module_still_usable`` rule applies when ``before_close`` raises.
- ``after_close(module, unloaded)`` and ``report_extra(module)`` run on the
  unloading thread after verification; an exception there is logged and
  recorded as ``extra["driver_error"]``, it does not hide the verdict.
- ``module.run_on_owner(fn, *args)`` runs ``fn`` on the owner thread (directly
  when already there); ``module.handle`` is the dlopen handle for
  :func:`relib_pure.runtime.dl.dlsym`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from relib_pure.runtime.module import Module

__all__ = ["Driver", "PlainDriver"]


class Driver(Protocol):
    """What a protocol plugs into the runtime host."""

    #: name shown in reports (``"plain"``, ``"relib-0.7"``...)
    name: str
    #: dlopen flags the protocol needs OR-ed in (e.g. ``RTLD_DEEPBIND``)
    extra_dlopen_flags: int
    #: false for libraries that can never be unloaded (relib modules built
    #: without unloading): interpreter exit leaves them mapped without a warning.
    #: Optional; a driver without it counts as unloadable.
    unloading: bool

    def after_open(self, module: Module) -> None:
        """Initialise the freshly mapped library (owner thread)."""

    def before_close(self, module: Module) -> None:
        """Run the protocol's unload steps before ``dlclose`` (owner thread)."""

    def after_close(self, module: Module, unloaded: bool) -> None:
        """Called once ``dlclose`` and verification are done (any thread)."""

    def report_extra(self, module: Module) -> dict[str, Any]:
        """Extra facts for the unload report (e.g. freed allocations)."""


class PlainDriver:
    """The driver for libraries with no protocol: the host does everything."""

    name = "plain"
    extra_dlopen_flags = 0
    unloading = True

    def after_open(self, module: Module) -> None:
        return None

    def before_close(self, module: Module) -> None:
        return None

    def after_close(self, module: Module, unloaded: bool) -> None:
        return None

    def report_extra(self, module: Module) -> dict[str, Any]:
        return {}
