"""What changed between two builds of a library, and whether it breaks a host built for the old one.

:func:`diff_libraries` compares two inspection models (with their DWARF
signatures when both have them) and returns a :class:`LibraryDiff` of
:class:`~relib_pure.compat.report.Finding` values in the ``diff`` namespace.
Severity is the verdict for a host built against OLD: ``error`` breaks it
(it calls something that is gone, passes what no longer fits, or relib's
load refuses the module), ``warning`` may (a new dependency or hazard),
``info`` does not (additions).

For a relib module the relib part is compared as relib sees it: public
exports and import slots by function, the ``__post`` boxing, the
compilation info (relib's host refuses a module whose compilation info
differs from its own) and the protocol generation; relib's internal symbols
and libc hooks follow the generation and are not listed one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from relib_pure import abi
from relib_pure.compat.report import SEVERITIES, Finding, sort_findings
from relib_pure.compat.signatures import debug_leaves
from relib_pure.model import DebugSignature, DebugType, Hazards, LibraryInfo

__all__ = ["diff_libraries", "LibraryDiff"]

_HAZARD_FLAGS = ("nodelete", "static_tls", "thread_atexit", "textrel", "exec_stack")


@dataclass(frozen=True)
class LibraryDiff:
    """The changes from ``old`` to ``new`` (paths), errors first."""

    old: str
    new: str
    changes: tuple[Finding, ...]

    @property
    def breaking(self) -> bool:
        """True when a change breaks a host built for the old library."""
        return any(c.severity == "error" for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        """The ``relib-pure diff --json`` shape (``schemas/diff.json``)."""
        return {"version": 1, "old": self.old, "new": self.new, "breaking": self.breaking,
                "counts": {s: sum(1 for c in self.changes if c.severity == s)
                           for s in SEVERITIES},
                "changes": [c.to_dict() for c in self.changes]}


def diff_libraries(old: LibraryInfo, new: LibraryInfo) -> LibraryDiff:
    """Compare two inspected builds (read their ``debug`` first for signatures)."""
    out: list[Finding] = []
    out.extend(_platform(old, new))
    relib = _is_relib(old) or _is_relib(new)
    if relib:
        out.extend(_relib(old, new))
    out.extend(_exports(old, new, relib))
    out.extend(_imports(old, new, relib))
    out.extend(_signatures(old, new))
    out.extend(_needed(old, new))
    out.extend(_versions(old, new))
    out.extend(_hazards(old.hazards, new.hazards))
    return LibraryDiff(old.path, new.path, sort_findings(out))


def _is_relib(info: LibraryInfo) -> bool:
    return info.relib is not None and info.relib.compilation_info is not None


def _names(items: Iterable[str], limit: int = 6) -> str:
    shown = list(items)
    text = ", ".join(shown[:limit])
    return text + (f" (+{len(shown) - limit} more)" if len(shown) > limit else "")


# -- platform and relib ------------------------------------------------------------------


def _platform(old: LibraryInfo, new: LibraryInfo) -> list[Finding]:
    out = []
    for attr in ("format", "machine", "bits", "endianness", "os"):
        a, b = getattr(old, attr), getattr(new, attr)
        if a != b:
            out.append(Finding("diff.platform-changed", "error",
                               f"{attr} changed from {a} to {b}",
                               {"field": attr, "old": a, "new": b}))
    if old.soname != new.soname:
        out.append(Finding("diff.soname-changed", "warning",
                           f"soname changed from {old.soname} to {new.soname}: programs linked "
                           "against the old name do not find the new file",
                           {"old": old.soname, "new": new.soname}))
    return out


def _relib(old: LibraryInfo, new: LibraryInfo) -> list[Finding]:
    a = old.relib.compilation_info if old.relib is not None else None
    b = new.relib.compilation_info if new.relib is not None else None
    if a is None or b is None:
        which = "old" if a is None else "new"
        return [Finding("diff.compilation-changed", "error",
                        f"only the {'new' if a is None else 'old'} build is a relib module "
                        f"(the {which} has no compilation info)",
                        {"field": "relib", "old": a.raw if a else None,
                         "new": b.raw if b else None})]
    out = []
    for field, label in (("rustc_version", "rustc"), ("host_triple", "host triple"),
                         ("llvm_version", "LLVM"), ("relib_version", "relib"),
                         ("unloading", "unloading")):
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            out.append(Finding("diff.compilation-changed", "error",
                               f"compilation info: {label} changed from {va} to {vb} (relib's "
                               "host refuses a module whose compilation info is not its own)",
                               {"field": field, "old": va, "new": vb}))
    if a.generation != b.generation:
        out.append(Finding("diff.generation-changed", "error",
                           f"relib protocol generation changed from {a.generation} to "
                           f"{b.generation}", {"old": a.generation, "new": b.generation}))
    return out


# -- symbols -----------------------------------------------------------------------------


def _relib_own(name: str) -> bool:
    """relib's internal symbols and libc hooks: they follow the generation."""
    return name.startswith(abi.INTERNAL_EXPORT_PREFIX) or name.startswith(
        abi.INTERNAL_IMPORT_PREFIX) or name in abi.HOOK_SYMBOLS or name == \
        abi.COMPILATION_INFO_SYMBOL


