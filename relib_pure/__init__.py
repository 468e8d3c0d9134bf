"""relib_pure: a pure-Python host, loader and inspector for reloadable native libraries.

Layers (data flows one way): :mod:`relib_pure.inspection` (bytes -> model) ->
:mod:`relib_pure.compat` (model -> findings) -> :mod:`relib_pure.runtime`
(load, call, unload, verify) with :mod:`relib_pure.relib` (relib's protocol) ->
:mod:`relib_pure.reload` (watch, rebuild, swap) ->
:mod:`relib_pure.cli`.

Public names are imported lazily so ``import relib_pure`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from relib_pure.errors import *  # noqa: F401,F403
from relib_pure.errors import __all__ as _errors_all

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "inspect": "relib_pure.inspection",
    "inspect_bytes": "relib_pure.inspection",
    "LibraryInfo": "relib_pure.model",
    "CompilationInfo": "relib_pure.model",
    "check": "relib_pure.compat",
    "Policy": "relib_pure.compat",
    "Expectation": "relib_pure.compat",
    "CheckReport": "relib_pure.compat",
    "Finding": "relib_pure.compat",
    "Interface": "relib_pure.interface",
    "load": "relib_pure.runtime",
    "Module": "relib_pure.runtime",
    "Host": "relib_pure.runtime",
    "UnloadReport": "relib_pure.runtime",
    "probe": "relib_pure.runtime",
    "load_module": "relib_pure.relib",
    "RelibModule": "relib_pure.relib",
    "Reloader": "relib_pure.reload",
    "ReloadEvent": "relib_pure.reload",
}

if TYPE_CHECKING:
    # Type checkers see the real definitions (module __getattr__ would make every
    # public name Any); at runtime the imports stay lazy. Keep in step with _LAZY.
    # `X as X`: the explicit re-export form mypy --strict accepts
    from relib_pure.compat import (
        check as check,
        CheckReport as CheckReport,
        Expectation as Expectation,
        Finding as Finding,
        Policy as Policy,
    )
    from relib_pure.inspection import (
        inspect as inspect,
        inspect_bytes as inspect_bytes,
    )
    from relib_pure.interface import (
        Interface as Interface,
    )
    from relib_pure.model import (
        CompilationInfo as CompilationInfo,
        LibraryInfo as LibraryInfo,
    )
    from relib_pure.relib import (
        load_module as load_module,
        RelibModule as RelibModule,
    )
    from relib_pure.reload import (
        Reloader as Reloader,
        ReloadEvent as ReloadEvent,
    )
    from relib_pure.runtime import (
        load as load,
        Host as Host,
        Module as Module,
        UnloadReport as UnloadReport,
    )
    from relib_pure.runtime.probe import probe as probe

__all__ = ["__version__", *_errors_all, *_LAZY]


def _protocol_driver(validated: Any) -> Any:
    """The runtime's driver factory (injected into the default ``Host``): relib's
    protocol driver for relib modules built with unloading, ``None`` otherwise.

    Defined here, at the composition root, so that the runtime never imports
    the relib protocol host.
    """
    from relib_pure.relib import auto_driver

    return auto_driver(validated.info)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'relib_pure' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
