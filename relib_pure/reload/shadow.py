"""Private shadow copies: every version of a library is loaded from its own file.

A reloader never loads the watched path itself. Each version is copied into a
per-process directory created with mode 0700 under a name no other version
shares, because:

- ``dlopen`` keys its cache on the path and inode: a fresh name and inode
  means a fresh load, never a cached handle of the previous version;
- the build may overwrite the original at any moment without touching the
  code that is mapped;
- nobody but this user can replace the copy between its validation and its
  load (the directory is private, the file is created exclusively and is
  read-only).

Copies are deleted once their version is unloaded; a copy whose library
stayed mapped is kept and listed (:meth:`ShadowDir.leaked`).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import stat as stat_mod
import tempfile
import threading
from dataclasses import dataclass

from relib_pure.errors import InspectionError

logger = logging.getLogger(__name__)

__all__ = ["ShadowCopy", "ShadowDir", "SourceChanged", "default_base"]

_CHUNK = 1 << 20


def default_base() -> str:
    """The system temp directory, unless it is mounted ``noexec`` (dlopen could not
    map a library from it): then the user's cache directory."""
    base = tempfile.gettempdir()
    if os.statvfs(base).f_flag & getattr(os, "ST_NOEXEC", 0):
        from relib_pure.examples.build import cache_root

        fallback = cache_root() / "shadow"
        fallback.mkdir(parents=True, exist_ok=True, mode=0o700)
        logger.info("%s is mounted noexec: shadow copies go to %s", base, fallback)
        return str(fallback)
    return base


class SourceChanged(Exception):
    """The source file changed while it was being copied (a write is still going on)."""


@dataclass(frozen=True)
class ShadowCopy:
    """One private copy: its ``path``, the ``sha256`` and ``size`` of its bytes, and
    the ``source`` it was copied from."""

    path: str
    sha256: str
    size: int
    source: str


class ShadowDir:
    """A private directory of shadow copies (mode 0700, removed by :meth:`close`).

    ``base`` is the parent directory (default: the system temp dir).
    """

    def __init__(self, base: str | None = None) -> None:
        # mkdtemp creates the directory with mode 0700 and a unique name
        self.path = tempfile.mkdtemp(prefix=f"relib-pure-shadow-{os.getpid()}-",
                                     dir=base if base is not None else default_base())
        os.chmod(self.path, 0o700)
        self._lock = threading.Lock()
        self._live: dict[str, ShadowCopy] = {}
        self._leaked: dict[str, ShadowCopy] = {}
        self._serial = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<ShadowDir {self.path} {len(self._live)} live, {len(self._leaked)} leaked>"

    def _name(self, source: str, tag: str) -> str:
        with self._lock:
            self._serial += 1
            serial = self._serial
        return os.path.join(self.path, f"{serial:05d}-{tag}-{os.path.basename(source)}")

    def copy(self, source: str, tag: str = "v") -> ShadowCopy:
        """Copy ``source`` into a new private file, hashing the bytes as they are written.

        Raises :class:`SourceChanged` when the source's size or modification
        time moved during the copy, and
        :class:`~relib_pure.errors.InspectionError` when it cannot be read.
        """
        if self._closed:
            raise RuntimeError("the shadow directory is closed")
        dest = self._name(source, tag)
        try:
            src_fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InspectionError("no such file", path=source, code="inspect.not-found") from None
        except PermissionError:
            raise InspectionError("permission denied", path=source,
                                  code="inspect.permission") from None
        try:
            before = os.fstat(src_fd)
            if not stat_mod.S_ISREG(before.st_mode):
                raise InspectionError("not a regular file", path=source,
                                      code="inspect.not-a-file")
            digest = self._write(src_fd, dest)
            after = os.fstat(src_fd)
        finally:
            os.close(src_fd)
        size = os.stat(dest).st_size
        # ctime too: a same-size rewrite during the copy whose mtime was put back
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != \
                (before.st_size, before.st_mtime_ns, before.st_ctime_ns) or size != after.st_size:
            os.unlink(dest)
            raise SourceChanged(source)
        copy = ShadowCopy(dest, digest, size, source)
        with self._lock:
            self._live[dest] = copy
        return copy

    def duplicate(self, copy: ShadowCopy, tag: str = "restore") -> ShadowCopy:
        """A fresh copy (new name, new inode) of an existing shadow copy."""
        fresh = self.copy(copy.path, tag)
        return ShadowCopy(fresh.path, fresh.sha256, fresh.size, copy.source)

    @staticmethod
    def _write(src_fd: int, dest: str) -> str:
        digest = hashlib.sha256()
        # O_EXCL: the name is ours alone; 0o500: nobody rewrites it after the hash
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o500)
        try:
            while True:
                chunk = os.read(src_fd, _CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(dest)
            raise
        os.close(fd)
        return digest.hexdigest()

    def discard(self, copy: ShadowCopy) -> None:
        """Delete a copy whose library is unloaded (or was never loaded)."""
        with self._lock:
            self._live.pop(copy.path, None)
            self._leaked.pop(copy.path, None)
        try:
            os.unlink(copy.path)
        except FileNotFoundError:
            pass

    def keep(self, copy: ShadowCopy) -> None:
        """Keep a copy whose library stayed mapped; it is listed by :meth:`leaked`."""
        with self._lock:
            self._live.pop(copy.path, None)
            self._leaked[copy.path] = copy
        logger.warning("%s: still mapped, shadow copy kept", copy.path)

    def live(self) -> tuple[ShadowCopy, ...]:
        """Copies made and neither discarded nor kept."""
        with self._lock:
            return tuple(self._live.values())

    def leaked(self) -> tuple[ShadowCopy, ...]:
        """Copies kept because their library could not be unloaded."""
        with self._lock:
            return tuple(self._leaked.values())

    def close(self) -> tuple[ShadowCopy, ...]:
        """Delete every live copy and the directory; returns the leaked copies left in it.

        The directory stays while leaked copies are in it (a mapped library is
        better kept with a name, which ``/proc/self/maps`` shows) and is
        removed at interpreter exit.
        """
        self._closed = True
        for copy in self.live():
            self.discard(copy)
        leaked = self.leaked()
        if not leaked:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            # the names only matter while the process maps them
            atexit.register(shutil.rmtree, self.path, ignore_errors=True)
        return leaked
