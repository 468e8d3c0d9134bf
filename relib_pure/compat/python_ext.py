"""Python extension modules: which interpreter provides their ``Py*`` symbols.

An extension does not NEED libpython (usually): its ``Py*`` references bind
to the interpreter that imports it. Checking it against whichever Python
runs relib-pure answers the wrong question for a ``cp313`` module checked
from 3.11. So the target interpreter is named: from ``Policy.python`` (a
version like ``3.13`` or an interpreter path), else from the ``cpython-3XY``
tag in the file name, else the running one; it is looked up on this machine
(``PATH``, pyenv, ``/usr/bin``), and its program with its closure (its
libpython) is the host the symbols must resolve against. When it is not
installed here, ``Py*``/``_Py*`` symbols are left to the host unchecked.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import sys
from dataclasses import dataclass

from relib_pure.model import LibraryInfo

__all__ = ["PythonTarget", "is_extension", "tag_version", "python_target", "find_interpreter",
           "is_python_symbol"]

# foo.cpython-313-x86_64-linux-gnu.so, foo.cpython-313t-..., foo.abi3.so
_TAG = re.compile(r"\.cpython-(\d)(\d+)[a-z]*(-[^.]*)?\.so$")
_ABI3 = re.compile(r"\.abi3\.so$")
_VERSION = re.compile(r"^(\d)\.(\d+)$")
_PY_SYMBOL = re.compile(r"^_?Py[A-Z_]")


def is_python_symbol(name: str) -> bool:
    """A name of the C API an interpreter provides (``Py*``, ``_Py*``)."""
    return _PY_SYMBOL.match(name) is not None


def tag_version(path: str) -> str | None:
    """``"3.13"`` from ``x.cpython-313-x86_64-linux-gnu.so``, else ``None``."""
    m = _TAG.search(os.path.basename(path))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def is_extension(info: LibraryInfo) -> bool:
    """An extension module: a CPython file-name tag, or a ``PyInit_*`` export."""
    name = os.path.basename(info.path)
    if _TAG.search(name) or _ABI3.search(name):
        return True
    return any(s.name.startswith("PyInit_") for s in info.exports)


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter an extension is checked for.

    ``version``: ``"3.13"`` (``None`` when only a path was given and it could
    not be read); ``source``: where that came from (``--python``, ``from the
    file name``, ``the running interpreter``); ``executable``: the interpreter found
    on this machine (``None``: not installed here).
    """

    version: str | None
    source: str
    executable: str | None

    @property
    def running(self) -> bool:
        """Whether it is the interpreter running this check."""
        return self.executable is not None and _same_file(self.executable, sys.executable)

    def describe(self) -> str:
        name = f"Python {self.version}" if self.version else "Python"
        return f"{name} ({self.source})"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _running_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


@functools.lru_cache(maxsize=16)
def find_interpreter(version: str) -> str | None:
    """An ELF ``python<version>`` on this machine (pyenv shims, which are
    scripts, are looked through), or ``None``."""
    if version == _running_version() and _is_elf(os.path.realpath(sys.executable)):
        return sys.executable
    name = f"python{version}"
    candidates = []
    found = shutil.which(name)
    if found:
        candidates.append(os.path.realpath(found))
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(root, "versions", f"{version}*", "bin", name)),
                         reverse=True)
    candidates += [f"/usr/bin/{name}", f"/usr/local/bin/{name}"]
    for c in candidates:
        if _is_elf(os.path.realpath(c)):
            return c
    return None


def _version_of(executable: str) -> str | None:
    m = re.search(r"python(\d\.\d+)", os.path.basename(os.path.realpath(executable)))
    return m.group(1) if m else None


def python_target(info: LibraryInfo, requested: str | None = None) -> PythonTarget | None:
    """The target interpreter for ``info``: ``None`` for a library that is no
    extension module when nothing was requested."""
    if requested:
        if _VERSION.match(requested):
            return PythonTarget(requested, "--python", find_interpreter(requested))
        found = shutil.which(requested) or requested
        executable = os.path.realpath(found) if _is_elf(os.path.realpath(found)) else None
        return PythonTarget(_version_of(found), "--python", executable)
    if not is_extension(info):
        return None
    tagged = tag_version(info.path)
    if tagged:
        return PythonTarget(tagged, "from the file name", find_interpreter(tagged))
    return PythonTarget(_running_version(), "the running interpreter", sys.executable)
