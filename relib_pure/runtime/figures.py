"""Process-wide figures sampled between reload cycles, and how they grew.

A verified unload (:mod:`.verify`) compares the process before and after one
module's lifetime. Over many cycles a slower leak shows in the process as a
whole: resident memory, address space, descriptors, threads and mappings that
keep climbing. :func:`sample` reads them from ``/proc/self``; :func:`growth`
compares samples against per-resource tolerances.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from relib_pure import _hostfds
from relib_pure.runtime import procfs

__all__ = ["ProcessFigures", "Growth", "RESOURCES", "DEFAULT_TOLERANCE", "sample", "growth",
           "tolerances"]

#: the figures a cycle check watches, in report order
RESOURCES = ("rss_kb", "vmsize_kb", "fds", "threads", "mappings")

#: how much each figure may grow between the warm-up and the last cycle.
#: Counts must not move at all. Memory may: the interpreter's allocator keeps
#: what it once needed (its 1 MiB arenas) and the figures of every cycle are
#: themselves kept, so a few MiB of RSS and address space are bookkeeping, not
#: a leak; the per-cycle unload reports see a library's own leaked mappings.
DEFAULT_TOLERANCE: dict[str, int] = {"rss_kb": 2048, "vmsize_kb": 8192, "fds": 0,
                                     "threads": 0, "mappings": 0}

_UNITS = {"rss_kb": "KiB", "vmsize_kb": "KiB"}


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """What the process holds at one moment: resident and virtual memory (KiB),
    open descriptors, threads and lines of ``/proc/self/maps``."""

    rss_kb: int
    vmsize_kb: int
    fds: int
    threads: int
    mappings: int

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Growth:
    """How one figure moved from ``start`` over ``mid`` to ``end``, against its ``tolerance``.

    A leak grows every cycle; caches grow once (a malloc arena for a thread
    pattern seen for the first time, say) and then stay. So a figure counts as
    grown only when it rose by more than ``tolerance`` overall *and* kept
    rising in the second half of the cycles (by more than half the tolerance,
    at all for counts): ``mid`` is the figure halfway, or ``None`` when only
    one cycle ran after the warm-up. One step cannot tell a leak from a cache,
    so then nothing counts as grown (growth is judged from two cycles after
    the warm-up on; the unload reports judge every cycle).
    """

    resource: str
    start: int
    end: int
    tolerance: int
    mid: int | None = None

    @property
    def delta(self) -> int:
        return self.end - self.start

    @property
    def late_delta(self) -> int | None:
        """The move over the second half (``end - mid``)."""
        return None if self.mid is None else self.end - self.mid

    @property
    def grew(self) -> bool:
        """True when the figure rose beyond its tolerance and was still rising at the end."""
        late = self.late_delta
        return late is not None and self.delta > self.tolerance and late > self.tolerance // 2

    def describe(self) -> str:
        """One readable line: ``fds: 12 -> 15 (+3, +2 in the second half, tolerance 0) GREW``."""
        unit = _UNITS.get(self.resource, "")
        unit = f" {unit}" if unit else ""
        late = self.late_delta
        half = "" if late is None else f", {late:+d} in the second half"
        verdict = " GREW" if self.grew else "" if self.delta <= self.tolerance else (
            ": not judged from one cycle" if late is None else ": a one-time step, not growth")
        return (f"{self.resource}: {self.start} -> {self.end}{unit} ({self.delta:+d}{half}, "
                f"tolerance {self.tolerance}){verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "start": self.start, "mid": self.mid,
                "end": self.end, "delta": self.delta, "tolerance": self.tolerance,
                "grew": self.grew}


def sample() -> ProcessFigures:
    """Read the current figures of this process from ``/proc/self``."""
    rss = vmsize = threads = 0
    # under the host lock: these descriptors must not show in another thread's snapshot
    with _hostfds.lock, open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmSize:"):
                vmsize = int(line.split()[1])
            elif line.startswith(b"Threads:"):
                threads = int(line.split()[1])
    # listdir's own descriptor is open while it lists, in every sample alike
    with _hostfds.lock:
        fds = len(os.listdir("/proc/self/fd"))
    return ProcessFigures(rss, vmsize, fds, threads, procfs.read_maps().count(b"\n"))


def tolerances(overrides: dict[str, int] | None = None) -> dict[str, int]:
    """:data:`DEFAULT_TOLERANCE` with ``overrides`` applied; an unknown name is a ``ValueError``."""
    merged = dict(DEFAULT_TOLERANCE)
    for name, value in (overrides or {}).items():
        if name not in merged:
            raise ValueError(f"unknown resource {name!r} (one of {', '.join(RESOURCES)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"tolerance of {name} must be a non-negative integer, not {value!r}")
        merged[name] = value
    return merged


def growth(start: ProcessFigures, end: ProcessFigures,
           tolerance: dict[str, int] | None = None,
           mid: ProcessFigures | None = None) -> tuple[Growth, ...]:
    """Each figure's move from ``start`` (over ``mid``) to ``end``, in :data:`RESOURCES` order."""
    limits = tolerances(tolerance)
    return tuple(Growth(name, getattr(start, name), getattr(end, name), limits[name],
                        None if mid is None else getattr(mid, name))
                 for name in RESOURCES)
