"""Scripted reload loops: watch a library, rebuild it, validate, swap, roll back.

::

    import relib_pure

    with relib_pure.Reloader("target/debug/libgame.so",
                             exports={"update": (None, [ctypes.c_double])},
                             build=["cargo", "build"], src="src") as r:
        while running:
            r.exports.update(dt)          # always the newest good version
            for event in r.iter_events(timeout=0):
                print(event.summary())

Modules: :mod:`.reloader` (``Reloader``), :mod:`.version` (checking and
loading one version), :mod:`.shadow` (private 0700 copies), :mod:`.settle`
(is the file complete), :mod:`.watch` (watchdog), :mod:`.build` (the build
command), :mod:`.trial` (a version's first run in a child process),
:mod:`.events` (``ReloadEvent``).
"""

from __future__ import annotations

from relib_pure.reload.events import OUTCOMES, BuildResult, Outcome, ReloadEvent
from relib_pure.reload.reloader import DEFAULT_DEBOUNCE, ProxyFunction, Reloader

__all__ = ["Reloader", "ReloadEvent", "BuildResult", "Outcome", "OUTCOMES", "ProxyFunction",
           "DEFAULT_DEBOUNCE"]
