"""The bundled example library: a tiny relib-style module shipped as package data.

``libexample_relib.so`` is a prebuilt x86_64 Linux ELF made from
``example_relib.c`` (next to it) by ``tools/make_example.py``. It exists so
that ``relib-pure inspect --example`` has something real to show on a machine
without a compiler. It exports the relib 0.7 compilation info (unloading flag
0), ``__relib__main``, ``__relib__Exports_add`` and the import slot
``__relib__Imports_log``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path

from relib_pure.errors import InspectionError

__all__ = ["EXAMPLE_LIBRARY", "EXAMPLE_SOURCE", "example_path", "example_source_path"]

logger = logging.getLogger(__name__)

#: File name of the shipped library inside this package.
EXAMPLE_LIBRARY = "libexample_relib.so"
#: File name of the C source it was built from.
EXAMPLE_SOURCE = "example_relib.c"

# as_file() may extract to a temp file (zipped installs); keep it until exit
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


@lru_cache(maxsize=None)
def _resource_path(name: str) -> Path:
    resource = resources.files(__name__) / name
    if not resource.is_file():
        raise InspectionError(
            f"the bundled {name} is missing from the installed package "
            "(reinstall relib-pure, or run tools/make_example.py in a checkout)",
            path=str(resource), code="inspect.not-found")
    if isinstance(resource, Path):
        return resource
    logger.debug("extracting %s from a non-filesystem package", name)
    return Path(_extracted.enter_context(resources.as_file(resource)))


def example_path() -> Path:
    """Path of the bundled example library (a real file, usable by dlopen).

    Raises :class:`~relib_pure.errors.InspectionError` (``inspect.not-found``)
    when the installation lacks it.
    """
    return _resource_path(EXAMPLE_LIBRARY)


def example_source_path() -> Path:
    """Path of ``example_relib.c``, the source of :func:`example_path`."""
    return _resource_path(EXAMPLE_SOURCE)
