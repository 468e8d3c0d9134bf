"""The relib part of a library, independent of ELF or PE.

Two pure functions shared by the ELF and PE readers:

- :func:`decode_compilation_info` turns relib's ``|``-separated compilation
  info string (``shared/relib-abi.md`` §2.1) into a
  :class:`~relib_pure.model.CompilationInfo`;
- :func:`classify_relib_symbols` sorts a library's defined symbol names into
  relib's public exports, import slots, internal symbols and libc hooks (§1).
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from relib_pure import abi
from relib_pure.errors import InspectionError
from relib_pure.model import CompilationInfo, RelibFunction, RelibInfo

__all__ = ["decode_compilation_info", "classify_relib_symbols", "is_relib_symbol",
           "MAX_COMPILATION_INFO_LEN", "RELIB_PREFIXES"]

#: A compilation-info string longer than this is a corrupt length field (the
#: real one is about 70 bytes).
MAX_COMPILATION_INFO_LEN = 4096

#: ``str.startswith`` argument matching relib's own symbol names
RELIB_PREFIXES = (abi.PUBLIC_PREFIX, abi.COMPILATION_INFO_SYMBOL)
_EXPORTIFY = frozenset({"main", "before_unload"})


def decode_compilation_info(raw: str, source: str) -> CompilationInfo:
    """Decode ``raw`` (e.g. ``1.95.0 (...)|x86_64-unknown-linux-gnu|22.1.2|0.7.0|1``).

    ``source`` says how the string was found (``rela``, ``in-place``,
    ``pe-basereloc``, ``runtime``). relib 0.1.x writes 4 fields, 0.2+ five
    (the unloading flag ``0``/``1``); a count that contradicts the relib
    version, or a flag other than ``0``/``1``, raises
    :class:`~relib_pure.errors.InspectionError` (``inspect.malformed``, no
    path: the caller knows the file). An unknown relib version decodes with
    ``generation=None``.
    """
    fields = raw.split("|")
    if len(fields) not in (4, 5):
        raise InspectionError(f"compilation info has {len(fields)} '|'-separated fields, "
                              f"expected 4 or 5: {raw!r}", code="inspect.malformed")
    rustc, triple, llvm, relib_version = fields[:4]
    version = abi.parse_relib_version(relib_version)
    unloading: bool | None = None
    if len(fields) == 5:
        if fields[4] not in ("0", "1"):
            raise InspectionError(f"compilation info unloading flag is {fields[4]!r}, "
                                  f"expected '0' or '1'", code="inspect.malformed")
        unloading = fields[4] == "1"
    if version is not None:
        old = version < (0, 2, 0)
        if old and unloading is not None:
            raise InspectionError(f"relib {relib_version} writes 4 compilation info fields, "
                                  f"found 5: {raw!r}", code="inspect.malformed")
        if not old and unloading is None:
            raise InspectionError(f"relib {relib_version} writes 5 compilation info fields, "
                                  f"found 4: {raw!r}", code="inspect.malformed")
    generation = abi.generation_for(version) if version is not None else None
    return CompilationInfo(raw=raw, rustc_version=rustc, host_triple=triple,
                           llvm_version=llvm, relib_version=relib_version,
                           unloading=unloading,
                           generation=generation.name if generation else None,
                           source=source)


def is_relib_symbol(name: str) -> bool:
    """Whether ``name`` is one of relib's own symbols (not a libc hook)."""
    return name.startswith(RELIB_PREFIXES)


def _split(rest: str) -> tuple[str | None, str]:
    """``Trait_fn`` -> (``Trait``, ``fn``); exportify names have no trait.

    Only the trait's last path segment is in the name and relib's traits are
    CamelCase, so the trait is the text up to the first ``_``.
    """
    if rest in _EXPORTIFY:
        return None, rest
    trait, _, fn = rest.partition("_")
    return (trait, fn) if trait and fn else (None, rest)


def classify_relib_symbols(names: Iterable[str], code_names: Container[str],
                           compilation_info: CompilationInfo | None = None,
                           compilation_info_error: str | None = None) -> RelibInfo:
    """Build :class:`~relib_pure.model.RelibInfo` from the names a library defines.

    ``code_names`` holds the names that are code (ELF ``FUNC``/``IFUNC``, PE
    exports in an executable section): a ``__relib__`` name that is code is a
    public export, any other (an 8-byte function-pointer ``OBJECT``) an import
    slot the host fills. A ``__post`` companion marks the return value as
    boxed. Internal symbols and hooks are listed by full name, sorted.
    """
    all_names = set(names)
    internal_exports: list[str] = []
    internal_imports: list[str] = []
    exports: list[RelibFunction] = []
    imports: list[RelibFunction] = []
    for name in sorted(all_names):
        if name.startswith(abi.INTERNAL_EXPORT_PREFIX):
            internal_exports.append(name)
        elif name.startswith(abi.INTERNAL_IMPORT_PREFIX):
            internal_imports.append(name)
        elif name.startswith(abi.PUBLIC_PREFIX):
            trait, fn = _split(name[len(abi.PUBLIC_PREFIX):])
            post = abi.post_symbol(name)
            boxed = post in all_names
            func = RelibFunction(symbol=name, trait=trait, name=fn, boxed=boxed,
                                 post_symbol=post if boxed else None)
            (exports if name in code_names else imports).append(func)
    main = abi.public_symbol(None, "main")
    before_unload = abi.public_symbol(None, "before_unload")
    return RelibInfo(
        compilation_info=compilation_info,
        compilation_info_error=compilation_info_error,
        has_main=main in all_names and main in code_names,
        has_before_unload=before_unload in all_names and before_unload in code_names,
        exports=tuple(exports),
        imports=tuple(imports),
        internal_exports=tuple(internal_exports),
        internal_imports=tuple(internal_imports),
        hooks=tuple(sorted(n for n in all_names if n in abi.HOOK_SYMBOLS)),
    )
