"""Where glibc's dynamic loader looks for a NEEDED library (``_dl_map_object``).

Order, for a library requested by object L (glibc 2.36 ``elf/dl-load.c``):

1. a name with a ``/`` is a path (after ``$ORIGIN``/``$LIB``/``$PLATFORM``
   expansion);
2. an object already loaded under that name or SONAME is reused;
3. if L has no DT_RUNPATH: DT_RPATH of L, then of the object that loaded L,
   and so on up the chain (an object with DT_RUNPATH contributes no RPATH);
4. ``LD_LIBRARY_PATH``;
5. DT_RUNPATH of L (only L's own);
6. ``/etc/ld.so.cache`` (skipped entries in system dirs if L is
   ``DF_1_NODEFLIB``);
7. the system directories (skipped if L is ``DF_1_NODEFLIB``).

Directories of steps 3-5 and 7 are tried with the CPU's ``glibc-hwcaps``
subdirectories and legacy hwcap subdirectories first, as ``ld.so --help``
lists them. A candidate of another ELF class or machine is skipped and the
search goes on, as the loader does.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from relib_pure.inspection import elfhead
from relib_pure.loader import ldcache

__all__ = ["LoaderConfig", "Requester", "Located", "find_library", "expand_dst", "loaded_objects",
           "parse_ld_help", "interpreter"]

logger = logging.getLogger(__name__)

_FALLBACK_DIRS = {
    ("x86_64", 64): ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"),
    ("aarch64", 64): ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64"),
    ("i386", 32): ("/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu"),
}


@dataclass(frozen=True)
class LoaderConfig:
    """Facts about the dynamic loader that shape the search.

    ``system_dirs``: the default path (``/lib``, ``/usr/lib`` and the
    multiarch ones); ``hwcaps``: supported ``glibc-hwcaps`` subdirectories,
    best first; ``legacy_subdirs``: legacy hwcap subdirectories, in search
    order; ``platform``: the ``$PLATFORM`` expansion; ``lib``: the ``$LIB``
    expansion; ``cache_path``: the ``ld.so.cache`` to read.
    """

    system_dirs: tuple[str, ...]
    hwcaps: tuple[str, ...] = ()
    legacy_subdirs: tuple[str, ...] = ()
    platform: str = ""
    lib: str = "lib"
    cache_path: str = ldcache.DEFAULT_CACHE_PATH

    @classmethod
    @functools.lru_cache(maxsize=1)
    def detect(cls) -> LoaderConfig:
        """This machine's loader: ``ld.so --help`` of the interpreter's
        PT_INTERP (glibc 2.33+), else built-in multiarch defaults."""
        interp = interpreter()
        text = ""
        if interp:
            try:
                text = subprocess.run([interp, "--help"], capture_output=True, text=True,
                                      timeout=20, check=False).stdout
            except (OSError, subprocess.TimeoutExpired) as e:
                logger.debug("cannot run %s --help: %s", interp, e)
        config = parse_ld_help(text) if text else None
        if config is None or not config.system_dirs:
            import platform as _platform
            machine = _platform.machine()
            bits = 64 if sys.maxsize > 2**32 else 32
            dirs = _FALLBACK_DIRS.get((machine, bits), ()) + ("/lib", "/usr/lib")
            config = cls(system_dirs=dirs, platform=machine, lib=dirs[0].lstrip("/"))
        return config

    def expand_dir(self, directory: str) -> list[str]:
        """The directories actually tried for one search-path entry."""
        out = [os.path.join(directory, "glibc-hwcaps", h) for h in self.hwcaps]
        out += [os.path.join(directory, s) for s in self.legacy_subdirs]
        out.append(directory)
        return out


def parse_ld_help(text: str) -> LoaderConfig | None:
    """Parse ``ld.so --help`` output (pure; unit-testable on stored text)."""
    system: list[str] = []
    hwcaps: list[str] = []
    legacy: list[str] = []
    platform = ""
    section = None
    for line in text.splitlines():
        if line.startswith("Shared library search path"):
            section = "path"
            continue
        if line.startswith("Subdirectories of glibc-hwcaps"):
            section = "hwcaps"
            continue
        if line.startswith("Legacy HWCAP subdirectories"):
            section = "legacy"
            continue
        if not line.startswith("  "):
            section = None
            continue
        item = line.strip()
        m = re.match(r"^(\S+) \((.*)\)$", item)
        if m is None:
            continue
        name, notes = m.group(1), m.group(2)
        if section == "path" and "system search path" in notes:
            system.append(name)
        elif section == "hwcaps" and "searched" in notes:
            hwcaps.append(name)
        elif section == "legacy":
            if "AT_PLATFORM" in notes:
                platform = name
            if "searched" in notes:
                legacy.append(name)
    if not system:
        return None
    return LoaderConfig(system_dirs=tuple(system), hwcaps=tuple(hwcaps),
                        legacy_subdirs=_legacy_order(legacy), platform=platform,
                        lib=system[0].lstrip("/"))


def _legacy_order(names: Sequence[str]) -> tuple[str, ...]:
    """Every combination of the legacy subdirectories, most specific first
    (``tls/haswell/x86_64`` ... ``x86_64``), ``tls`` outermost, as glibc
    2.36's ``_dl_important_hwcaps`` builds them. The bare directory is
    tried by the caller."""
    ordered = ([n for n in names if n == "tls"] + [n for n in names if n != "tls"])
    out = []
    for mask in range((1 << len(ordered)) - 1, 0, -1):
        parts = [ordered[i] for i in range(len(ordered)) if mask & (1 << (len(ordered) - 1 - i))]
        out.append("/".join(parts))
    return tuple(out)


def interpreter() -> str | None:
    """PT_INTERP of the running executable (e.g. ``/lib64/ld-linux-x86-64.so.2``),
    or ``None`` (static or non-ELF interpreter)."""
    return elfhead.read_interp(sys.executable)


_DST_RE = re.compile(r"\$(\{(ORIGIN|LIB|PLATFORM)\}|ORIGIN|LIB|PLATFORM)")


def expand_dst(entry: str, origin: str, config: LoaderConfig) -> str | None:
    """Expand ``$ORIGIN``/``$LIB``/``$PLATFORM`` (and ``${...}``) in one
    path entry; ``None`` when it holds another ``$`` token (glibc drops it)."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(2) or m.group(1)
        return {"ORIGIN": origin, "LIB": config.lib, "PLATFORM": config.platform}[name]
    out = _DST_RE.sub(sub, entry)
    if "$" in out.replace(origin, ""):
        return None
    return out


