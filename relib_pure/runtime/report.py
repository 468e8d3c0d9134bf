"""The unload report: did the library leave, what stayed behind, and why.

``UnloadReport.to_dict()`` is the ``unload`` object of ``relib-pure run --json``
(``schemas/run.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relib_pure.runtime.procfs import Mapping

__all__ = ["UnloadReport", "LeakedFd", "LeakedThread", "Cause", "CAUSES"]

#: why a library can stay mapped after dlclose, with what each means
CAUSES: dict[str, str] = {
    "nodelete": "the library is marked DF_1_NODELETE (-z nodelete); glibc never unmaps it",
    "gnu-unique": "the library defines STB_GNU_UNIQUE symbols, which make glibc mark it NODELETE",
    "tls-destructors": "a live thread registered thread-local destructors in the library "
                       "(__cxa_thread_atexit_impl), so glibc keeps it until that thread exits",
    "dependency-bound": "a library this module's load brought into the process (libgcc_s.so.1) "
                        "bound symbols to the module and is still held by other libraries, so "
                        "glibc keeps the module for it; relib_pure keeps such libraries resident "
                        "before the first module (runtime.resident) to prevent this",
    "another-handle": "the loader still holds the object: another dlopen handle or a library "
                      "that depends on it",
    "leftover-mapping": "the loader has released the object but a mapping of the file remains "
                        "(mmap of the library file)",
}


@dataclass(frozen=True)
class Cause:
    """One reason the library is still mapped: ``code`` from :data:`CAUSES` plus detail."""

    code: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": CAUSES[self.code], "detail": self.detail}


@dataclass(frozen=True)
class LeakedFd:
    """A descriptor opened during the module's lifetime and still open after unload."""

    fd: int
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"fd": self.fd, "target": self.target}


@dataclass(frozen=True)
class LeakedThread:
    """A native thread that appeared during the module's lifetime and is still alive."""

    tid: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"tid": self.tid, "name": self.name}


@dataclass(frozen=True)
class UnloadReport:
    """What ``Module.unload()`` established.

    ``unloaded``: no mapping of the file's inode (or path) is left and
    ``dlopen(RTLD_NOLOAD)`` no longer finds it. ``causes`` explain a library
    that is still mapped; ``still_mapped`` lists its remaining mappings.
    ``threads``/``fds``/``mappings`` are what the module's lifetime added and
    left behind (mappings: only the bytes that were not mapped at load; glibc's
    own thread-stack cache, malloc arenas, CPython's 1 MiB object arenas and
    inaccessible reservations are not counted, so an anonymous leak of exactly
    1 MiB goes unseen; threads and descriptors are attributed by time, so
    those another library created meanwhile count too). ``retried`` is true
    when a second ``RTLD_NOLOAD`` + ``dlclose`` was needed (destructors that
    were still pending at the first ``dlclose``).
    ``extra`` holds the driver's facts.
    """

    path: str
    driver: str
    owner: str
    unloaded: bool
    loader_knows: bool
    causes: tuple[Cause, ...] = ()
    still_mapped: tuple[Mapping, ...] = ()
    retried: bool = False
    threads: tuple[LeakedThread, ...] = ()
    fds: tuple[LeakedFd, ...] = ()
    mappings: tuple[Mapping, ...] = ()
    timings_us: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def leaked(self) -> bool:
        """True when threads, descriptors or memory mappings were left behind."""
        return bool(self.threads or self.fds or self.mappings)

    @property
    def clean(self) -> bool:
        """Unloaded and nothing left behind."""
        return self.unloaded and not self.leaked

    @property
    def cause_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.causes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the ``unload`` object of ``schemas/run.json``)."""
        return {
            "path": self.path,
            "driver": self.driver,
            "owner": self.owner,
            "unloaded": self.unloaded,
            "clean": self.clean,
            "loader_knows": self.loader_knows,
            "retried": self.retried,
            "causes": [c.to_dict() for c in self.causes],
            "still_mapped": [m.to_dict() for m in self.still_mapped],
            "leaks": {
                "threads": [t.to_dict() for t in self.threads],
                "fds": [f.to_dict() for f in self.fds],
                "mappings": [m.to_dict() for m in self.mappings],
            },
            "timings_us": {k: round(v, 1) for k, v in self.timings_us.items()},
            "extra": dict(self.extra),
        }

    def summary(self) -> str:
        """Human text: one verdict line, then one line per finding."""
        verdict = "clean" if self.clean else ("unloaded, with leaks" if self.unloaded
                                              else "STILL MAPPED")
        lines = [f"{self.path}: {verdict} (driver {self.driver}, owner {self.owner})"]
        for c in self.causes:
            detail = f" [{c.detail}]" if c.detail else ""
            lines.append(f"  cause {c.code}: {CAUSES[c.code]}{detail}")
        for m in self.still_mapped:
            lines.append(f"  still mapped: {m.start:#x}-{m.end:#x} {m.perms} ({m.size} bytes)")
        for t in self.threads:
            lines.append(f"  thread still running: tid {t.tid} {t.name!r}")
        for f in self.fds:
            lines.append(f"  descriptor left open: fd {f.fd} -> {f.target}")
        for m in self.mappings:
            what = m.path or "anonymous"
            lines.append(f"  mapping left: {m.start:#x}-{m.end:#x} {m.perms} {m.size} bytes {what}")
        if self.retried:
            lines.append("  (finished by a second RTLD_NOLOAD + dlclose once pending TLS "
                         "destructors had run)")
        return "\n".join(lines)
