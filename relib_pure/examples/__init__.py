"""The example module: shipped as source, built on first use (see :mod:`.build`).

``example_relib.rs`` (built with rustc when it is installed) and
``example_relib.c`` (built with cc otherwise) are the same relib 0.7 module
with unloading: compilation info, ``main`` (it logs through the import
``Imports::log``), the export ``Exports::add`` and relib's unloading protocol.
:func:`example_path` builds it into the cache and returns the library;
``relib-pure inspect --example`` and ``relib-pure demo`` use it. Load it with
``enable_alloc_tracker=False`` (its allocations are not relib's tracker's).
"""

from __future__ import annotations

from pathlib import Path

from relib_pure.examples.build import (EXAMPLE_LIBRARY, LANGUAGES, SOURCES, BuiltExample,
                                       build_example, cache_root, pick_language, source_path)

__all__ = ["EXAMPLE_LIBRARY", "SOURCES", "LANGUAGES", "BuiltExample", "build_example",
           "cache_root", "pick_language", "source_path", "example_path", "example_source_path"]


def example_path(lang: str | None = None) -> Path:
    """The built example library (built now if the cache lacks it).

    Raises :class:`~relib_pure.errors.ExampleError` when no compiler can build it.
    """
    return build_example(lang).path


def example_source_path(lang: str | None = None) -> Path:
    """The source :func:`example_path` builds (``lang`` as :func:`pick_language` picks it)."""
    return source_path(pick_language(lang))
