"""The owner thread: one OS thread that runs a module's load, calls and unload.

relib needs init, thread-local destructors and unload on one thread, and glibc
keeps a library mapped while any thread that registered a TLS destructor for it
is alive. Funnelling every call through a dedicated thread that exits before
``dlclose`` satisfies both, whatever Python thread the caller is on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from relib_pure.errors import ModuleUnloaded

logger = logging.getLogger(__name__)

__all__ = ["OwnerThread"]

T = TypeVar("T")

_STOP = object()
_allocate_lock = threading.Lock


class OwnerThread:
    """A daemon thread executing submitted jobs in order.

    Daemon, because a non-daemon thread would make interpreter exit wait for
    it before the atexit hook that unloads modules could run.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._gate = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"relib-owner:{path}", daemon=True)
        self._thread.start()
        # start() returns after the thread has begun running, so both ids are set
        self.ident: int = self._thread.ident  # type: ignore[assignment]
        self.native_id: int = self._thread.native_id  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the owner thread and return its result (or raise its error).

        Called on the owner thread itself (e.g. from a driver hook or a callback),
        it runs directly instead of deadlocking on its own queue.
        """
        if threading.get_ident() == self.ident:
            return fn(*args)
        done = _allocate_lock()
        done.acquire()
        box: list[Any] = [None, None]
        with self._gate:
            if self._closed:
                raise ModuleUnloaded("the module's owner thread has stopped", path=self._path)
            self._jobs.put((fn, args, box, done))
        done.acquire()
        if box[1] is not None:
            err = box[1]
            box[1] = None  # break the frame <-> exception cycle
            raise err
        return box[0]  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Refuse new jobs, let queued ones finish, and let the thread exit.

        Returns after ``Thread.join``; the caller still has to wait for the OS
        thread to disappear (:func:`relib_pure.runtime.procfs.wait_task_gone`).
        """
        with self._gate:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(_STOP)
        if threading.get_ident() != self.ident:
            self._thread.join()

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            fn, args, box, done = job
            try:
                box[0] = fn(*args)
            except BaseException as e:  # handed to the submitting thread
                box[1] = e
            finally:
                # drop every reference to the job: the loop variables would otherwise
                # keep the last result (e.g. a 200 MB copy) alive until the next job
                del fn, args, job
                done.release()
                del box, done
