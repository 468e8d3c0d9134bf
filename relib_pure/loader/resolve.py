"""Resolvability before load: the ``ldd -r`` question, answered without loading.

:func:`resolve` walks the NEEDED closure breadth-first, finding each library
as glibc's loader would (:mod:`relib_pure.loader.search`), then checks what
the loader checks before the library may run:

- every version a loaded object requires from a dependency
  (``.gnu.version_r``) is defined by that dependency (else "version `X' not
  found");
- every undefined non-weak symbol of every object in the closure is defined
  by some object in the lookup scope (the library, then its dependencies
  breadth-first) with a matching version (else "undefined symbol").

Dependencies are inspected with :func:`relib_pure.inspect` and cached per
(device, inode, mtime, size): libc is read once per process, not once per
check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relib_pure.inspection import elfhead
from relib_pure.loader.search import (Located, LoaderConfig, Requester, find_library,
                                      interpreter, loaded_objects)
from relib_pure.errors import RelibError
from relib_pure.model import LibraryInfo, Symbol

__all__ = ["Resolution", "Undefined", "VersionProblem", "resolve", "locate_closure",
           "inspect_cached", "clear_cache"]

logger = logging.getLogger(__name__)

Inspector = Callable[[str], LibraryInfo]

#: symbol indexes kept (as many as the inspection cache holds)
_INDEXES_MAX = 256


def inspect_cached(path: str) -> LibraryInfo:
    """:func:`relib_pure.inspect` of ``path`` through the package's one inspection cache
    (:mod:`relib_pure.inspection.cache`, keyed by the file's identity)."""
    from relib_pure.inspection.cache import inspect_identified

    return inspect_identified(path)[0]


def clear_cache() -> None:
    """Forget the symbol indexes built from inspected dependencies (and the inspections)."""
    from relib_pure.inspection import cache as inspections

    inspections.clear()
    _INDEXES.clear()
    _GLOBAL.clear()
    _MERGED.clear()


@dataclass(frozen=True)
class Undefined:
    """An undefined non-weak symbol nobody in scope defines."""

    name: str
    version: str | None
    required_by: str


@dataclass(frozen=True)
class VersionProblem:
    """A required symbol version the named dependency does not define.

    ``no_version_info``: the dependency defines no versions at all (glibc only
    warns "no version information available").
    """

    file: str
    version: str | None
    required_by: str
    provider: str
    no_version_info: bool = False


@dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve` for one library.

    ``libraries``: every NEEDED lookup in breadth-first order (found or
    not; each name once per requester); ``scope``: the paths of the lookup
    scope in order (the library first); ``unreadable``: dependencies that
    could not be inspected, with the reason; ``global_scope``: the paths of
    this process's main program (or of the ``host_program``) and its closure,
    whose definitions count too (empty without ``include_loaded``);
    ``assumed``: undefined symbols left to a host that could not be read.
    """

    path: str
    libraries: tuple[Located, ...]
    scope: tuple[str, ...]
    undefined: tuple[Undefined, ...] = ()
    version_problems: tuple[VersionProblem, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()
    symbols_checked: int = 0
    global_scope: tuple[str, ...] = ()
    assumed: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[Located, ...]:
        return tuple(lib for lib in self.libraries if lib.path is None)

    @property
    def found(self) -> dict[str, str]:
        """NEEDED name -> path, for the names that were found (first hit)."""
        out: dict[str, str] = {}
        for lib in self.libraries:
            if lib.path is not None:
                out.setdefault(lib.name, lib.path)
        return out

    @property
    def ok(self) -> bool:
        return not (self.missing or self.undefined
                    or any(not p.no_version_info for p in self.version_problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "libraries": [{"name": lib.name, "path": lib.path, "how": lib.how,
                           "required_by": lib.required_by} for lib in self.libraries],
            "undefined": [u.__dict__.copy() for u in self.undefined],
            "version_problems": [v.__dict__.copy() for v in self.version_problems],
            "unreadable": [list(u) for u in self.unreadable],
        }


@dataclass
class _Node:
    info: LibraryInfo
    requester: Requester
    names: set[str] = field(default_factory=set)   # names it was requested by / soname


def _requester(info: LibraryInfo, parent: Requester | None) -> Requester:
    return Requester(path=info.path, rpath=info.rpath, runpath=info.runpath,
                     nodeflib="NODEFLIB" in info.dynamic_flags_1,
                     ident=elfhead.read_ident(info.path), machine=info.machine,
                     bits=info.bits, parent=parent)


def resolve(info: LibraryInfo, *, ld_library_path: str | None = None,
            include_loaded: bool = True, config: LoaderConfig | None = None,
            inspector: Inspector | None = None, host_program: str | None = None,
            global_scope: bool = True,
            assume_host: Callable[[str], bool] | None = None) -> Resolution:
    """Find the NEEDED closure of ``info`` and check symbols and versions.

    ``ld_library_path`` stands for ``$LD_LIBRARY_PATH`` (``None``: the
    environment's value); ``include_loaded`` lets objects already mapped in
    this process satisfy a name by SONAME, as they would for a ``dlopen``
    here, and symbols of the main program's closure (the global scope) count
    as defined (turn it off to compare with ``ldd``, which starts a fresh
    process). ``host_program`` names another program whose closure is the
    global scope instead (the interpreter a Python extension is built for):
    its libraries also satisfy the library's NEEDED entries by name, so a
    NEEDED ``libpython3.X.so`` is that interpreter's; ``global_scope=False``
    leaves every program's scope out. ``assume_host`` marks
    undefined symbols a host that could not be read is trusted to provide:
    they are counted in ``assumed``, not reported.
    """
    inspector = inspector or inspect_cached
    config = config or LoaderConfig.detect()
    if ld_library_path is None:
        ld_library_path = os.environ.get("LD_LIBRARY_PATH", "")
    loaded = _loaded(include_loaded)
    program = host_program or ("/proc/self/exe" if include_loaded else None)
    scope = (_global_scope(program, ld_library_path, loaded, config, inspector)
             if program and global_scope else [])
    if host_program:
        loaded = {**loaded, **{name: g.path for g in scope
                               for name in (g.soname, os.path.basename(g.path)) if name}}
    nodes, located, unreadable = _closure(info, ld_library_path, loaded, config, inspector)
    version_problems = _check_versions(nodes)
    undefined, checked = _check_symbols(nodes, scope)
    assumed: tuple[str, ...] = ()
    if assume_host is not None:
        assumed = tuple(u.name for u in undefined if assume_host(u.name))
        undefined = [u for u in undefined if not assume_host(u.name)]
    return Resolution(info.path, tuple(located), tuple(n.info.path for n in nodes),
                      tuple(undefined), tuple(version_problems), tuple(unreadable), checked,
                      tuple(g.path for g in scope), assumed)


def _loaded(include_loaded: bool) -> dict[str, str]:
    """Names a NEEDED entry matches without a search: this process's objects
    (with ``include_loaded``) and always the dynamic loader, which is in every
    process under its PT_INTERP name and matches by its SONAME."""
    loaded = loaded_objects() if include_loaded else {}
    interp = interpreter()
    if interp:
        soname = elfhead.read_soname(interp)
        if soname:
            loaded = {**loaded, soname: interp}
    return loaded


def locate_closure(info: LibraryInfo, *, ld_library_path: str | None = None,
                   include_loaded: bool = False, config: LoaderConfig | None = None,
                   inspector: Inspector | None = None
                   ) -> tuple[tuple[Located, ...], tuple[tuple[str, str], ...]]:
    """Every NEEDED lookup of the closure of ``info``, breadth-first (each
    name once per requester), and the dependencies that could not be read;
    no symbol checks. By default as a fresh process (``ldd``) would see it."""
    if ld_library_path is None:
        ld_library_path = os.environ.get("LD_LIBRARY_PATH", "")
    _, located, unreadable = _closure(info, ld_library_path, _loaded(include_loaded),
                                      config or LoaderConfig.detect(),
                                      inspector or inspect_cached)
    return tuple(located), tuple(unreadable)


def _closure(info: LibraryInfo, ld_library_path: str, loaded: dict[str, str],
             config: LoaderConfig, inspector: Inspector
             ) -> tuple[list[_Node], list[Located], list[tuple[str, str]]]:
    """The NEEDED closure of ``info``: nodes, every lookup, unreadable dependencies."""
    root = _Node(info, _requester(info, None))
    if info.soname:
        root.names.add(info.soname)
    nodes: list[_Node] = [root]
    by_path: dict[str, _Node] = {os.path.realpath(info.path): root}
    located: list[Located] = []
    unreadable: list[tuple[str, str]] = []
    failed: set[str] = set()
    # Breadth-first, each object once, as _dl_map_object_deps builds l_searchlist.
    queue = 0
    while queue < len(nodes):
        node = nodes[queue]
        queue += 1
        for name in node.info.needed:
            hit = _already(name, nodes)
            if hit is not None:
                located.append(Located(name, hit.info.path, "scope", node.info.path))
                hit.names.add(name)
                continue
            loc = find_library(name, node.requester, ld_library_path=ld_library_path,
                               loaded=loaded, config=config)
            located.append(loc)
            if loc.path is None:
                continue
            real = os.path.realpath(loc.path)
            if real in by_path:
                by_path[real].names.add(name)
                continue
            if real in failed:
                continue
            try:
                dep = inspector(loc.path)
            except (RelibError, OSError) as e:
                logger.info("cannot inspect dependency %s: %s", loc.path, e)
                unreadable.append((loc.path, str(e)))
                failed.add(real)
                continue
            child = _Node(dep, _requester(dep, node.requester), {name})
            if dep.soname:
                child.names.add(dep.soname)
            nodes.append(child)
            by_path[real] = child
    return nodes, located, unreadable


_GLOBAL: dict[tuple[object, ...], list[LibraryInfo]] = {}


def _global_scope(program: str, ld_library_path: str, loaded: dict[str, str],
                  config: LoaderConfig, inspector: Inspector) -> list[LibraryInfo]:
    """The objects of a process's global lookup scope: the main ``program``
    and its NEEDED closure, which every ``dlopen``ed library binds against
    first (a Python extension's ``Py*`` references resolve there, not in its
    own NEEDED list). Empty when the program cannot be inspected (a non-PIE
    executable, for instance): only the library's own closure then counts.
    """
    exe = os.path.realpath(program)
    try:
        st = os.stat(exe)
    except OSError:
        return []
    key = (exe, st.st_ino, st.st_mtime_ns, ld_library_path, config)
    hit = _GLOBAL.get(key)
    if hit is not None:
        return hit
    main: LibraryInfo | None
    try:
        main = inspector(exe)
    except (RelibError, OSError) as e:
        logger.debug("global scope: cannot inspect %s: %s", exe, e)
        main = None
    scope = ([n.info for n in _closure(main, ld_library_path, loaded, config, inspector)[0]]
             if main is not None else [])
    if len(_GLOBAL) >= 4:  # this interpreter and a few target ones
        _GLOBAL.pop(next(iter(_GLOBAL)))
    _GLOBAL[key] = scope
    return scope


def _already(name: str, nodes: list[_Node]) -> _Node | None:
    for n in nodes:
        if name in n.names:
            return n
    return None


def _check_versions(nodes: list[_Node]) -> list[VersionProblem]:
    problems = []
    for node in nodes:
        for need in node.info.version_needs:
            provider = _already(need.file, nodes)
            if provider is None:
                continue  # the NEEDED lookup already failed (or it is not NEEDED)
            defined = set(provider.info.version_definitions)
            if not defined:
                problems.append(VersionProblem(need.file, None, node.info.path,
                                               provider.info.path, no_version_info=True))
                continue
            for version in need.versions:
                if version not in defined:
                    problems.append(VersionProblem(need.file, version, node.info.path,
                                                   provider.info.path))
    return problems


_INDEXES: dict[int, tuple[LibraryInfo, dict[str, list[Symbol]]]] = {}


def _index(info: LibraryInfo) -> dict[str, list[Symbol]]:
    """Exports by name; kept for the cached dependencies (libc has thousands)."""
    hit = _INDEXES.pop(id(info), None)
    if hit is not None and hit[0] is info:
        # least recently used goes first: a batch of checks indexes every
        # library once, and must not push libc's index out each 256 files
        _INDEXES[id(info)] = hit
        return hit[1]
    out: dict[str, list[Symbol]] = {}
    for s in info.exports:
        out.setdefault(s.name, []).append(s)
    if len(_INDEXES) >= _INDEXES_MAX:
        _INDEXES.pop(next(iter(_INDEXES)))
    # holding ``info`` keeps its id from being reused by another object
    _INDEXES[id(info)] = (info, out)
    return out


def _defines(candidates: list[Symbol], version: str | None) -> bool:
    for s in candidates:
        if version is None:
            # an unversioned reference binds the default (non-hidden) definition
            if s.version is None or s.default_version:
                return True
        elif s.version is None or s.version == version:
            return True
    return False


_MERGED: dict[int, tuple[list[LibraryInfo], dict[str, list[Symbol]]]] = {}


def _merged_index(scope: list[LibraryInfo]) -> dict[str, list[Symbol]]:
    """One index over every object of a global scope (the same list object
    for every check in a process, so it is merged once)."""
    hit = _MERGED.get(id(scope))
    if hit is not None and hit[0] is scope:
        return hit[1]
    out: dict[str, list[Symbol]] = {}
    for info in scope:
        for name, symbols in _index(info).items():
            out.setdefault(name, []).extend(symbols)
    if len(_MERGED) >= 4:
        _MERGED.pop(next(iter(_MERGED)))
    _MERGED[id(scope)] = (scope, out)
    return out


def _check_symbols(nodes: list[_Node], scope: list[LibraryInfo]) -> tuple[list[Undefined], int]:
    """Undefined non-weak symbols of ``nodes`` that neither they nor the
    global ``scope`` define."""
    # The checked library itself comes last and is indexed only when some
    # reference is defined nowhere else: it is new in every check of a batch,
    # its dependencies (and their indexes) are cached.
    indexes = ([_merged_index(scope)] if scope else []) + [_index(n.info) for n in nodes[1:]]
    root_index: dict[str, list[Symbol]] | None = None
    undefined = []
    checked = 0
    for node in nodes:
        for imp in node.info.imports:
            if imp.weak:
                continue
            checked += 1
            name, version = imp.name, imp.version
            # plain loops: this runs for every reference of every library in a batch
            for ix in indexes:
                candidates = ix.get(name)
                if candidates is not None and _defines(candidates, version):
                    break
            else:
                if root_index is None:
                    root_index = _own_index(nodes[0].info)
                candidates = root_index.get(name)
                if candidates is None or not _defines(candidates, version):
                    undefined.append(Undefined(name, version, node.info.path))
    return undefined, checked


def _own_index(info: LibraryInfo) -> dict[str, list[Symbol]]:
    """Exports by name, not kept (the library under check is seen once)."""
    out: dict[str, list[Symbol]] = {}
    for s in info.exports:
        out.setdefault(s.name, []).append(s)
    return out
