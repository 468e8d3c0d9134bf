"""What compilation info a host expects of a module (relib-abi.md §2.1).

The Rust host compares the module's compilation-info string byte for byte
with its own. A Python host has no string of its own, so it states what it
expects: explicit fields, the local ``rustc -vV``, or "the same as that other
library" (a Rust host dylib or a sibling module).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relib_pure.errors import RelibError

if TYPE_CHECKING:
    from relib_pure.model import LibraryInfo

__all__ = ["Expectation", "parse_rustc_vv", "rustc_from_comments", "version_matches"]

logger = logging.getLogger(__name__)

_COMMENT_RE = re.compile(r"^rustc version (\S.*)$")


@dataclass(frozen=True)
class Expectation:
    """Expected compilation-info fields; ``None`` means "any".

    ``rustc_version`` is field 1 (``1.95.0 (59807616e 2026-04-14)``; a bare
    ``1.95.0`` matches any build of that release), ``host_triple`` field 2,
    ``llvm_version`` field 3, ``relib_version`` field 4, ``unloading``
    field 5 (``True`` also matches 0.1.8, where unloading is always on).
    ``source`` says where the expectation came from, for messages.
    """

    rustc_version: str | None = None
    host_triple: str | None = None
    llvm_version: str | None = None
    relib_version: str | None = None
    unloading: bool | None = None
    source: str = "explicit"

    @property
    def empty(self) -> bool:
        """True when nothing is expected."""
        return all(getattr(self, f) is None for f in
                   ("rustc_version", "host_triple", "llvm_version", "relib_version", "unloading"))

    @property
    def rustc_comparable(self) -> bool:
        """True when a ``.comment`` rustc version can answer the expectation:
        a rustc version is expected and no relib field is. The host triple
        and LLVM version of ``rustc -vV`` belong to that rustc build, so a
        full version (with commit hash) stands for them."""
        return (self.rustc_version is not None and self.relib_version is None
                and self.unloading is None)

    @property
    def rustc_only(self) -> bool:
        """True when only the rustc version is expected (comparable with ``.comment``)."""
        return (self.rustc_version is not None and self.host_triple is None
                and self.llvm_version is None and self.relib_version is None
                and self.unloading is None)

    def replace(self, **changes: object) -> Expectation:
        """A copy with some fields changed (``None`` drops a field)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_rustc(cls, rustc: str | os.PathLike[str] | None = None) -> Expectation:
        """The compilation fields the given ``rustc`` (default: ``$RUSTC`` or
        ``rustc`` on ``PATH``) would put into a module: runs ``rustc -vV``.

        Raises :class:`~relib_pure.errors.RelibError` (``compat.expectation``)
        when rustc cannot be run or its output is not understood.
        """
        exe = os.fspath(rustc) if rustc is not None else os.environ.get("RUSTC", "rustc")
        found = shutil.which(exe)
        if found is None:
            raise RelibError(f"rustc {exe!r} not found", path=exe, code="compat.expectation")
        try:
            out = subprocess.run([found, "-vV"], capture_output=True, text=True, timeout=60,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RelibError(f"cannot run {found} -vV: {e}", path=found,
                             code="compat.expectation") from e
        if out.returncode != 0:
            raise RelibError(f"{found} -vV exited with {out.returncode}: {out.stderr.strip()}",
                             path=found, code="compat.expectation")
        return parse_rustc_vv(out.stdout, source=f"{found} -vV", path=found)

    @classmethod
    def like(cls, other: LibraryInfo | str | os.PathLike[str]) -> Expectation:
        """The compilation info of ``other`` (a LibraryInfo or a path to inspect).

        A relib module or host dylib gives all five fields. A library without
        relib compilation info but with a rustc ``.comment`` gives only the
        rustc version. Anything else raises ``compat.expectation``.
        """
        if not hasattr(other, "relib"):
            from relib_pure.inspection import inspect

            other = inspect(other)
        info: LibraryInfo = other  # type: ignore[assignment]
        ci = info.relib.compilation_info if info.relib is not None else None
        if ci is not None:
            return cls(rustc_version=ci.rustc_version, host_triple=ci.host_triple,
                       llvm_version=ci.llvm_version, relib_version=ci.relib_version,
                       unloading=ci.unloading_enabled, source=f"like {info.path}")
        rustc = rustc_from_comments(info.comments)
        if rustc is not None:
            return cls(rustc_version=rustc, source=f"like {info.path} (.comment)")
        raise RelibError("has neither relib compilation info nor a rustc .comment to compare with",
                         path=info.path, code="compat.expectation")


def parse_rustc_vv(text: str, *, source: str = "rustc -vV", path: str | None = None) -> Expectation:
    """Parse ``rustc -vV`` output (§2.1: line 1 minus ``rustc ``, ``host:``,
    ``LLVM version:``). Fields are found by their prefixes, so the order
    of lines does not matter.
    """
    rustc = host = llvm = None
    for line in text.splitlines():
        if line.startswith("rustc "):
            rustc = line[len("rustc "):].strip()
        elif line.startswith("host: "):
            host = line[len("host: "):].strip()
        elif line.startswith("LLVM version: "):
            llvm = line[len("LLVM version: "):].strip()
    if rustc is None or host is None:
        raise RelibError(f"unexpected `rustc -vV` output: {text[:200]!r}", path=path,
                         code="compat.expectation")
    return Expectation(rustc_version=rustc, host_triple=host, llvm_version=llvm, source=source)


def rustc_from_comments(comments: tuple[str, ...] | list[str]) -> str | None:
    """The rustc version in a ``.comment`` string (``rustc version 1.95.0 (...)``)."""
    for comment in comments:
        m = _COMMENT_RE.match(comment.strip())
        if m:
            return m.group(1).strip()
    return None


def version_matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` satisfies ``expected``: equal, or ``expected`` is a
    whole-word prefix (``1.95.0`` matches ``1.95.0 (59807616e 2026-04-14)``)."""
    expected, actual = expected.strip(), actual.strip()
    if expected == actual:
        return True
    return actual.startswith(expected) and actual[len(expected)] == " "
