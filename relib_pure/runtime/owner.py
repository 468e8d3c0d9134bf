"""The owner thread: one OS thread that runs a module's load, calls and unload.

relib needs init, thread-local destructors and unload on one thread, and glibc
keeps a library mapped while any thread that registered a TLS destructor for it
is alive. Funnelling every call through a dedicated thread that exits before
``dlclose`` satisfies both, whatever Python thread the caller is on.

The thread is started with ``_thread.start_new_thread``: ``threading.Thread``
adds a start-up handshake (``start()`` waits until the thread runs) that costs
a full thread switch per load, and the first job already waits for the thread.
Because ``threading.enumerate()`` does not list these threads,
:func:`live_native_ids` names them for the host's "threads the module
started" diff.
"""

from __future__ import annotations

import _thread
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from relib_pure.errors import ModuleUnloaded

logger = logging.getLogger(__name__)

__all__ = ["OwnerThread", "live_native_ids"]

T = TypeVar("T")

_STOP = object()
_allocate_lock = _thread.allocate_lock
# native ids of owner threads that are running (or just returning from _run)
_live_ids: set[int] = set()


def live_native_ids() -> frozenset[int]:
    """Kernel thread ids of the owner threads currently alive."""
    return frozenset(_live_ids)


class OwnerThread:
    """A thread executing submitted jobs in order.

    Like a daemon thread, it does not hold up interpreter exit: the atexit hook
    that unloads modules still needs it to run their unload.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        # true while a job runs (written by the owner thread only)
        self._busy = False
        self._gate = threading.Lock()
        self._ident: int | None = None
        self._native_id: int | None = None
        # held until the thread has published its ids / has left _run
        self._ready = _allocate_lock()
        self._ready.acquire()
        self._finished = _allocate_lock()
        self._finished.acquire()
        _thread.start_new_thread(self._run, ())

    @property
    def ident(self) -> int:
        """``threading.get_ident()`` (= ``pthread_self()``) of the owner thread."""
        if self._ident is None:
            self._wait_ready()
        return self._ident  # type: ignore[return-value]

    @property
    def native_id(self) -> int:
        """The kernel thread id (``/proc/self/task/<native_id>``)."""
        if self._native_id is None:
            self._wait_ready()
        return self._native_id  # type: ignore[return-value]

    def _wait_ready(self) -> None:
        self._ready.acquire()
        self._ready.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no job runs or waits; true if idle.

        Interpreter exit uses it: a job that never returns (a native call that
        hangs) must not turn into an exit that never happens.
        """
        deadline = time.monotonic() + timeout
        while self._busy or not self._jobs.empty():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the owner thread and return its result (or raise its error).

        Called on the owner thread itself (e.g. from a driver hook or a callback),
        it runs directly instead of deadlocking on its own queue.
        """
        return self._submit(fn, args, False)

    def submit_last(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`submit`; if ``fn`` returns normally the thread then exits.

        Jobs queued behind it still run (guarded calls see the module closed and
        raise :class:`~relib_pure.errors.ModuleUnloaded`); later submissions are
        refused. If ``fn`` raises, the thread keeps serving. One hand-over
        instead of a job plus a separate stop request.
        """
        if threading.get_ident() == self._ident:
            raise RuntimeError("submit_last() on the owner thread itself")
        return self._submit(fn, args, True)

    def _submit(self, fn: Callable[..., T], args: tuple[Any, ...], last: bool) -> T:
        if threading.get_ident() == self._ident:
            return fn(*args)
        done = _allocate_lock()
        done.acquire()
        box: list[Any] = [None, None]
        with self._gate:
            if self._closed:
                raise ModuleUnloaded("the module's owner thread has stopped", path=self._path)
            self._jobs.put((fn, args, box, done, last))
        done.acquire()
        result, err = box
        # the queue's job tuple may still hold the box: empty it, so the result
        # (e.g. a 200 MB copy) lives only as long as the caller keeps it, and
        # the exception does not keep a frame <-> traceback cycle
        box[0] = box[1] = None
        if err is not None:
            try:
                raise err
            finally:
                del err
        return result  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Refuse new jobs and let the thread exit once the queued ones ran.

        Returns at once; the caller waits for the OS thread to disappear with
        :func:`relib_pure.runtime.procfs.wait_task_gone` (:attr:`native_id`).
        """
        with self._gate:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(_STOP)

    def join(self) -> None:
        """Wait until the thread has run its last job and left its loop.

        Like ``Thread.join`` it returns before the OS thread is gone (TLS
        destructors still run after it): only the task list says that.
        """
        if threading.get_ident() == self._ident:
            raise RuntimeError("join() on the owner thread itself")
        self._finished.acquire()
        self._finished.release()

    def _close_after_last(self) -> None:
        with self._gate:
            self._closed = True
        # everything queued before the gate closed still gets its answer
        jobs = self._jobs
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                self._execute(job)
            del job

    def _run(self) -> None:
        self._ident = threading.get_ident()
        self._native_id = threading.get_native_id()
        _live_ids.add(self._native_id)
        self._ready.release()
        try:
            jobs = self._jobs
            while True:
                job = jobs.get()
                if job is _STOP:
                    return
                self._busy = True
                try:
                    last = self._execute(job)
                finally:
                    self._busy = False
                del job  # not kept until the next job arrives
                if last:
                    self._close_after_last()
                    return
        finally:
            _live_ids.discard(self._native_id)
            _forget_dummy(self._ident)
            self._finished.release()

    @staticmethod
    def _execute(job: Any) -> bool:
        """Run one job; true when it was a successful :meth:`submit_last` job."""
        fn, args, box, done, last = job
        ok = False
        try:
            box[0] = fn(*args)
            ok = True
        except BaseException as e:  # handed to the submitting thread
            box[1] = e
        finally:
            # drop every reference to the job: the loop variables would otherwise
            # keep the last result (e.g. a 200 MB copy) alive until the next job
            del fn, args, job
            done.release()
            del box, done
        return ok and last


def _forget_dummy(ident: int) -> None:
    """Unregister the ``threading`` stand-in made for this thread, if any.

    ``threading.current_thread()`` on a thread ``threading`` did not start
    (``logging`` calls it for every record) registers a ``_DummyThread`` that
    CPython 3.11 never removes, so ``threading.enumerate()`` would list dead
    owner threads. The internals are looked up defensively: without them there
    is nothing to clean.
    """
    active = getattr(threading, "_active", None)
    lock = getattr(threading, "_active_limbo_lock", None)
    dummy = getattr(threading, "_DummyThread", None)
    if not isinstance(active, dict) or lock is None or not isinstance(dummy, type):
        return
    with lock:
        if isinstance(active.get(ident), dummy):
            del active[ident]


def _after_fork_in_child() -> None:
    # only the forking thread exists in the child
    _live_ids.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
