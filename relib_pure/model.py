"""The inspection model: immutable facts read from a library file.

Nothing here touches the file system or loads anything; readers in
:mod:`relib_pure.inspection` build these objects, checks in
:mod:`relib_pure.compat` read them. ``to_dict()`` gives the JSON shape used by
``relib-pure inspect --json`` (see ``schemas/inspect.json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Symbol",
    "ImportedSymbol",
    "VersionNeed",
    "PEExport",
    "PEImport",
    "PEInfo",
    "CompilationInfo",
    "RelibFunction",
    "RelibInfo",
    "Hazards",
    "LibraryInfo",
]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        result = _plain(self)
        assert isinstance(result, dict)
        return result


@dataclass(frozen=True)
class Symbol(_ToDict):
    """A symbol the library defines and exports (ELF ``.dynsym`` defined entry).

    ``kind``: ``func``, ``object``, ``tls``, ``ifunc``, ``common``, ``notype``;
    ``binding``: ``global``, ``weak``, ``gnu_unique``;
    ``visibility``: ``default``, ``protected``. ``version`` is the symbol
    version name (``None`` when unversioned); ``default_version`` is false for
    hidden (``@``, not ``@@``) versions.
    """

    name: str
    kind: str
    binding: str
    visibility: str
    size: int
    value: int
    version: str | None = None
    default_version: bool = True


@dataclass(frozen=True)
class ImportedSymbol(_ToDict):
    """An undefined symbol the library needs from elsewhere.

    ``version`` is the required version name, ``version_file`` the library the
    version requirement names (``libc.so.6``), ``weak`` true for weak references
    (which may stay unresolved).
    """

    name: str
    kind: str
    weak: bool
    version: str | None = None
    version_file: str | None = None


@dataclass(frozen=True)
class VersionNeed(_ToDict):
    """An ELF ``.gnu.version_r`` entry: versions required from one library."""

    file: str
    versions: tuple[str, ...]


@dataclass(frozen=True)
class PEExport(_ToDict):
    """A PE export: ``name`` is ``None`` for ordinal-only exports; ``forwarder``
    is ``"DLL.Func"`` for forwarded exports."""

    ordinal: int
    name: str | None
    rva: int
    forwarder: str | None = None


@dataclass(frozen=True)
class PEImport(_ToDict):
    """One function imported from ``dll``, by ``name`` or by ``ordinal``."""

    dll: str
    name: str | None
    ordinal: int | None = None


@dataclass(frozen=True)
class PEInfo(_ToDict):
    """PE-specific header facts."""

    machine: str
    subsystem: str
    characteristics: tuple[str, ...]
    dll_characteristics: tuple[str, ...]
    image_base: int
    timestamp: int
    dll_name: str | None
    exports: tuple[PEExport, ...]
    imports: tuple[PEImport, ...]


@dataclass(frozen=True)
class CompilationInfo(_ToDict):
    """relib's ``__RELIB__CRATE_COMPILATION_INFO__`` string, decoded (§2).

    ``unloading`` is ``None`` for 0.1.8 (4 fields, unloading always compiled
    in). ``generation`` names the protocol generation from
    :data:`relib_pure.abi.GENERATIONS`, or is ``None`` when this host does not
    support the relib version. ``source`` says how the pointer was resolved:
    ``rela`` (addend of a RELATIVE relocation), ``in-place`` (value in the file:
    GNU ld or RELR), ``pe-basereloc`` or ``runtime``.
    """

    raw: str
    rustc_version: str
    host_triple: str
    llvm_version: str
    relib_version: str
    unloading: bool | None
    generation: str | None
    source: str

    @property
    def unloading_enabled(self) -> bool:
        """Whether the module was built with unloading (always for 0.1.8)."""
        return self.unloading is None or self.unloading


@dataclass(frozen=True)
class RelibFunction(_ToDict):
    """A public relib export or import slot: ``__relib__<trait>_<name>``.

    ``trait`` is ``None`` for exportify functions (``main``,
    ``before_unload``). ``boxed`` is true when a ``__post`` companion exists
    (the return value is boxed, convention B).
    """

    symbol: str
    trait: str | None
    name: str
    boxed: bool
    post_symbol: str | None = None


@dataclass(frozen=True)
class RelibInfo(_ToDict):
    """What a library holds of relib's module side.

    ``compilation_info`` is ``None`` when the symbol is absent;
    ``compilation_info_error`` then or otherwise explains what went wrong
    reading it.
    """

    compilation_info: CompilationInfo | None
    compilation_info_error: str | None
    has_main: bool
    has_before_unload: bool
    exports: tuple[RelibFunction, ...]
    imports: tuple[RelibFunction, ...]
    internal_exports: tuple[str, ...]
    internal_imports: tuple[str, ...]
    hooks: tuple[str, ...]

    @property
    def exports_by_trait(self) -> dict[str | None, tuple[RelibFunction, ...]]:
        return _group(self.exports)

    @property
    def imports_by_trait(self) -> dict[str | None, tuple[RelibFunction, ...]]:
        return _group(self.imports)


def _group(funcs: tuple[RelibFunction, ...]) -> dict[str | None, tuple[RelibFunction, ...]]:
    out: dict[str | None, list[RelibFunction]] = {}
    for f in funcs:
        out.setdefault(f.trait, []).append(f)
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class Hazards(_ToDict):
    """Properties that keep a library mapped after ``dlclose`` or make
    reloading it risky.

    ``nodelete``: ``DF_1_NODELETE`` set (``-z nodelete``). ``gnu_unique``:
    names of ``STB_GNU_UNIQUE`` symbols (glibc marks the object NODELETE when
    it binds one). ``static_tls``: ``DF_STATIC_TLS`` or initial-exec TLS
    relocations (``R_X86_64_TPOFF64``) present. ``tls_size``: memory size of the
    ``PT_TLS`` segment. ``init_array``/``fini_array``: entry counts.
    ``thread_atexit``: the library references ``__cxa_thread_atexit_impl``
    (Rust ``thread_local!`` with destructors), which pins it while threads
    that touched it are alive.
    """

    nodelete: bool = False
    gnu_unique: tuple[str, ...] = ()
    static_tls: bool = False
    tls_size: int = 0
    init_array: int = 0
    fini_array: int = 0
    has_init: bool = False
    has_fini: bool = False
    thread_atexit: bool = False
    textrel: bool = False

    @property
    def blocks_unload(self) -> bool:
        """True when glibc will never unmap the library after ``dlclose``."""
        return self.nodelete or bool(self.gnu_unique)


@dataclass(frozen=True)
class LibraryInfo(_ToDict):
    """Everything :func:`relib_pure.inspect` reads from a library file.

    ``format`` is ``elf`` or ``pe``; ``machine`` a normalised architecture name
    (``x86_64``, ``aarch64``, ``i386``, ``arm``, ...); ``bits`` 32 or 64;
    ``endianness`` ``little`` or ``big``; ``os`` the target OS (``linux`` for
    ELF System V/GNU ABI, ``windows`` for PE). ``sha256`` is of the whole file.
    ``elf_type`` is ``DYN`` for shared libraries (``None`` for PE).
    ``dynamic_flags`` / ``dynamic_flags_1`` list names like ``BIND_NOW``,
    ``NOW``, ``NODELETE``. ``comments`` are the ``.comment`` strings.
    """

    path: str
    format: str
    machine: str
    bits: int
    endianness: str
    os: str
    file_size: int
    sha256: str
    elf_type: str | None = None
    soname: str | None = None
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    needed: tuple[str, ...] = ()
    build_id: str | None = None
    interpreter: str | None = None
    dynamic_flags: tuple[str, ...] = ()
    dynamic_flags_1: tuple[str, ...] = ()
    exports: tuple[Symbol, ...] = ()
    imports: tuple[ImportedSymbol, ...] = ()
    version_definitions: tuple[str, ...] = ()
    version_needs: tuple[VersionNeed, ...] = ()
    comments: tuple[str, ...] = ()
    pe: PEInfo | None = None
    relib: RelibInfo | None = None
    hazards: Hazards = field(default_factory=Hazards)

    def export_names(self) -> frozenset[str]:
        """Names of every exported symbol (PE: named exports)."""
        if self.pe is not None:
            return frozenset(e.name for e in self.pe.exports if e.name)
        return frozenset(s.name for s in self.exports)

    def find_export(self, name: str) -> Symbol | None:
        for s in self.exports:
            if s.name == name:
                return s
        return None
