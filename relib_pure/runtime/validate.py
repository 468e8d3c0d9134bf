"""Static validation before anything is mapped, and the file identity it vouches for.

``validate`` inspects the file and runs the compatibility checks; the
:class:`Validated` it returns records the file's (device, inode, size, mtime,
ctime)
so the loader can prove that what it mapped is what was checked.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relib_pure import _hostfds
from relib_pure.errors import InspectionError, LoadError
from relib_pure.runtime import dl
from relib_pure.runtime.procfs import FileId, file_id

if TYPE_CHECKING:
    from relib_pure.model import LibraryInfo

logger = logging.getLogger(__name__)

__all__ = ["Validated", "validate", "check_report_for", "library_info", "debug_info",
           "clear_caches"]

_CACHE_SIZE = 64
_O_PATH = getattr(os, "O_PATH", 0)
# Inspection is CPU-bound under the GIL anyway; one lock lets the 299 losers of
# a 300-thread race read the winner's result instead of parsing the file again.
_cache_lock = threading.Lock()
_check_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_debug_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_DEFAULT_POLICY: Any = None


@dataclass(frozen=True)
class Validated:
    """A library file that passed static validation.

    ``path`` is absolute (symlinks kept, as given); ``real_path`` has them
    resolved, as ``/proc/self/maps`` shows it. ``file`` is the identity recorded
    while validating. ``check_report`` is the compat report (``None`` when
    checks were skipped).
    """

    path: str
    real_path: str
    file: FileId
    info: LibraryInfo
    check_report: Any = None

    def with_report(self, report: Any) -> Validated:
        """This validation with ``report`` as its check report
        (``dataclasses.replace`` introspects the class on every call)."""
        return Validated(self.path, self.real_path, self.file, self.info, report)


def _stat(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as e:
        raise _stat_error(path, e) from (None if isinstance(
            e, (FileNotFoundError, PermissionError)) else e)
    if not stat_mod.S_ISREG(st.st_mode):
        raise InspectionError("not a regular file", path=path, code="inspect.not-a-file")
    return st


def clear_caches() -> None:
    """Forget every cached inspection and check report (the next validation reads the file)."""
    from relib_pure.loader import resolve

    resolve.clear_cache()  # the loader's symbol indexes and the one inspection cache
    with _cache_lock:
        _check_cache.clear()
        _debug_cache.clear()


def _resolve(abs_path: str) -> tuple[str, os.stat_result]:
    """The file's symlink-free path, spelled as ``/proc/self/maps`` will show it, and its stat.

    One ``O_PATH`` descriptor answers both (``fstat`` and the kernel's own
    name for it): a third of the cost of ``os.path.realpath`` (an ``lstat``
    per path component) plus a ``stat``, and the two answers cannot disagree.
    """
    if not _O_PATH:
        real_path = os.path.realpath(abs_path)
        return real_path, _stat(real_path)
    try:
        # registered as the host's own: another thread's descriptor snapshot must not count it
        fd = _hostfds.hold(lambda: os.open(abs_path, _O_PATH | os.O_CLOEXEC))
    except OSError as e:
        raise _stat_error(abs_path, e) from (None if isinstance(
            e, (FileNotFoundError, PermissionError)) else e)
    try:
        st = os.fstat(fd)
        real_path = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        _hostfds.release(fd)
    if not stat_mod.S_ISREG(st.st_mode):
        raise InspectionError("not a regular file", path=real_path, code="inspect.not-a-file")
    if real_path.endswith(" (deleted)"):  # removed a moment ago
        raise InspectionError("no such file", path=abs_path, code="inspect.not-found")
    return real_path, st


def _stat_error(path: str, e: OSError) -> InspectionError:
    if isinstance(e, FileNotFoundError):
        return InspectionError("no such file", path=path, code="inspect.not-found")
    if isinstance(e, PermissionError):
        return InspectionError("permission denied", path=path, code="inspect.permission")
    return InspectionError(f"cannot stat: {e.strerror}", path=path, code="inspect.io")


def library_info(path: str, st: os.stat_result) -> LibraryInfo:
    """``relib_pure.inspect(path)``, cached by file identity (reloads of an unchanged file)."""
    return _library_info(path, st)[0]


def _library_info(path: str, st: os.stat_result) -> tuple[LibraryInfo, bool]:
    """The inspection of ``path`` and whether it was read just now (not cached)."""
    from relib_pure.inspection.cache import inspect_identified

    return inspect_identified(path, st)


def debug_info(validated: Validated) -> Any:
    """The DWARF signatures of a validated file
    (:func:`relib_pure.inspection.dwarf.read_debug_info`), cached by its identity:
    reloading a debug build must not parse its DWARF (and grow the heap) each time."""
    from relib_pure.inspection.dwarf import read_debug_info

    key = (validated.real_path, validated.file)
    with _cache_lock:
        debug = _debug_cache.get(key)
        if debug is not None:
            _debug_cache.move_to_end(key)
            return debug
        debug = read_debug_info(validated.info, validated.real_path)
        _store(_debug_cache, key, debug)
        return debug


def _check(info: LibraryInfo, file_key: tuple[str, FileId], policy: Any) -> Any:
    """``compat.check(info, policy)``, cached when its answer depends on nothing else.

    Every check but ``resolve`` is a pure function of the inspection and the
    policy; ``resolve`` also depends on the objects loaded in this process and
    ``$LD_LIBRARY_PATH``, which join the key. A policy that cannot be hashed is
    never cached.
    """
    extra: tuple[Any, ...] = ()
    if policy.runs("resolve"):
        # resolve also reads the NEEDED libraries and this process's loaded
        # objects: keyed by the loader's own list of them and the search path
        # (a changed library on disk elsewhere is dlopen's to find: RTLD_NOW)
        extra = (dl.loaded_chain(), os.environ.get("LD_LIBRARY_PATH", ""))
    key = (file_key, policy, extra)
    try:
        hash(key)
    except TypeError:
        return _run_check(info, policy)
    with _cache_lock:
        report = _check_cache.get(key)
        if report is not None:
            _check_cache.move_to_end(key)
            return report
    report = _run_check(info, policy)
    with _cache_lock:
        _store(_check_cache, key, report)
    return report


def _run_check(info: LibraryInfo, policy: Any) -> Any:
    from relib_pure.compat import check as run_check

    return run_check(info, policy)


def check_report_for(validated: Validated, policy: Any) -> Any:
    """The check report of ``validated`` for ``policy``, cached as :func:`validate` caches it.

    Unlike :func:`validate`, error findings are returned, not raised.
    """
    return _check(validated.info, (validated.real_path, validated.file), policy)


def _store(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    """Add ``value`` to an LRU ``cache`` (``_cache_lock`` held), dropping the oldest
    entries beyond ``_CACHE_SIZE``."""
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


def validate(path: str | os.PathLike[str], *, policy: Any = None, check: bool = True) -> Validated:
    """Inspect ``path`` and (``check=True``) run :func:`relib_pure.compat.check` on it.

    The default policy is ``Policy(resolve=False)``: the static resolvability
    check reads every NEEDED library (milliseconds per load), while ``dlopen``
    with ``RTLD_NOW`` resolves authoritatively anyway and a failure there is
    reported with ``dlerror``'s text. Pass ``Policy()`` to have both.

    The inspection and the check's report are cached by the file's identity
    (path, device, inode, size, mtime, ctime) and the policy, so validating an
    unchanged file again costs an ``open(O_PATH)``, an ``fstat`` and a ``readlink``.

    Raises :class:`~relib_pure.errors.InspectionError` for unreadable files,
    :class:`~relib_pure.errors.IncompatibleModuleError` when the check has
    error findings, :class:`~relib_pure.errors.LoadError` (``load.path-not-utf8``,
    ``load.swapped`` if the file changed while being validated).
    """
    given = os.fspath(path)
    if isinstance(given, bytes):
        given = os.fsdecode(given)
    try:
        given.encode("utf-8")
    except UnicodeEncodeError:
        raise LoadError("the path is not valid UTF-8", path=given,
                        code="load.path-not-utf8") from None
    # as relib_pure.inspect() words them; abspath("") would quietly name the cwd
    if not given:
        raise InspectionError("no such file", path=given, code="inspect.not-found")
    if "\0" in given:
        raise InspectionError("cannot read the file: embedded null byte", path=given,
                              code="inspect.io")
    abs_path = os.path.abspath(given)
    real_path, before = _resolve(abs_path)
    info, fresh = _library_info(real_path, before)
    report = None
    fid = file_id(before)
    if check:
        report = _check(info, (real_path, fid),
                        policy if policy is not None else _default_policy())
        report.raise_for_errors()
    # a cached inspection was made from bytes with this very identity; only a
    # fresh read can have raced with a change of the file
    if fresh and file_id(_stat(real_path)) != fid:
        raise LoadError("the file changed while it was being validated", path=given,
                        code="load.swapped")
    return Validated(abs_path, real_path, fid, info, report)


def _default_policy() -> Any:
    global _DEFAULT_POLICY
    if _DEFAULT_POLICY is None:
        from relib_pure.compat import Policy

        _DEFAULT_POLICY = Policy(resolve=False)
    return _DEFAULT_POLICY