@dataclass(frozen=True)
class Requester:
    """The object that NEEDs a library, with what the search reads from it.

    ``parent`` is the object that caused this one to be loaded (its RPATH is
    searched too).
    """

    path: str
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    nodeflib: bool = False
    ident: elfhead.ElfIdent | None = None
    machine: str = "x86_64"
    bits: int = 64
    parent: Requester | None = None

    @property
    def origin(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


@dataclass(frozen=True)
class Located:
    """Where a NEEDED name was found (``path`` ``None``: not found).

    ``how``: ``path``, ``loaded``, ``rpath``, ``LD_LIBRARY_PATH``,
    ``runpath``, ``ld.so.cache`` or ``default``; ``searched``: directories
    tried, in order (for messages); ``skipped``: candidates rejected for
    their ELF class or machine.
    """

    name: str
    path: str | None
    how: str | None
    required_by: str
    searched: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())


def _usable(path: str, want: elfhead.ElfIdent | None, skipped: list[str]) -> bool:
    if not os.path.isfile(path):
        return False
    ident = elfhead.read_ident(path)
    if ident is None or (want is not None and not ident.compatible(want)):
        skipped.append(path)
        return False
    return True


def find_library(name: str, requester: Requester, *, ld_library_path: str | None = None,
                 loaded: dict[str, str] | None = None,
                 config: LoaderConfig | None = None) -> Located:
    """Find NEEDED ``name`` of ``requester`` as glibc's loader would.

    ``ld_library_path`` is the ``LD_LIBRARY_PATH`` value (``None``: none);
    ``loaded`` maps names and SONAMEs of already-loaded objects to paths.
    """
    config = config or LoaderConfig.detect()
    searched: list[str] = []
    skipped: list[str] = []

    def result(path: str | None, how: str | None) -> Located:
        return Located(name, path, how, requester.path, tuple(searched), tuple(skipped))

    if "/" in name:
        path = expand_dst(name, requester.origin, config)
        if path is not None and _usable(path, requester.ident, skipped):
            return result(os.path.abspath(path), "path")
        return result(None, None)

    if loaded and name in loaded:
        return result(loaded[name], "loaded")

    def try_dirs(entries: Sequence[str], origin: str, how: str) -> Located | None:
        for entry in entries:
            directory = expand_dst(entry, origin, config) if "$" in entry else entry
            if directory is None:
                continue
            if directory == "":
                directory = "."
            for d in config.expand_dir(directory):
                searched.append(d)
                candidate = os.path.join(d, name)
                if _usable(candidate, requester.ident, skipped):
                    return result(os.path.abspath(candidate), how)
        return None

    if not requester.runpath:
        node: Requester | None = requester
        while node is not None:
            if node.rpath and not node.runpath:
                hit = try_dirs(node.rpath, node.origin, "rpath")
                if hit:
                    return hit
            node = node.parent

    if ld_library_path:
        entries = [e for e in re.split(r"[:;]", ld_library_path)]
        # DSTs in LD_LIBRARY_PATH expand against the main program's directory.
        hit = try_dirs(entries, os.path.dirname(os.path.abspath(sys.executable)),
                       "LD_LIBRARY_PATH")
        if hit:
            return hit

    if requester.runpath:
        hit = try_dirs(requester.runpath, requester.origin, "runpath")
        if hit:
            return hit

    cache = ldcache.load_cache(config.cache_path)
    if cache is not None:
        cached = cache.lookup(name, ldcache.abi_flags(requester.machine, requester.bits),
                              config.hwcaps)
        searched.append(config.cache_path)
        if cached is not None and not (requester.nodeflib and _in_system_dir(cached, config)):
            if _usable(cached, requester.ident, skipped):
                return result(cached, "ld.so.cache")

    if not requester.nodeflib:
        hit = try_dirs(config.system_dirs, requester.origin, "default")
        if hit:
            return hit
    return result(None, None)


