"""``Host``: what is process-wide in the runtime, in one object.

A :class:`~relib_pure.runtime.module.Module` manages one library's lifecycle;
everything that spans modules lives here: the load lock (the already-loaded
check and ``dlopen`` are one step), the live and the leaked modules, the last
clean maps text of the steady reload path, the caches (one :meth:`clear_caches`
for all), fork handling, and the factory of protocol drivers. The factory is
injected: the runtime never imports the relib protocol host; the package root
supplies one (``relib_pure._protocol_driver``) to the default host.

Tests and embedders may start from a fresh ``Host()``; ``load(..., host=h)``
registers the module there. One process has one loader, so two hosts still
share what the loader shares (a library mapped through one is mapped for both).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from relib_pure.errors import AlreadyLoaded

if TYPE_CHECKING:
    from relib_pure.runtime.driver import Driver
    from relib_pure.runtime.module import Module
    from relib_pure.runtime.validate import Validated

__all__ = ["Host", "default_host", "DriverFactory"]

#: ``factory(validated) -> Driver | None``: the protocol driver for a library (None: plain)
DriverFactory = Callable[["Validated"], "Driver | None"]

_hosts: weakref.WeakSet[Host] = weakref.WeakSet()


class Host:
    """Process-wide runtime state: registries, the load lock, caches, fork handling."""

    def __init__(self, driver_factory: DriverFactory | None = None) -> None:
        #: serialises every load through this host
        self.load_lock = threading.Lock()
        self.registry_lock = threading.Lock()
        #: loaded modules, strongly held so a forgotten Module is unloaded at exit
        #: instead of being collected while mapped
        self.live: dict[int, Module] = {}
        #: modules that could not be unloaded: what they reference (callbacks,
        #: drivers) stays alive as long as the process, because their code is mapped
        self.leaked: list[Module] = []
        #: modules between their snapshot and their registration: mapped (or
        #: about to be) but not live yet; another module's report must not
        #: count their files
        self.loading: dict[int, Module] = {}
        #: (file key, maps text, VmSize pages, task ids) of the last before-state
        #: found naming neither the file's inode nor its path (written under load_lock)
        self.last_clean: tuple[tuple[int, int, str, str], bytes, int, frozenset[int]] | None = \
            None
        self.driver_factory = driver_factory
        _hosts.add(self)

    def __repr__(self) -> str:
        return f"<Host live={len(self.live)} leaked={len(self.leaked)}>"

    # -- registry ---------------------------------------------------------------

    def live_modules(self) -> tuple[Module, ...]:
        """Modules loaded through this host and not unloaded yet."""
        with self.registry_lock:
            return tuple(self.live.values())

    def leaked_modules(self) -> tuple[Module, ...]:
        """Modules this host gave up on (still mapped, kept alive for the process)."""
        with self.registry_lock:
            return tuple(self.leaked)

    def begin_loading(self, module: Module) -> None:
        with self.registry_lock:
            self.loading[id(module)] = module

    def end_loading(self, module: Module) -> None:
        """A load that failed: ``module`` is neither loading nor live."""
        with self.registry_lock:
            self.loading.pop(id(module), None)

    def register(self, module: Module) -> None:
        # one step from loading to live: no other report sees the file in neither
        with self.registry_lock:
            self.loading.pop(id(module), None)
            self.live[id(module)] = module

    def unregister(self, module: Module) -> None:
        with self.registry_lock:
            self.live.pop(id(module), None)
            if module in self.leaked:
                self.leaked.remove(module)

    def give_up(self, module: Module) -> None:
        """Move ``module`` to the leaked list (it stays mapped for good)."""
        with self.registry_lock:
            self.live.pop(id(module), None)
            if module not in self.leaked:
                self.leaked.append(module)

    def refuse_if_live(self, validated: Validated) -> None:
        """:class:`~relib_pure.errors.AlreadyLoaded` if this host has the file loaded."""
        key = (validated.file.dev, validated.file.inode)
        with self.registry_lock:
            for m in self.live.values():
                v = m.validated
                if (v.file.dev, v.file.inode) == key or v.real_path == validated.real_path:
                    raise AlreadyLoaded("the library (path or inode) is already loaded by this "
                                        "host", path=validated.path)

    def other_files(self, module: Module) -> frozenset[tuple[int, int]]:
        """``(dev, inode)`` of every other library this host holds or is loading
        (not ``module``'s doing)."""
        with self.registry_lock:
            others = [m for m in (*self.live.values(), *self.loading.values())
                      if m is not module] + self.leaked
        return frozenset((m.validated.file.dev, m.validated.file.inode) for m in others)

    # -- drivers ----------------------------------------------------------------

    def protocol_driver(self, validated: Validated) -> Driver | None:
        """The protocol driver the factory picks for ``validated`` (``None``: plain)."""
        relib = validated.info.relib
        if relib is None or relib.compilation_info is None or self.driver_factory is None:
            return None  # not a relib module: no need to load the protocol host
        return self.driver_factory(validated)

    # -- caches -----------------------------------------------------------------

    def clear_caches(self) -> None:
        """Forget everything that speeds up reloading an unchanged file.

        The inspection, check report and DWARF caches of validation, the last
        clean maps text, and the loaded-objects memo of the resolvability
        check: the next load reads and checks the file as a first load does.
        """
        from relib_pure.loader import search
        from relib_pure.runtime.validate import clear_caches as clear_validation

        clear_validation()
        search.clear_loaded_memo()
        with self.load_lock:
            self.last_clean = None

    # -- fork -------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """A forked child has only the forking thread: owner threads did not come along.

        Their modules cannot run anything any more, so they are marked
        unusable (calls raise ModuleUnloaded) and left mapped; locks another
        thread held at the fork are replaced.
        """
        self.load_lock = threading.Lock()
        self.registry_lock = threading.Lock()
        for key, m in list(self.live.items()):
            if m._owner is not None:
                m._forget_owner_after_fork()
                del self.live[key]
                self.leaked.append(m)
            else:
                m._rebase_after_fork()


_default: Host | None = None
_default_lock = threading.Lock()


def default_host() -> Host:
    """The process's host, made on first use with the package root's driver factory."""
    global _default
    host = _default
    if host is None:
        with _default_lock:
            if _default is None:
                import relib_pure

                factory: Any = getattr(relib_pure, "_protocol_driver", None)
                _default = Host(driver_factory=factory)
            host = _default
    return host


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for host in list(_hosts):
        host._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