def _slots(info: LibraryInfo) -> set[str]:
    return {f.symbol for f in info.relib.imports} if info.relib is not None else set()


def _exports(old: LibraryInfo, new: LibraryInfo, relib: bool) -> list[Finding]:
    def table(info: LibraryInfo) -> dict[str, tuple[str, int, str | None]]:
        if info.pe is not None:
            return {e.name: ("func", 0, None) for e in info.pe.exports if e.name}
        skip = _slots(info) if relib else set()
        # the linker's absolute symbols naming version definitions are not API
        skip |= {s.name for s in info.exports
                 if s.name in info.version_definitions and s.value == 0 and s.size == 0}
        return {s.name: (s.kind, s.size, s.version) for s in info.exports
                if s.name not in skip and not (relib and (_relib_own(s.name) or s.name.startswith(
                    abi.POST_PREFIX + abi.PUBLIC_PREFIX)))}
    a, b = table(old), table(new)
    out = []
    removed = sorted(set(a) - set(b))
    added = sorted(set(b) - set(a))
    if removed:
        out.append(Finding("diff.export-removed", "error",
                           f"{len(removed)} export(s) removed: {_names(removed)}",
                           {"symbols": removed}))
    if added:
        out.append(Finding("diff.export-added", "info",
                           f"{len(added)} export(s) added: {_names(added)}", {"symbols": added}))
    for name in sorted(set(a) & set(b)):
        (kind_a, size_a, ver_a), (kind_b, size_b, ver_b) = a[name], b[name]
        if kind_a != kind_b:
            out.append(Finding("diff.export-kind-changed", "error",
                               f"{name} changed from {kind_a} to {kind_b}",
                               {"symbol": name, "old": kind_a, "new": kind_b}))
        elif kind_a in ("object", "tls") and size_a != size_b:
            # a copy relocation in an executable reserved the old size
            out.append(Finding("diff.object-size-changed", "error",
                               f"{name}: data object size changed from {size_a} to {size_b} "
                               "bytes", {"symbol": name, "old": size_a, "new": size_b}))
        if ver_a != ver_b and ver_a is not None:
            out.append(Finding("diff.symbol-version-changed", "error",
                               f"{name}: symbol version changed from {ver_a} to {ver_b}: "
                               f"binaries bound to {name}@{ver_a} no longer find it",
                               {"symbol": name, "old": ver_a, "new": ver_b}))
    if relib:
        out.extend(_boxing(old, new))
    return out


def _boxing(old: LibraryInfo, new: LibraryInfo) -> list[Finding]:
    assert old.relib is not None and new.relib is not None
    a = {f.symbol: f.boxed for f in (*old.relib.exports, *old.relib.imports)}
    b = {f.symbol: f.boxed for f in (*new.relib.exports, *new.relib.imports)}
    return [Finding("diff.boxing-changed", "error",
                    f"{s}: the return value is {'now' if b[s] else 'no longer'} boxed "
                    f"({abi.post_symbol(s)} {'added' if b[s] else 'removed'})",
                    {"symbol": s, "old": a[s], "new": b[s]})
            for s in sorted(set(a) & set(b)) if a[s] != b[s]]