def _in_system_dir(path: str, config: LoaderConfig) -> bool:
    parent = os.path.dirname(path)
    return any(parent == d or parent.startswith(d + "/glibc-hwcaps/") for d in config.system_dirs)


_LOADED_MEMO: dict[frozenset[str], dict[str, str]] = {}


def clear_loaded_memo() -> None:
    """Forget the SONAMEs read from the loaded objects (the next check reads them again)."""
    _LOADED_MEMO.clear()


def loaded_objects() -> dict[str, str]:
    """SONAME -> path of the shared objects loaded in this process.

    The loader's own list (``link_map`` chain, :func:`relib_pure.runtime.dl.loaded_paths`):
    what a ``dlopen`` here would match a NEEDED name against, without parsing
    ``/proc/self/maps`` (the runtime's procfs module is the one reader of that).
    """
    from relib_pure.runtime import dl

    try:
        paths = frozenset(p for p in dl.loaded_paths() if ".so" in os.path.basename(p))
    except (OSError, dl.DlError):
        return {}
    memo = _LOADED_MEMO.get(paths)
    if memo is not None:
        return memo
    out: dict[str, str] = {}
    # named as /proc/self/maps names them (symlinks resolved), as before
    for path in sorted({os.path.realpath(p) for p in paths}):
        if not os.path.isfile(path):
            continue
        # glibc matches a request against each object's SONAME (and the
        # names it was requested by, which for NEEDED entries is the SONAME).
        soname = elfhead.read_soname(path)
        if soname is not None:
            out.setdefault(soname, path)
    _LOADED_MEMO.clear()
    _LOADED_MEMO[paths] = out
    return out
