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
    "DebugType",
    "DebugField",
    "DebugParam",
    "DebugSignature",
    "DebugInfo",
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

    ``kind``: ``func``, ``object``, ``tls``, ``ifunc``, ``common``, ``notype``
    (PE: ``func`` or ``object`` by the section the address lies in, or
    ``forwarder``); ``binding``: ``global``, ``weak``, ``gnu_unique``;
    ``visibility``: ``default``, ``protected``. ``version`` is the symbol
    version name (``None`` when unversioned); ``default_version`` is false for
    hidden (``@``, not ``@@``) versions. ``value`` is the address relative to
    the load base (ELF ``st_value``, PE RVA); ``ordinal`` is the PE export
    ordinal (``None`` for ELF). PE exports without a name are only in
    :attr:`PEInfo.exports`.
    """

    name: str
    kind: str
    binding: str
    visibility: str
    size: int
    value: int
    version: str | None = None
    default_version: bool = True
    ordinal: int | None = None


@dataclass(frozen=True)
class ImportedSymbol(_ToDict):
    """An undefined symbol the library needs from elsewhere.

    ``version`` is the required version name, ``version_file`` the library the
    version requirement names (``libc.so.6``), ``weak`` true for weak references
    (which may stay unresolved). ``library``: the library the reference is
    bound to by the file itself (PE: its DLL; ELF: ``None``, bound by the
    lookup scope); ``ordinal``: a PE import by ordinal, whose ``name`` is
    then ``#<ordinal>``. A PE import's ``kind`` is ``notype`` (the table does
    not say).
    """

    name: str
    kind: str
    weak: bool
    version: str | None = None
    version_file: str | None = None
    library: str | None = None
    ordinal: int | None = None


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
    (Rust ``thread_local!`` with destructors) or libstdc++'s
    ``__cxa_thread_atexit`` (C++ ``thread_local``), which pins it while threads
    that touched it are alive. ``exec_stack``: index of the ``PT_GNU_STACK``
    program header that asks for an executable stack (``-z execstack``), or
    ``None``; glibc 2.41+ refuses to ``dlopen`` such a library.
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
    exec_stack: int | None = None

    @property
    def blocks_unload(self) -> bool:
        """True when glibc will never unmap the library after ``dlclose``."""
        return self.nodelete or bool(self.gnu_unique)


@dataclass(frozen=True)
class DebugField(_ToDict):
    """A member of a struct or union read from DWARF: ``offset`` in bytes
    from the start of the aggregate (``None`` for a bit-field without one)."""

    name: str | None
    offset: int | None
    type: DebugType


@dataclass(frozen=True)
class DebugType(_ToDict):
    """A type as the DWARF describes it, with typedefs and qualifiers looked through.

    ``kind``: ``void``, ``bool``, ``signed``, ``unsigned``, ``char``,
    ``float``, ``pointer``, ``function-pointer``, ``struct``, ``union``,
    ``enum``, ``array`` or ``unknown``. ``size`` in bytes (``None`` when the
    DWARF does not say, e.g. an incomplete struct). ``name`` is the spelling
    (``int``, ``i32``, ``*mut bool``, ``struct sig_span``; the typedef's name
    when one was looked through, in ``typedef``). ``target`` is what a
    pointer points to (expanded less deep than a member, so a linked list
    ends) or an array's element; ``fields`` the members of a struct/union (down to a bounded
    depth: ``truncated`` says they were cut). Rust's ``MaybeUninit<T>``,
    ``ManuallyDrop<T>`` and ``MaybeDangling<T>`` wrappers, which have
    ``T``'s ABI, are unwrapped.
    """

    name: str
    kind: str
    size: int | None
    fields: tuple[DebugField, ...] = ()
    target: DebugType | None = None
    typedef: str | None = None
    truncated: bool = False


@dataclass(frozen=True)
class DebugParam(_ToDict):
    """A formal parameter: ``name`` is ``None`` where the DWARF has none
    (the parameters of a function-pointer type)."""

    name: str | None
    type: DebugType


@dataclass(frozen=True)
class DebugSignature(_ToDict):
    """The signature of one exported function or import slot, from DWARF.

    ``role``: ``relib-export`` (a ``__relib__`` trait function),
    ``relib-entry`` (``main``, ``before_unload``), ``relib-import`` (an import
    slot: a function-pointer static the host fills), ``relib-post`` (a
    ``__post`` companion function or slot), ``function`` (any other
    exported function) or ``variable`` (an exported data object: ``returns``
    is its type, there are no ``params``). ``params``/``returns`` are as compiled, including
    relib's leading success or out-pointer (see ``convention``: ``success``
    for ``R f(bool *success, ...)``, ``out-pointer`` for ``bool f(R *ret,
    ...)``, ``None`` for a plain C call). ``unit`` names the compile unit.
    """

    symbol: str
    role: str
    returns: DebugType
    params: tuple[DebugParam, ...]
    convention: str | None = None
    unit: str | None = None

    @property
    def value_params(self) -> tuple[DebugParam, ...]:
        """The parameters a caller declares: without relib's leading pointer."""
        return self.params[1:] if self.convention is not None and self.params else self.params

    @property
    def value_return(self) -> DebugType:
        """The value the call produces: the out-pointer's target under
        ``out-pointer``, else the compiled return type."""
        if self.convention == "out-pointer" and self.params and self.params[0].type.target:
            return self.params[0].type.target
        return self.returns


@dataclass(frozen=True)
class DebugInfo(_ToDict):
    """What the DWARF debug information says about a library's interface.

    ``status``: ``ok`` (read), ``absent`` (no ``.debug_info``: built without
    debug info or stripped; ``message`` says so and names a
    ``.gnu_debuglink`` file when there is one) or ``unsupported`` (a format
    this reader does not take DWARF from). ``units_read`` of
    ``units_total`` compile units were parsed: only those holding the
    symbols. ``missing`` lists the symbols no DWARF entry describes (code
    from objects built without ``-g``); ``skipped`` counts exported
    functions left out past the reading bounds (``message`` then says which).
    """

    status: str
    message: str | None = None
    dwarf_version: int | None = None
    signatures: tuple[DebugSignature, ...] = ()
    missing: tuple[str, ...] = ()
    units_read: int = 0
    units_total: int = 0
    skipped: int = 0

    def find(self, symbol: str) -> DebugSignature | None:
        """The signature of ``symbol``, or ``None``."""
        for sig in self.signatures:
            if sig.symbol == symbol:
                return sig
        return None


@dataclass(frozen=True)
class LibraryInfo(_ToDict):
    """Everything :func:`relib_pure.inspect` reads from a library file.

    ``format`` is ``elf`` or ``pe``; ``machine`` a normalised architecture name
    (``x86_64``, ``aarch64``, ``i386``, ``arm``, ...); ``bits`` 32 or 64;
    ``endianness`` ``little`` or ``big``; ``os`` the target OS (``linux`` for
    ELF System V/GNU ABI, ``windows`` for PE). ``sha256`` is of the whole file
    (``""`` for a file over 1 GiB, ``relib_pure.inspection.MAX_HASHED_SIZE``,
    which is not hashed).
    ``elf_type`` is ``DYN`` for shared libraries (``None`` for PE).
    ``dynamic_flags`` / ``dynamic_flags_1`` list names like ``BIND_NOW``,
    ``NOW``, ``NODELETE``. ``comments`` are the ``.comment`` strings.
    ``debug`` holds the signatures read from DWARF, ``None`` until they are
    read (``inspect(path, signatures=True)``).
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
    debug: DebugInfo | None = None

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
