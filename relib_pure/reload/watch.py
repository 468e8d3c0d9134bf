"""File watching for the reloader: watchdog observers reduced to "this changed, now".

The library is watched through its directory (builds replace it by rename,
which a watch on the file itself would lose); a source tree is watched
recursively. Opening and reading a file are no changes, so the reloader's own
copies and inspections never trigger anything. ``poll`` (seconds) uses a
polling observer, for containers and network file systems where inotify
sees nothing; its directory scans pause while a version is swapped
(:attr:`Watcher.quiet`), so no scan descriptor is open when an unload is
verified.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from watchdog.events import (FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)

logger = logging.getLogger(__name__)

__all__ = ["Watcher", "ChangeKind", "BUILD_OUTPUT_SUFFIXES", "output_folders"]

ChangeKind = Literal["lib", "src"]

# events that can change a file's bytes or name; opened/closed-without-write are not
_CHANGES: list[type[FileSystemEvent]] = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent,
                                         FileClosedEvent, FileDeletedEvent]
# how long an inotify observer may take to notice stop(): its join waits this long
_OBSERVER_TIMEOUT = 0.05


def _paths(event: FileSystemEvent) -> tuple[str, ...]:
    dest = getattr(event, "dest_path", "")
    paths = (event.src_path, dest) if dest else (event.src_path,)
    return tuple(os.fsdecode(p) for p in paths)


class _Handler(FileSystemEventHandler):
    def __init__(self, match: Callable[[str], bool], kind: ChangeKind,
                 notify: Callable[[ChangeKind, float], None]) -> None:
        self._match = match
        self._kind: ChangeKind = kind
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if any(self._match(p) for p in _paths(event)):
            logger.debug("%s change: %s %s", self._kind, event.event_type, _paths(event))
            self._notify(self._kind, time.monotonic())


#: file endings of what builds and editors write next to sources: no source change
BUILD_OUTPUT_SUFFIXES = (".o", ".obj", ".d", ".a", ".so", ".dll", ".dylib", ".rlib", ".rmeta",
                         ".pyc", ".tmp", ".swp", ".swx", ".lock", "~")


def output_folders(library: str, sources: Sequence[str]) -> tuple[str, ...]:
    """Build output folders inside source roots: for each root that holds the
    library below it, the root's child on the way (``target`` for
    ``proj/target/debug/lib.so`` and root ``proj``). A library directly in a
    root gives none: the root is sources."""
    lib = os.path.abspath(library)
    found = []
    for root in sources:
        root = os.path.abspath(root)
        rel = os.path.relpath(os.path.dirname(lib), root)
        if rel != "." and not rel.startswith(".."):
            found.append(os.path.join(root, rel.split(os.sep)[0]))
    return tuple(found)


class Watcher:
    """Calls ``notify(kind, monotonic_time)`` on every change of ``library`` (``"lib"``)
    or of a file under one of ``sources`` (``"src"``), from watchdog's thread.

    What a build writes is no source change: the library itself, files under
    :func:`output_folders` (``target/`` of a cargo project watched from its
    root) and files ending in :data:`BUILD_OUTPUT_SUFFIXES` (objects, editor
    swap files). Every other change, also one made while a build runs, is.
    :meth:`start` and :meth:`stop` start and join the observer's threads.
    """

    def __init__(self, library: str, notify: Callable[[ChangeKind, float], None], *,
                 sources: Sequence[str] = (), poll: float | None = None) -> None:
        self.library = os.path.abspath(library)
        self._real = os.path.realpath(self.library)
        self.sources = tuple(os.path.abspath(s) for s in sources)
        self._ignore = tuple(f + os.sep for f in output_folders(self.library, self.sources))
        self.poll = poll
        self._observer: Any = None
        self._notify = notify
        #: held while no watcher thread may open a descriptor (see :meth:`_listdir`)
        self.quiet = threading.Lock()

    def _listdir(self, path: str | None) -> Iterator[os.DirEntry[str]]:
        # a directory scan holds a descriptor open: never while a version is being
        # swapped, whose unload verification would count it as left behind
        with self.quiet:
            with os.scandir(path) as entries:
                found = list(entries)
        return iter(found)

    def _is_library(self, path: str) -> bool:
        return path in (self.library, self._real)

    def _is_source(self, path: str) -> bool:
        return not (path.startswith(self._ignore) or path.endswith(BUILD_OUTPUT_SUFFIXES)
                    or self._is_library(path))

    def start(self) -> None:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserverVFS

        observer = (PollingObserverVFS(os.stat, self._listdir, polling_interval=self.poll)
                    if self.poll is not None else Observer(timeout=_OBSERVER_TIMEOUT))
        observer.schedule(_Handler(self._is_library, "lib", self._notify),
                          os.path.dirname(self.library), event_filter=_CHANGES)
        for src in self.sources:
            observer.schedule(_Handler(self._is_source, "src", self._notify), src,
                              recursive=True, event_filter=_CHANGES)
        observer.daemon = True
        observer.start()
        self._observer = observer
        logger.debug("watching %s%s (%s)", self.library,
                     f" and {', '.join(self.sources)}" if self.sources else "",
                     f"polling every {self.poll} s" if self.poll is not None else "inotify")

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        observer.stop()
        emitters = list(getattr(observer, "emitters", ()))
        join_fully(observer)
        for emitter in emitters:  # its inotify/polling threads
            join_fully(emitter)


def join_fully(thread: threading.Thread, timeout: float = 5.0) -> None:
    """``thread.join()``, then wait until the OS thread has left the task list.

    ``join`` returns once Python's part of the thread is done; the kernel task
    goes a moment later. Whoever counts threads right after a close (a test of
    "nothing left running", a leak check) must not see it.
    """
    from relib_pure.runtime import procfs

    if thread is threading.current_thread():
        return
    thread.join(timeout)
    tid = thread.native_id
    if tid is not None and not thread.is_alive():
        procfs.wait_task_gone(tid, timeout)