def _imports(old: LibraryInfo, new: LibraryInfo, relib: bool) -> list[Finding]:
    out = []
    if relib:
        a, b = _slots(old), _slots(new)
        added = sorted(b - a)
        removed = sorted(a - b)
        if added:
            out.append(Finding("diff.import-added", "error",
                               f"{len(added)} import slot(s) added, which a host built for the "
                               f"old module does not fill: {_names(added)}",
                               {"symbols": added, "relib": True}))
        if removed:
            out.append(Finding("diff.import-removed", "error",
                               f"{len(removed)} import slot(s) removed, which a host built for "
                               f"the old module writes: {_names(removed)}",
                               {"symbols": removed, "relib": True}))
    ua = {s.name for s in old.imports}
    ub = {s.name for s in new.imports}
    if relib:
        ua = {n for n in ua if not _relib_own(n)}
        ub = {n for n in ub if not _relib_own(n)}
    if ub - ua:
        added = sorted(ub - ua)
        out.append(Finding("diff.import-added", "info",
                           f"{len(added)} undefined symbol(s) now referenced: {_names(added)}",
                           {"symbols": added, "relib": False}))
    if ua - ub:
        removed = sorted(ua - ub)
        out.append(Finding("diff.import-removed", "info",
                           f"{len(removed)} undefined symbol(s) no longer referenced: "
                           f"{_names(removed)}", {"symbols": removed, "relib": False}))
    return out


# -- signatures --------------------------------------------------------------------------


def _signatures(old: LibraryInfo, new: LibraryInfo) -> list[Finding]:
    if old.debug is None or new.debug is None:
        return []
    if old.debug.status != "ok" or new.debug.status != "ok":
        return [Finding("diff.signatures-unavailable", "info",
                        "signatures not compared: " + "; ".join(
                            f"{label}: {d.message or d.status}"
                            for label, d in (("old", old.debug), ("new", new.debug))
                            if d.status != "ok"),
                        {"old": old.debug.status, "new": new.debug.status})]
    out = []
    b = {s.symbol: s for s in new.debug.signatures}
    for sa in old.debug.signatures:
        sb = b.get(sa.symbol)
        if sb is None:
            continue
        if "variable" in (sa.role, sb.role):
            if sa.role == sb.role and None not in (sa.returns.size, sb.returns.size) and \
                    sa.returns.size != sb.returns.size:
                continue  # diff.object-size-changed says it, from the symbol table
            why = _type_change(sa.returns, sb.returns) if sa.role == sb.role else \
                f"a {sa.role} became a {sb.role}"
            if why:
                # a host reading the variable reads it with the old type
                out.append(Finding("diff.variable-type-changed", "error",
                                   f"{sa.symbol}: {why}",
                                   {"symbol": sa.symbol, "changes": [why],
                                    "old": _signature_text(sa), "new": _signature_text(sb)}))
            continue
        changes = _signature_changes(sa, sb)
        if changes:
            out.append(Finding("diff.signature-changed", "error",
                               f"{sa.symbol}: {'; '.join(changes)}",
                               {"symbol": sa.symbol, "changes": changes,
                                "old": _signature_text(sa), "new": _signature_text(sb)}))
    return out


def _signature_changes(a: DebugSignature, b: DebugSignature) -> list[str]:
    pa, pb = a.value_params, b.value_params
    changes = []
    if len(pa) != len(pb):
        changes.append(f"{len(pa)} parameter(s) became {len(pb)} "
                       f"({_params_text(pa)} -> {_params_text(pb)})")
    for i, (x, y) in enumerate(zip(pa, pb), 1):
        why = _type_change(x.type, y.type)
        if why:
            label = f"parameter {i} {x.name!r}" if x.name else f"parameter {i}"
            changes.append(f"{label}: {why}")
    why = _type_change(a.value_return, b.value_return)
    if why:
        changes.append(f"return: {why}")
    return changes


def _type_change(a: DebugType, b: DebugType) -> str | None:
    la, lb = debug_leaves(a), debug_leaves(b)
    if la is not None and lb is not None and la != lb:
        inside = _member_change(a, b)
        return f"{_type_text(a)} became {_type_text(b)}" + (f" ({inside})" if inside else "")
    if a.kind == b.kind == "pointer" and a.target is not None and b.target is not None:
        # what the callee reads through the pointer changed (a struct grew...)
        ta, tb = debug_leaves(a.target), debug_leaves(b.target)
        if ta is not None and tb is not None and ta != tb:
            return (f"the pointed-to {_type_text(a.target)} became "
                    f"{_type_text(b.target)}")
    return None


