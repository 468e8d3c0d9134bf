"""The manylinux question: which glibc does a set of libraries need?

``auditwheel show`` answers it for a wheel from two facts this module reads
from the inspection model: the highest ``GLIBC_x.y`` symbol version any
library requires (a wheel needing ``GLIBC_2.28`` cannot be older than
``manylinux_2_28``), and the NEEDED libraries that neither the wheel itself
nor the manylinux policy provides (those must be grafted into the wheel by
``auditwheel repair``). The tag is the oldest manylinux policy (PEP 600
tags, as auditwheel defines them) whose symbol versions cover what the
libraries require: its highest ``GLIBC``, ``GLIBCXX``, ``CXXABI`` and
``GCC`` versions (so ``GLIBC_2.14`` alone gives ``manylinux_2_17``, as there
is no policy between 2.12 and 2.17; ``GLIBCXX_3.4.21`` needs
``manylinux_2_24``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from relib_pure.model import LibraryInfo

__all__ = ["Requirements", "PlatformSummary", "requirements", "summarize",
           "POLICY_LIBRARIES", "highest_glibc"]

#: Libraries every manylinux system provides (the policies' library lists: PEP
#: 599's, plus libz, libatomic, libanl and, from 2_12 / 2_24, libexpat / libmvec,
#: taken here for every policy), and the dynamic loaders.
POLICY_LIBRARIES = frozenset({
    "libgcc_s.so.1", "libstdc++.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libc.so.6",
    "libnsl.so.1", "libutil.so.1", "libpthread.so.0", "libresolv.so.2", "libX11.so.6",
    "libXext.so.6", "libXrender.so.1", "libICE.so.6", "libSM.so.6", "libGL.so.1",
    "libgobject-2.0.so.0", "libgthread-2.0.so.0", "libglib-2.0.so.0", "libz.so.1",
    "libatomic.so.1", "libanl.so.1", "libexpat.so.1", "libmvec.so.1",
    "ld-linux-x86-64.so.2", "ld-linux.so.2", "ld-linux-aarch64.so.1", "ld64.so.2",
    "ld64.so.1", "ld-linux-armhf.so.3",
})

#: symbol-version families reported; GLIBC is the one that sets the tag
FAMILIES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")
_VERSION = re.compile(r"^(GLIBC|GLIBCXX|CXXABI|GCC)_(\d+(?:\.\d+)*)$")

#: manylinux policies: (glibc of the tag, the highest version of each family
#: the policy allows). Facts of PEP 600's defined policies, x86_64 values
#: (other architectures start at 2_17 and allow the same versions).
POLICIES: tuple[tuple[tuple[int, int], dict[str, tuple[int, ...]]], ...] = (
    ((2, 5), {"GLIBC": (2, 5), "GLIBCXX": (3, 4, 8), "CXXABI": (1, 3, 1), "GCC": (4, 2, 0)}),
    ((2, 12), {"GLIBC": (2, 12), "GLIBCXX": (3, 4, 13), "CXXABI": (1, 3, 3), "GCC": (4, 3, 0)}),
    ((2, 17), {"GLIBC": (2, 17), "GLIBCXX": (3, 4, 19), "CXXABI": (1, 3, 7), "GCC": (4, 8, 0)}),
    ((2, 24), {"GLIBC": (2, 24), "GLIBCXX": (3, 4, 22), "CXXABI": (1, 3, 10), "GCC": (4, 8, 0)}),
    ((2, 26), {"GLIBC": (2, 26), "GLIBCXX": (3, 4, 22), "CXXABI": (1, 3, 10), "GCC": (4, 8, 0)}),
    ((2, 27), {"GLIBC": (2, 27), "GLIBCXX": (3, 4, 24), "CXXABI": (1, 3, 11), "GCC": (7, 0, 0)}),
    ((2, 28), {"GLIBC": (2, 28), "GLIBCXX": (3, 4, 24), "CXXABI": (1, 3, 11), "GCC": (7, 0, 0)}),
    ((2, 31), {"GLIBC": (2, 31), "GLIBCXX": (3, 4, 28), "CXXABI": (1, 3, 12), "GCC": (7, 0, 0)}),
    ((2, 34), {"GLIBC": (2, 34), "GLIBCXX": (3, 4, 29), "CXXABI": (1, 3, 13), "GCC": (7, 0, 0)}),
    ((2, 35), {"GLIBC": (2, 35), "GLIBCXX": (3, 4, 30), "CXXABI": (1, 3, 13), "GCC": (12, 0, 0)}),
    ((2, 36), {"GLIBC": (2, 36), "GLIBCXX": (3, 4, 30), "CXXABI": (1, 3, 13), "GCC": (12, 0, 0)}),
    ((2, 37), {"GLIBC": (2, 37), "GLIBCXX": (3, 4, 30), "CXXABI": (1, 3, 13), "GCC": (12, 0, 0)}),
    ((2, 38), {"GLIBC": (2, 38), "GLIBCXX": (3, 4, 30), "CXXABI": (1, 3, 13), "GCC": (12, 0, 0)}),
    ((2, 39), {"GLIBC": (2, 39), "GLIBCXX": (3, 4, 33), "CXXABI": (1, 3, 15), "GCC": (14, 0, 0)}),
    ((2, 40), {"GLIBC": (2, 40), "GLIBCXX": (3, 4, 33), "CXXABI": (1, 3, 15), "GCC": (14, 0, 0)}),
    ((2, 41), {"GLIBC": (2, 41), "GLIBCXX": (3, 4, 33), "CXXABI": (1, 3, 15), "GCC": (14, 0, 0)}),
)
# manylinux1 and manylinux2010 exist for x86 only
_X86_ONLY = {(2, 5), (2, 12)}
_ARCH = {"x86_64": "x86_64", "i386": "i686", "aarch64": "aarch64", "s390x": "s390x",
         "arm": "armv7l"}

Version = tuple[int, ...]


def _parse(text: str) -> Version:
    return tuple(int(p) for p in text.split("."))


def _text(v: Version) -> str:
    return ".".join(str(p) for p in v)


@dataclass(frozen=True)
class Requirements:
    """What one library asks of the platform: the highest version of each
    family it requires, its NEEDED list and the names it answers to."""

    path: str
    format: str
    machine: str
    bits: int
    endianness: str
    names: tuple[str, ...]
    needed: tuple[str, ...]
    highest: dict[str, str] = field(default_factory=dict, hash=False)


def requirements(info: LibraryInfo) -> Requirements:
    """The platform requirements of one inspected library (ELF; a PE file has none)."""
    best: dict[str, Version] = {}
    for need in info.version_needs:
        for name in need.versions:
            m = _VERSION.match(name)
            if m is None:
                continue  # GLIBC_PRIVATE, CXXABI_TM_1, a library's own versions
            family, version = m.group(1), _parse(m.group(2))
            if version > best.get(family, ()):
                best[family] = version
    names = tuple(n for n in (info.soname, os.path.basename(info.path)) if n)
    return Requirements(info.path, info.format, info.machine, info.bits, info.endianness, names,
                        info.needed, {f: _text(v) for f, v in best.items()})


def highest_glibc(info: LibraryInfo) -> str | None:
    """The highest ``GLIBC_`` version ``info`` requires (``"2.34"``), if any."""
    return requirements(info).highest.get("GLIBC")


@dataclass(frozen=True)
class PlatformSummary:
    """The manylinux verdict for a group of libraries (a wheel, a directory).

    ``tag``: ``manylinux_2_X_<arch>`` from the highest GLIBC version (``None``
    for non-ELF or unknown architectures); ``highest``: family ->
    (version, the library requiring it); ``external``: NEEDED names outside
    the manylinux policy and outside the group, with the library needing them.
    """

    group: str
    libraries: int
    tag: str | None
    highest: dict[str, tuple[str, str]]
    external: tuple[tuple[str, str], ...] = ()

    @property
    def glibc(self) -> str | None:
        hit = self.highest.get("GLIBC")
        return hit[0] if hit else None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "libraries": self.libraries, "tag": self.tag,
                "glibc": self.glibc,
                "highest": {f: {"version": v, "required_by": p}
                            for f, (v, p) in self.highest.items()},
                "external": [{"name": n, "required_by": p} for n, p in self.external]}

    def sentence(self) -> str:
        """One line in the spirit of ``auditwheel show``."""
        if self.tag is None:
            return f"{self.group}: no manylinux tag (not Linux ELF of a known architecture)"
        glibc = self.highest.get("GLIBC")
        why = (f"highest GLIBC_{glibc[0]} (required by {os.path.basename(glibc[1])})"
               if glibc else "no GLIBC symbol versions required")
        why = "the oldest policy allowing its symbol versions; " + why
        others = ", ".join(f"{f}_{v}" for f, (v, _) in self.highest.items() if f != "GLIBC")
        text = f"{self.group}: consistent with {self.tag}: {why}"
        if others:
            text += f"; also {others}"
        if self.external:
            names = ", ".join(sorted({n for n, _ in self.external}))
            text += f"; needs libraries outside the manylinux policy: {names}" \
                    " (auditwheel repair would graft them)"
        return text


def _policy(required: dict[str, Version], *, x86: bool) -> tuple[int, int]:
    """The oldest policy allowing every required version; past the newest
    known one, the glibc version itself (each glibc release gets its tag)."""
    for glibc, allowed in POLICIES:
        if glibc in _X86_ONLY and not x86:
            continue
        if all(v <= allowed[f] for f, v in required.items() if f in allowed):
            return glibc
    needed = required.get("GLIBC", (2, 17)) + (0, 0)
    return max(POLICIES[-1][0], (needed[0], needed[1]))


def summarize(group: str, reqs: Iterable[Requirements]) -> PlatformSummary:
    """The :class:`PlatformSummary` of the libraries of one group."""
    items = list(reqs)
    best: dict[str, tuple[Version, str]] = {}
    for r in items:
        for family, text in r.highest.items():
            v = _parse(text)
            if family not in best or v > best[family][0]:
                best[family] = (v, r.path)
    provided = {n for r in items for n in r.names}
    external = tuple((n, r.path) for r in items for n in r.needed
                     if n not in POLICY_LIBRARIES and n not in provided
                     and os.path.basename(n) not in provided)
    tag = None
    machines = {(r.machine, r.bits, r.endianness) for r in items}
    if len(machines) == 1 and all(r.format == "elf" for r in items):
        machine, bits, endianness = machines.pop()
        arch = _ARCH.get(machine)
        if machine == "ppc64" and endianness == "little":
            arch = "ppc64le"
        if arch is not None and (arch != "x86_64" or bits == 64):
            major, minor = _policy({f: v for f, (v, _) in best.items()},
                                   x86=arch in ("x86_64", "i686"))
            tag = f"manylinux_{major}_{minor}_{arch}"
    ordered = {f: (_text(best[f][0]), best[f][1]) for f in FAMILIES if f in best}
    return PlatformSummary(group, len(items), tag, ordered, external)
