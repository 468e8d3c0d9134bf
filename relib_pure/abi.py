"""Facts of relib's binary interface (relib 0.1.8 through 0.7), as data.

This is the one place that knows symbol names and what differs between
protocol generations; the static inspector, the compatibility rules and the
runtime host all read it from here. See ``shared/relib-abi.md`` §0-§3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "COMPILATION_INFO_SYMBOL",
    "PUBLIC_PREFIX",
    "POST_PREFIX",
    "INTERNAL_EXPORT_PREFIX",
    "INTERNAL_IMPORT_PREFIX",
    "HOOK_SYMBOLS",
    "Generation",
    "GENERATIONS",
    "SUPPORTED_VERSIONS",
    "generation_for",
    "parse_relib_version",
    "internal_export",
    "internal_import",
    "public_symbol",
    "post_symbol",
    "UNBOXED_RETURN_TYPES",
    "UNBOXED_RETURN_TYPES_07",
    "type_needs_box",
]

COMPILATION_INFO_SYMBOL = "__RELIB__CRATE_COMPILATION_INFO__"
PUBLIC_PREFIX = "__relib__"
POST_PREFIX = "__post"
INTERNAL_EXPORT_PREFIX = "__relib_____Internal___Exports____"
INTERNAL_IMPORT_PREFIX = "__relib_____Internal___Imports____"

#: Symbols a relib module defines to hook libc for its own references (§1.7),
#: with the first relib version that defines them.
HOOK_SYMBOLS: dict[str, tuple[int, int, int]] = {
    "__cxa_thread_atexit_impl": (0, 1, 8),
    "pthread_create": (0, 1, 8),
    "mmap64": (0, 4, 0),
    "munmap": (0, 4, 0),
    "pthread_key_create": (0, 4, 1),
    "pthread_key_delete": (0, 4, 1),
}

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Generation:
    """One protocol generation: what the host must do differently for it.

    ``name`` is the label used in reports (``"0.1.8"``, ``"0.2"``, ``"0.2.3"``,
    ``"0.3-0.4.0"``...); ``first``/``last`` bound the relib versions it covers
    (inclusive).
    """

    name: str
    first: Version
    last: Version
    #: compilation info has the 5th (unloading) field
    has_unloading_flag: bool
    #: init(thread, id, enable_alloc_tracker) instead of init(thread, id)
    init_has_alloc_tracker_flag: bool
    #: unrecoverable(module_id, msg) instead of unrecoverable(msg)
    unrecoverable_has_module_id: bool
    #: the eprintln(Str) import slot exists
    has_eprintln: bool
    #: the is_ptr_allocated(module, ptr) import slot exists
    has_is_ptr_allocated: bool
    #: name of the mmap cleanup export called before exit, or None
    cleanup_export: str | None
    #: "A": bool f(ret_out*, args...); "B": R' f(bool* success, args...)
    export_convention: str
    #: "plain": R f(args...); "A"/"B" as for exports
    import_convention: str
    #: unboxed return types under convention B (empty set for A)
    unboxed_types: frozenset[str]

    def covers(self, version: Version) -> bool:
        return self.first <= version <= self.last

    @property
    def internal_exports(self) -> tuple[str, ...]:
        """Suffixes of the internal exports the host resolves (Windows-only ones excluded)."""
        names = ["init", "exit", "take_cached_allocs_before_exit", "lock_module_allocator",
                 "spawned_threads_count", "run_thread_local_dtors"]
        if self.cleanup_export:
            names.append(self.cleanup_export)
        return tuple(names)

    @property
    def internal_imports(self) -> tuple[str, ...]:
        """Suffixes of the internal import slots the host writes."""
        names = ["on_alloc", "on_cached_allocs", "unrecoverable"]
        if self.has_eprintln:
            names.append("eprintln")
        if self.has_is_ptr_allocated:
            names.append("is_ptr_allocated")
        return tuple(names)


UNBOXED_RETURN_TYPES = frozenset({
    "()", "bool", "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "usize", "isize",
})
UNBOXED_RETURN_TYPES_07 = UNBOXED_RETURN_TYPES | {"f32", "f64", "char", "u128", "i128"}

#: The protocol generations, oldest first. Versions before 0.1.8 are unsupported.
GENERATIONS: tuple[Generation, ...] = (
    Generation("0.1.8", (0, 1, 8), (0, 1, 999), False, False, False, True, False, None,
               "A", "plain", frozenset()),
    Generation("0.2", (0, 2, 0), (0, 2, 2), True, False, False, True, False, None,
               "A", "plain", frozenset()),
    Generation("0.2.3", (0, 2, 3), (0, 2, 999), True, False, False, True, False, None,
               "A", "A", frozenset()),
    Generation("0.3", (0, 3, 0), (0, 3, 999), True, False, False, True, False, None,
               "B", "B", UNBOXED_RETURN_TYPES),
    Generation("0.4.0", (0, 4, 0), (0, 4, 0), True, False, False, False, False,
               "unmap_all_mmaps", "B", "B", UNBOXED_RETURN_TYPES),
    Generation("0.4.1-0.6", (0, 4, 1), (0, 6, 999), True, False, False, False, False,
               "misc_cleanup", "B", "B", UNBOXED_RETURN_TYPES),
    Generation("0.7", (0, 7, 0), (0, 7, 999), True, True, True, False, True,
               "misc_cleanup", "B", "B", UNBOXED_RETURN_TYPES_07),
)

#: The supported relib versions, as messages name them (``0.1.8 to 0.7.x``).
SUPPORTED_VERSIONS = f"{GENERATIONS[0].name} to {GENERATIONS[-1].name}.x"

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")


def parse_relib_version(text: str) -> Version | None:
    """``"0.7.0"`` -> ``(0, 7, 0)``; ``None`` when the text is not a version."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


_by_version_text: dict[str, Generation | None] = {}


def generation_for(relib_version: str | Version) -> Generation | None:
    """The protocol generation of a relib version, or ``None`` if unsupported."""
    if not isinstance(relib_version, str):
        return _generation_of(relib_version)
    # asked again at every load of a module: the answer per spelling is fixed
    if relib_version in _by_version_text:
        return _by_version_text[relib_version]
    version = parse_relib_version(relib_version)
    found = _generation_of(version) if version is not None else None
    if len(_by_version_text) < 256:
        _by_version_text[relib_version] = found
    return found


def _generation_of(version: Version) -> Generation | None:
    for gen in GENERATIONS:
        if gen.covers(version):
            return gen
    return None


def internal_export(suffix: str) -> str:
    return INTERNAL_EXPORT_PREFIX + suffix


def internal_import(suffix: str) -> str:
    return INTERNAL_IMPORT_PREFIX + suffix


def public_symbol(trait: str | None, name: str) -> str:
    """Mangled name of a trait function (``trait`` = last path segment) or an
    exportify function (``trait=None``, e.g. ``main``)."""
    return f"{PUBLIC_PREFIX}{trait}_{name}" if trait else f"{PUBLIC_PREFIX}{name}"


def post_symbol(symbol: str) -> str:
    """Name of the ``__post`` companion of a boxed return."""
    return POST_PREFIX + symbol


def type_needs_box(rust_type: str, generation: Generation) -> bool:
    """relib's ``type_needs_box`` on the *spelling* of a return type (§1.5)."""
    if generation.export_convention == "A":
        return False  # convention A writes R whole through the out-pointer
    spelled = rust_type.strip()
    if spelled.startswith(("*", "&")):
        return False
    return spelled not in generation.unboxed_types