def _member_change(a: DebugType, b: DebugType, depth: int = 0) -> str | None:
    """Where two aggregates of the same kind first differ: a member's name or type."""
    if a.kind != b.kind or a.kind not in ("struct", "union") or a.fields is None or \
            b.fields is None or depth > 4:
        return None
    for i, (x, y) in enumerate(zip(a.fields, b.fields), 1):
        label = f"member {x.name!r}" if x.name else f"member {i}"
        if x.name != y.name:
            return f"{label} became {y.name!r}"
        lx, ly = debug_leaves(x.type), debug_leaves(y.type)
        if lx is not None and ly is not None and lx != ly:
            inner = _member_change(x.type, y.type, depth + 1)
            return f"{label}: {inner}" if inner else \
                f"{label}: {_type_text(x.type)} became {_type_text(y.type)}"
    if len(a.fields) != len(b.fields):
        return f"{len(a.fields)} member(s) became {len(b.fields)}"
    return None


def _type_text(t: DebugType) -> str:
    return f"{t.typedef or t.name} ({t.size if t.size is not None else '?'} bytes)"


def _params_text(params: Iterable[Any]) -> str:
    return ", ".join(p.type.typedef or p.type.name for p in params) or "none"


def _signature_text(sig: DebugSignature) -> str:
    if sig.role == "variable":
        return sig.returns.typedef or sig.returns.name
    return f"({_params_text(sig.value_params)}) -> " \
           f"{sig.value_return.typedef or sig.value_return.name}"


# -- dependencies, versions, hazards -----------------------------------------------------


def _needed(old: LibraryInfo, new: LibraryInfo) -> list[Finding]:
    out = []
    added = [n for n in new.needed if n not in old.needed]
    removed = [n for n in old.needed if n not in new.needed]
    if added:
        out.append(Finding("diff.needed-added", "warning",
                           f"new NEEDED dependency: {_names(added)} (must be found where the "
                           "host runs)", {"libraries": added}))
    if removed:
        out.append(Finding("diff.needed-removed", "info",
                           f"NEEDED dependency dropped: {_names(removed)}",
                           {"libraries": removed}))
    return out


def _versions(old: LibraryInfo, new: LibraryInfo) -> list[Finding]:
    out = []
    gone = [v for v in old.version_definitions if v not in new.version_definitions]
    if gone:
        out.append(Finding("diff.version-removed", "error",
                           f"symbol version definition(s) removed: {_names(gone)}",
                           {"versions": gone}))
    came = [v for v in new.version_definitions if v not in old.version_definitions]
    if came:
        out.append(Finding("diff.version-added", "info",
                           f"symbol version definition(s) added: {_names(came)}",
                           {"versions": came}))
    had = {(n.file, v) for n in old.version_needs for v in n.versions}
    needs = [f"{v} ({f})" for n in new.version_needs for f, v in ((n.file, v) for v in n.versions)
             if (f, v) not in had]
    if needs:
        out.append(Finding("diff.version-need-added", "warning",
                           f"new symbol version requirement(s): {_names(needs)}",
                           {"versions": needs}))
    return out


def _present(h: Hazards, flag: str) -> bool:
    value = getattr(h, flag, None)
    # exec_stack holds a program header index, where 0 is a real one
    return value is not None if flag == "exec_stack" else bool(value)


def _hazards(a: Hazards, b: Hazards) -> list[Finding]:
    out = []
    for flag in _HAZARD_FLAGS:
        va, vb = _present(a, flag), _present(b, flag)
        if va != vb:
            code = "diff.hazard-added" if vb else "diff.hazard-removed"
            out.append(Finding(code, "warning" if vb else "info",
                               f"unload hazard {flag} {'appeared' if vb else 'went away'}",
                               {"hazard": flag}))
    ua, ub = set(a.gnu_unique), set(b.gnu_unique)
    if ub - ua:
        out.append(Finding("diff.hazard-added", "warning",
                           f"new GNU unique symbol(s), which keep the library mapped: "
                           f"{_names(sorted(ub - ua))}", {"hazard": "gnu_unique"}))
    if ua - ub:
        out.append(Finding("diff.hazard-removed", "info",
                           f"GNU unique symbol(s) gone: {_names(sorted(ua - ub))}",
                           {"hazard": "gnu_unique"}))
    return out
