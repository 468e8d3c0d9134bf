"""Interface check: does the library export and import what the host declares?"""

from __future__ import annotations

from relib_pure import abi
from relib_pure.compat.report import Finding
from relib_pure.interface import Function, Interface
from relib_pure.model import LibraryInfo, RelibFunction

__all__ = ["check_interface"]


def _short(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_interface(info: LibraryInfo, interface: Interface | None, exports: tuple[str, ...] = (),
                    imports: tuple[str, ...] = (), *, report_unexpected: bool = True) -> list[Finding]:
    """Diff the declared exports/imports against the library.

    ``exports``/``imports`` are extra names: a symbol, or for a relib module
    also a function's name (``add``, ``Exports_add``, ``Exports::add`` or
    ``Exports.add`` for ``__relib__Exports_add``).
    For relib modules the import side is the set of import slots, and a slot
    the host does not declare is an error (its placeholder aborts the
    process when called); for plain libraries it is the undefined symbols.
    """
    relib = info.relib if info.relib is not None and (info.relib.exports or info.relib.imports) else None
    declared = interface or Interface()
    found: list[Finding] = []

    # -- exports ----------------------------------------------------------
    have_exports = set(info.export_names())
    relib_exports = {f.symbol: f for f in relib.exports} if relib else {}
    want_exports = [(f.symbol, f) for f in declared.exports] + [(n, None) for n in exports]
    missing: list[str] = []
    matched: set[str] = set()
    for symbol, _fn in want_exports:
        hit = _match(symbol, have_exports, relib.exports if relib else ())
        if hit is None:
            missing.append(symbol)
        else:
            matched.add(hit)
    if missing:
        found.append(Finding("interface.missing-export", "error",
                             f"{len(missing)} required export(s) missing: {_short(missing)}",
                             {"missing": missing}))
    if relib and report_unexpected and want_exports:
        traits = {f.trait for f in declared.exports if f.trait}
        extra = [s for s, f in relib_exports.items()
                 if f.trait is not None and s not in matched and (not traits or f.trait in traits)]
        if extra:
            found.append(Finding("interface.unexpected-export", "info",
                                 f"{len(extra)} relib export(s) not declared: {_short(extra)}",
                                 {"unexpected": extra}))

    # -- imports ----------------------------------------------------------
    want_imports = [f.symbol for f in declared.imports] + list(imports)
    if relib:
        have_imports = {f.symbol for f in relib.imports}
        pool: tuple[RelibFunction, ...] = relib.imports
    else:
        have_imports = {s.name for s in info.imports}
        pool = ()
    missing_i: list[str] = []
    matched_i: set[str] = set()
    for symbol in want_imports:
        hit = _match(symbol, have_imports, pool)
        if hit is None:
            missing_i.append(symbol)
        else:
            matched_i.add(hit)
    if missing_i:
        what = "import slot(s)" if relib else "referenced import(s)"
        found.append(Finding("interface.missing-import", "error" if relib else "warning",
                             f"{len(missing_i)} declared {what} not in the library: "
                             f"{_short(missing_i)}", {"missing": missing_i}))
    if relib and report_unexpected and want_imports:
        extra_i = sorted(f.symbol for f in relib.imports if f.symbol not in matched_i)
        if extra_i:
            found.append(Finding("interface.unexpected-import", "error",
                                 f"{len(extra_i)} import slot(s) the host does not provide: "
                                 f"{_short(extra_i)}; an unfilled slot aborts the process when "
                                 "the module calls it", {"unexpected": extra_i}))

    # -- boxing (relib convention B) -----------------------------------------
    if relib:
        found.extend(_boxing(info, declared, relib.exports + relib.imports))
    return found


def _match(symbol: str, have: set[str], relib_funcs: tuple[RelibFunction, ...]) -> str | None:
    """The library symbol a declared name stands for: the symbol itself, or
    for relib functions ``fn`` (when unambiguous), ``Trait_fn``, ``Trait::fn``
    or ``Trait.fn`` (as ``relib-pure inspect`` lists them)."""
    if symbol in have:
        return symbol
    for sep in ("::", ".", "_"):
        trait, found, fn = symbol.partition(sep)
        if found and trait and fn:
            for f in relib_funcs:
                if f.trait == trait and f.name == fn:
                    return f.symbol
    hits = [f.symbol for f in relib_funcs if f.name == symbol]
    return hits[0] if len(hits) == 1 else None


def _boxing(info: LibraryInfo, declared: Interface,
            funcs: tuple[RelibFunction, ...]) -> list[Finding]:
    assert info.relib is not None
    ci = info.relib.compilation_info
    gen = abi.generation_for(ci.relib_version) if ci is not None else None
    if gen is None:
        return []
    by_symbol = {f.symbol: f for f in funcs}
    out = []
    declared_fns: tuple[Function, ...] = declared.exports + declared.imports
    for fn in declared_fns:
        rf = by_symbol.get(fn.symbol)
        if rf is None or fn.rust_return is None:
            continue
        want = abi.type_needs_box(fn.rust_return, gen)
        if want != rf.boxed:
            out.append(Finding(
                "interface.boxing-mismatch", "error",
                f"{fn.symbol}: return type {fn.rust_return!r} is "
                f"{'boxed' if want else 'returned directly'} under relib {gen.name}, but the module "
                f"{'has' if rf.boxed else 'has no'} {abi.post_symbol(fn.symbol)}",
                {"symbol": fn.symbol, "rust_return": fn.rust_return, "declared_boxed": want,
                 "module_boxed": rf.boxed}))
    return out
