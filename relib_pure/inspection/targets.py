"""From command-line paths to the library files to read: files, directories, wheels.

A CI job hands ``check``/``inspect`` a mix of paths: single libraries, build
directories (walked with ``recursive``) and ``.whl`` files, whose native
members (``.so``, ``.so.N``, ``.pyd``, ``.dll``) are extracted, keeping their
directory layout so that ``$ORIGIN`` run paths between members still
resolve. Text files in library directories (GNU ld scripts such as
``libc.so``) are no libraries; they are skipped with a note rather than
reported as unreadable (a file named on its own is read as given: naming a
linker script is an error).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from relib_pure.errors import InspectionError, RelibError
from relib_pure.inspection import _LINKER_SCRIPT

__all__ = ["Target", "Skipped", "Collection", "collect", "is_library_name", "is_linker_script"]

logger = logging.getLogger(__name__)

# libfoo.so, libfoo.so.1.2, foo.cpython-313-x86_64-linux-gnu.so, foo.pyd, foo.dll
_LIBRARY_NAME = re.compile(r"(\.so(\.\d+)*|\.pyd|\.dll)$", re.IGNORECASE)
_HEAD = 512


def is_library_name(name: str) -> bool:
    """Whether a file name looks like a shared library or extension module."""
    return _LIBRARY_NAME.search(name) is not None


def is_linker_script(head: bytes) -> bool:
    """Whether a file's first bytes are a GNU ld script (``libc.so`` is one)."""
    return head.isascii() and _LINKER_SCRIPT.search(head) is not None


@dataclass(frozen=True)
class Target:
    """One library to read: ``path`` on disk, ``display`` as reported (a wheel
    member reads ``dist/x.whl!pkg/mod.so``), ``group`` the argument it came
    from (a platform summary is made per group, as ``auditwheel show`` does
    per wheel)."""

    path: str
    display: str
    group: str


@dataclass(frozen=True)
class Skipped:
    """A file that was looked at and left out, with the reason."""

    display: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.display, "reason": self.reason}


@dataclass
class Collection:
    """What :func:`collect` found. A context manager: leaving it removes the
    directories wheels were extracted to."""

    targets: list[Target] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[RelibError] = field(default_factory=list)
    tempdirs: list[str] = field(default_factory=list)
    #: extraction directory -> the wheel it holds
    wheel_dirs: dict[str, str] = field(default_factory=dict)

    def rename(self, text: str) -> str:
        """``text`` with the extraction directories replaced by their wheel
        (``/tmp/relib-pure-x/pkg/m.so`` -> ``dist/x.whl!pkg/m.so``)."""
        for tmp, wheel in self.wheel_dirs.items():
            text = text.replace(tmp + os.sep, wheel + "!")
        return text

    def rename_json(self, text: str) -> str:
        """:meth:`rename` inside JSON text (the wheel's name JSON-escaped)."""
        for tmp, wheel in self.wheel_dirs.items():
            text = text.replace(tmp + os.sep, json.dumps(wheel + "!")[1:-1])
        return text

    def close(self) -> None:
        import shutil

        for d in self.tempdirs:
            shutil.rmtree(d, ignore_errors=True)
        self.tempdirs.clear()
        self.wheel_dirs.clear()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collect(paths: Iterable[str], *, recursive: bool = False) -> Collection:
    """Expand ``paths`` into library files.

    A file is taken as given; a ``.whl`` file contributes its native members;
    a directory needs ``recursive`` and contributes every file with a library
    name below it (each real file once, however many symlinks name it), where
    linker scripts and other files that are neither ELF nor PE are skipped
    with a note. A path that does not exist, or a directory without
    ``recursive``, is an error entry.
    """
    out = Collection()
    seen: set[str] = set()
    try:
        for path in paths:
            _collect_one(path, recursive, out, seen)
    except BaseException:
        out.close()
        raise
    return out


def _collect_one(path: str, recursive: bool, out: Collection, seen: set[str]) -> None:
    try:
        st = os.stat(path)
    except OSError:
        # inspection names the precise problem (not found, a file in the path...)
        out.targets.append(Target(path, path, path))
        return
    if stat.S_ISDIR(st.st_mode):
        if not recursive:
            out.errors.append(InspectionError("is a directory (pass -r to check the libraries "
                                              "below it)", path=path,
                                              code="inspect.not-a-file"))
            return
        for file in _walk(path):
            _add_file(file, file, path, out, seen, from_walk=True)
        return
    if path.lower().endswith(".whl"):
        _add_wheel(path, out)
        return
    _add_file(path, path, path, out, seen, from_walk=False)


def _walk(top: str) -> Iterator[str]:
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if is_library_name(name) or name.lower().endswith(".whl"):
                yield os.path.join(root, name)


def _add_file(path: str, display: str, group: str, out: Collection, seen: set[str], *,
              from_walk: bool) -> None:
    if not from_walk:
        # named on purpose: inspection says what it is (a linker script is an
        # inspect.unknown-format error then, as for any single file; a FIFO
        # is not opened here, where reading would wait for a writer)
        out.targets.append(Target(path, display, group))
        return
    if path.lower().endswith(".whl"):
        _add_wheel(path, out)
        return
    try:
        real = os.path.realpath(path)
        if not os.path.isfile(real):
            return  # a dangling symlink or a FIFO among the libraries
        if real in seen:
            return  # libfoo.so -> libfoo.so.1 -> libfoo.so.1.2.3: read once
        seen.add(real)
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError:
        # inspection reports the precise reason (permission, not a file...)
        out.targets.append(Target(path, display, group))
        return
    if is_linker_script(head):
        out.skipped.append(Skipped(display, "GNU ld linker script, not a shared library"))
        return
    if head[:4] != b"\x7fELF" and head[:2] != b"MZ":
        out.skipped.append(Skipped(display, "neither ELF nor PE"))
        return
    out.targets.append(Target(path, display, group))


def _add_wheel(path: str, out: Collection) -> None:
    # only a wheel needs these: plain checks do not pay their import
    import shutil
    import tempfile
    import zipfile

    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        out.errors.append(InspectionError(f"not a readable wheel (zip): {e}", path=path,
                                          code="inspect.unknown-format"))
        return
    with zf:
        members = [m for m in zf.infolist()
                   if not m.is_dir() and is_library_name(m.filename.rsplit("/", 1)[-1])]
        if not members:
            out.skipped.append(Skipped(path, "wheel without native libraries"))
            return
        base = os.path.basename(path)
        # a plain-ASCII directory name: renaming it inside JSON text stays exact
        tmp = tempfile.mkdtemp(prefix=f"relib-pure-{re.sub(r'[^A-Za-z0-9._-]', '_', base[:40])}-")
        out.tempdirs.append(tmp)
        out.wheel_dirs[tmp] = path
        for m in members:
            parts = [p for p in m.filename.split("/") if p not in ("", ".", "..")]
            dest = os.path.join(tmp, *parts)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            try:
                with zf.open(m) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                out.errors.append(InspectionError(f"cannot extract {m.filename}: {e}",
                                                  path=path, code="inspect.io"))
                continue
            display = f"{path}!{'/'.join(parts)}"
            with open(dest, "rb") as f:
                head = f.read(_HEAD)
            if is_linker_script(head):
                out.skipped.append(Skipped(display, "GNU ld linker script, not a shared library"))
                continue
            out.targets.append(Target(dest, display, path))
        logger.debug("%s: %d native member(s) extracted to %s", path, len(members), tmp)
