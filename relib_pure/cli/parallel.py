"""Run one function over many libraries on several cores, results in input order.

Reading a library is CPU-bound pure Python (the GIL rules out threads), so
the work goes to worker processes. Each worker keeps its own inspection
cache, so the libraries most files depend on (libc, libstdc++) are read once
per worker, not once per file; the items are handed out in chunks for the
same reason.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

__all__ = ["default_jobs", "run_ordered"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_ordered(func: Callable[[T], R], items: Sequence[T], jobs: int) -> Iterator[R]:
    """``map(func, items)`` over ``jobs`` processes (inline when one would do).

    ``func`` must be a module-level function and its results picklable.
    """
    jobs = max(1, min(jobs, len(items)))
    if jobs == 1:
        yield from map(func, items)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork is the cheap start (no re-import), but forking a process that runs
    # other threads can copy a held lock into the child
    method = "fork" if threading.active_count() == 1 else "forkserver"
    ctx = multiprocessing.get_context(method)
    # several chunks per worker: a 100 MB library in one chunk does not hold
    # every other result back for long
    chunk = max(1, min(32, len(items) // (jobs * 8)))
    logger.debug("%d item(s) on %d %s worker(s), chunks of %d", len(items), jobs, method, chunk)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        yield from pool.map(func, items, chunksize=chunk)
