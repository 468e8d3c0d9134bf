"""``Reloader``: watch a library, rebuild it, validate each new version, swap it in, roll back.

One worker thread does every reload, one at a time. A cycle: wait until the
file is complete (:mod:`.settle`) -> copy it privately (:mod:`.shadow`;
identical bytes end the cycle as ``unchanged``) -> static validation
(:func:`.version.check_candidate`) -> optional trial in a child
(:mod:`.trial`) -> swap: calls in flight finish on the old version while new
calls wait, ``on_unload(old)`` hands over state, the old version is unloaded
and verified, the new one is loaded, its ``main``/``init`` runs and
``on_load(new, state)`` takes the state. When anything after the old
version's unload fails, the last good version is loaded again from its
bytes (``rolled-back``): a failed reload never leaves nothing serving unless
that restore fails too (``failed``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from relib_pure.errors import (InspectionError, ModuleUnloaded, ReloadError, RelibError,
                               StillMapped, UnloadError)
from relib_pure.model import LibraryInfo
from relib_pure.reload.build import run_build
from relib_pure.reload.events import BuildResult, Outcome, ReloadEvent
from relib_pure.reload.settle import FileState, wait_settled
from relib_pure.reload.shadow import ShadowCopy, ShadowDir, SourceChanged
from relib_pure.reload.trial import describe_spec, run_trial, trial_implementations
from relib_pure.reload.version import LoadSpec, Version, check_candidate, open_version
from relib_pure.reload.watch import ChangeKind, Watcher, join_fully
from relib_pure.runtime.report import UnloadReport

logger = logging.getLogger(__name__)

__all__ = ["Reloader", "DEFAULT_DEBOUNCE"]

#: seconds without a new file event before a change is acted on
DEFAULT_DEBOUNCE = 0.05
_STOP = ("stop", 0.0)
_COPY_ATTEMPTS = 5


def _ms(seconds: float) -> float:
    return seconds * 1000.0


class _Exports:
    """``reloader.exports.NAME(...)``: the declared export of whichever version serves."""

    def __init__(self, reloader: Reloader) -> None:
        self._reloader = reloader

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        reloader = self._reloader

        def call(*args: Any) -> Any:
            return reloader._call(lambda v: v.export(name), args)
        call.__name__ = name
        return call


class ProxyFunction:
    """A function of the reloaded library that always calls the serving version.

    Bound by name and signature; each version binds it once, on first use.
    """

    def __init__(self, reloader: Reloader, name: str, restype: Any, argtypes: Sequence[Any],
                 trait: str | None) -> None:
        self.name = name
        self._reloader = reloader
        self._key = (name, restype, tuple(argtypes), trait)

    def __call__(self, *args: Any) -> Any:
        name, restype, argtypes, trait = self._key
        return self._reloader._call(lambda v: v.function(name, restype, argtypes, trait), args)

    def __repr__(self) -> str:
        return f"<ProxyFunction {self.name} of {self._reloader.path}>"


class Reloader:
    """Keep the newest good version of the library at ``path`` loaded.

    - ``exports``, ``imports``, ``import_types``, ``interface``: as
      :func:`relib_pure.load_module` takes them (for a plain library,
      ``exports={name: (restype, [argtypes])}``); ``policy`` the static checks.
      ``relib`` forces the protocol (default: a relib module when the first
      version has relib compilation info).
    - ``main``: run a relib module's ``main`` after each load (``main_restype``);
      ``init``: for a plain library, an ``int init(void)`` run after each
      load, nonzero refusing the version. A panic or failure rolls back.
    - ``validate(info) -> str | None``: refuse a version before the swap by
      returning a reason. ``on_unload(module) -> state`` and
      ``on_load(module, state)`` hand state from one version to the next
      (``on_load`` gets ``None`` for the first version).
    - ``build`` (a command list) runs on changes under ``src`` (directories);
      its output is logged and kept in the event, a failure reported.
    - ``poll`` (seconds) watches by polling instead of inotify; ``debounce``
      is the quiet time before a change is acted on; ``settle_timeout``
      how long a file may stay incomplete before it is refused;
      ``watch=False`` only reloads when :meth:`reload` is called.
    - ``trial="child"`` loads each new version and runs its main in a child
      process first, so a crash rejects it instead of killing this process.
      The child's calls of relib imports are answered by ``imports`` here,
      in this process (on the reloader's thread), so main sees what it will
      see after the swap; ``trial_imports="zero"`` answers them with zero in
      the child instead (no host code runs for a trial).
    - ``on_event(event)`` is called for every :class:`ReloadEvent` (on the
      reloader's thread), which also go to :attr:`events` (a queue) and
      :attr:`history`.

    The first version is loaded by the constructor (its errors raise).
    ``reloader.exports.NAME(...)`` and :meth:`function` always call the
    serving version; calls made during a swap either finish on the old one
    or wait for the new one. Functions taken from :attr:`module` stay bound
    to that version and raise :class:`~relib_pure.errors.ModuleUnloaded`
    once it is replaced. :meth:`close` (or leaving a ``with`` block) stops
    watching and unloads; no thread of the reloader survives it.

    Do not call :meth:`reload` or :meth:`close` from inside a call into the
    library: the swap waits for calls in flight.
    """

    def __init__(self, path: str | os.PathLike[str], *, exports: Any = None,
                 imports: Mapping[str, Any] | None = None, import_types: Any = None,
                 interface: Any = None, policy: Any = None, relib: bool | None = None,
                 main: bool = True, main_restype: Any = None, init: str | None = None,
                 validate: Callable[[LibraryInfo], str | None] | None = None,
                 on_load: Callable[[Any, Any], None] | None = None,
                 on_unload: Callable[[Any], Any] | None = None,
                 build: Sequence[str] | None = None,
                 src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
                 build_cwd: str | os.PathLike[str] | None = None,
                 build_timeout: float | None = None, poll: float | None = None,
                 debounce: float = DEFAULT_DEBOUNCE, settle_timeout: float = 1.0,
                 trial: Literal["child"] | None = None, trial_timeout: float = 30.0,
                 trial_imports: Literal["host", "zero"] = "host",
                 owner: Literal["thread", "caller"] = "thread",
                 enable_alloc_tracker: bool = True, watch: bool = True,
                 shadow_dir: str | os.PathLike[str] | None = None,
                 on_event: Callable[[ReloadEvent], None] | None = None) -> None:
        if trial not in (None, "child"):
            raise ValueError(f"trial must be None or 'child', not {trial!r}")
        if trial_imports not in ("host", "zero"):
            raise ValueError(f"trial_imports must be 'host' or 'zero', not {trial_imports!r}")
        if owner not in ("thread", "caller"):
            raise ValueError(f"owner must be 'thread' or 'caller', not {owner!r}")
        if owner == "caller" and watch:
            raise ValueError("owner='caller' needs watch=False: the reloader's own thread "
                             "would load and unload, and only the caller may")
        self.path = os.path.abspath(os.fspath(path))
        if src is None:
            sources: tuple[str, ...] = ()
        elif isinstance(src, (str, os.PathLike)):
            sources = (os.fspath(src),)
        else:
            sources = tuple(os.fspath(s) for s in src)
        self.sources = sources
        self.build_command = tuple(build) if build is not None else None
        self._build_cwd = os.fspath(build_cwd) if build_cwd is not None else (
            sources[0] if sources else None)
        self._build_timeout = build_timeout
        self.debounce = debounce
        self.settle_timeout = settle_timeout
        self._on_load = on_load
        self._on_unload = on_unload
        self._on_event = on_event
        self._trial_timeout = trial_timeout
        self.events: queue.Queue[ReloadEvent] = queue.Queue()
        self._history: deque[ReloadEvent] = deque(maxlen=1000)

        self._cond = threading.Condition()
        self._active = 0
        self._swapping = False
        self._swapper: int | None = None
        self._serving: Version | None = None
        self._closed = False
        self._cycle_lock = threading.RLock()
        self._number = 0
        self._last_state: FileState | None = None
        self._triggers: queue.Queue[tuple[str, float]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._final: UnloadReport | None = None

        first_build = None
        if self.build_command is not None and not os.path.exists(self.path):
            first_build = run_build(self.build_command, cwd=self._build_cwd,
                                    timeout=self._build_timeout)
            if not first_build.ok:
                raise ReloadError(f"the first build failed:\n{first_build.output}",
                                  path=self.path, code="reload.build-failed")
        if relib is None:
            relib = _is_relib(self.path)
        self.spec = LoadSpec(relib=relib, exports=exports, imports=imports,
                             import_types=import_types, interface=interface, policy=policy,
                             owner=owner, main=main, main_restype=main_restype, init=init,
                             enable_alloc_tracker=enable_alloc_tracker, validate=validate)
        self.trial = trial
        self._trial_spec = describe_spec(self.spec) if trial == "child" else None
        self._trial_impls = trial_implementations(self.spec) \
            if trial == "child" and trial_imports == "host" else None
        self.exports = _Exports(self)
        self._shadow = ShadowDir(os.fspath(shadow_dir) if shadow_dir is not None else None)
        # a forgotten reloader still removes its copies at exit
        self._finalizer = weakref.finalize(self, self._shadow.close)
        try:
            # threads first: a thread started while a version is loaded would be
            # charged to that version by its unload verification
            if watch:
                self._worker = threading.Thread(target=self._run, daemon=True,
                                                name=f"relib-pure-reloader:{os.path.basename(self.path)}")
                self._worker.start()
                self._watcher = Watcher(self.path, self._notify, sources=sources, poll=poll)
                self._watcher.start()
            self._attempt(time.monotonic(), first_build, initial=True)
        except BaseException:
            self.close()
            raise

    # -- public state -----------------------------------------------------------

    @property
    def version(self) -> int | None:
        """Number of the version serving calls (``None`` when nothing serves)."""
        v = self._serving
        return v.number if v is not None else None

    @property
    def module(self) -> Any:
        """The serving version's module (a :class:`~relib_pure.relib.RelibModule` or a
        :class:`~relib_pure.runtime.Module`); functions taken from it stay bound to it."""
        v = self._serving
        if v is None:
            raise ModuleUnloaded("no version is serving", path=self.path)
        return v.handle

    @property
    def shadow_dir(self) -> str:
        """The private directory holding the shadow copies."""
        return self._shadow.path

    @property
    def history(self) -> tuple[ReloadEvent, ...]:
        """Every event so far (the last 1000), oldest first."""
        return tuple(self._history)

    def leaked_shadows(self) -> tuple[str, ...]:
        """Shadow copies kept because their version stayed mapped after unload."""
        return tuple(c.path for c in self._shadow.leaked())

    def next_event(self, timeout: float | None = None) -> ReloadEvent | None:
        """The next event from :attr:`events`, or ``None`` after ``timeout`` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def iter_events(self, timeout: float | None = None) -> Iterator[ReloadEvent]:
        """Events as they come; ends after ``timeout`` seconds without one, or on close."""
        while True:
            event = self.next_event(timeout if timeout is not None else 0.1)
            if event is not None:
                yield event
            elif timeout is not None or self._closed:
                return

    def function(self, name: str, restype: Any = None, argtypes: Sequence[Any] = (), *,
                 trait: str | None = None) -> ProxyFunction:
        """A function that always calls the serving version (relib: an export with
        ``trait``, or an ``exportify`` function when ``trait`` is ``None``)."""
        return ProxyFunction(self, name, restype, argtypes, trait)

    def __enter__(self) -> Reloader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Reloader {self.path} v{self.version} "
                f"{'closed' if self._closed else 'watching' if self._watcher else 'manual'}>")

    # -- calls --------------------------------------------------------------------

    def _call(self, resolve: Callable[[Version], Callable[..., Any]], args: tuple[Any, ...]) -> Any:
        me = threading.get_ident()
        with self._cond:
            # the swapping thread (on_unload/on_load) and the new version's owner
            # thread (imports called by main) must not wait for their own swap
            bypass = self._swapping and (me == self._swapper or me == _owner_ident(self._serving))
            while self._swapping and not bypass:
                self._cond.wait()
            v = self._serving
            if v is None:
                raise ModuleUnloaded("the reloader is closed" if self._closed else
                                     "no version is serving", path=self.path)
            if not bypass:
                self._active += 1
        try:
            return resolve(v)(*args)
        finally:
            if not bypass:
                with self._cond:
                    self._active -= 1
                    if not self._active:
                        self._cond.notify_all()

    @contextmanager
    def _watcher_quiet(self) -> Iterator[None]:
        """No watcher scan runs (and holds a descriptor) while the block runs."""
        watcher = self._watcher
        if watcher is None:
            yield
            return
        with watcher.quiet:
            yield

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """No call runs while the block runs: calls in flight finish first, new ones wait."""
        with self._cond:
            self._swapping = True
            self._swapper = threading.get_ident()
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._swapper = None
                self._cond.notify_all()

    # -- the worker -----------------------------------------------------------------

    def _notify(self, kind: ChangeKind, when: float) -> None:
        self._triggers.put((kind, when))

    def _run(self) -> None:
        while True:
            kind, first = self._triggers.get()
            if (kind, first) == _STOP:
                return
            kinds = {kind}
            # debounce: act once the events have stopped for `debounce` seconds
            while True:
                try:
                    more = self._triggers.get(timeout=self.debounce)
                except queue.Empty:
                    break
                if more == _STOP:
                    return
                kinds.add(more[0])
            try:
                if "src" in kinds and self.build_command is not None:
                    self.rebuild(detected_at=first)
                else:
                    self._attempt(first, None, watched=True)
            except Exception:  # the watcher must survive anything a cycle raises
                logger.exception("%s: reload cycle failed", self.path)

    def rebuild(self, *, detected_at: float | None = None) -> ReloadEvent | None:
        """Run the build command, then :meth:`reload`; a failed build is an event."""
        if self.build_command is None:
            raise ValueError("no build command was given")
        t0 = detected_at if detected_at is not None else time.monotonic()
        with self._cycle_lock:
            result = run_build(self.build_command, cwd=self._build_cwd,
                               timeout=self._build_timeout)
            if not result.ok:
                code = result.returncode
                return self._emit(ReloadEvent(
                    self._number, "build-failed", self.path, self.version,
                    reason=ReloadError("the build failed (" + (f"exit status {code}" if code
                                      is not None else "did not finish") + "): "
                                      + _tail(result.output), path=self.path,
                                      code="reload.build-failed"),
                    timings_ms={"build": _ms(result.seconds)}, build=result))
            return self._attempt(t0, result)

    def reload(self) -> ReloadEvent | None:
        """Check the library now and reload it if its bytes changed.

        Returns the event, or ``None`` when the file is unchanged since the
        last check (same identity) or missing (a build is replacing it).
        """
        return self._attempt(time.monotonic(), None)

    # -- one cycle ----------------------------------------------------------------

    def _attempt(self, detected_at: float, build: BuildResult | None, *,
                 initial: bool = False, watched: bool = False) -> ReloadEvent | None:
        with self._cycle_lock:
            if self._closed and not initial:
                return None
            timings: dict[str, float] = {}
            if build is not None:
                timings["build"] = _ms(build.seconds)
            copy = None
            for _ in range(_COPY_ATTEMPTS):
                settled = wait_settled(self.path, timeout=self.settle_timeout)
                if settled.state is None:
                    if initial:
                        raise InspectionError("no such file", path=self.path,
                                              code="inspect.not-found")
                    if build is not None:
                        return self._reject(self._next(), ReloadError(
                            "the build succeeded but the library is not there",
                            path=self.path, code="reload.incomplete"), timings, build)
                    logger.debug("%s: gone (being replaced?)", self.path)
                    return None
                if not initial and build is None and settled.state == self._last_state:
                    return None
                self._last_state = settled.state
                if settled.incomplete is not None:
                    err = ReloadError(f"the file is incomplete: {settled.incomplete}",
                                      path=self.path, code="reload.incomplete")
                    if initial:
                        raise err
                    timings["detect"] = _ms(time.monotonic() - detected_at)
                    return self._reject(self._next(), err, timings, build)
                t_settled = time.monotonic()
                try:
                    copy = self._shadow.copy(self.path)
                    break
                except SourceChanged:
                    logger.debug("%s: changed while being copied; waiting again", self.path)
                    continue
                except InspectionError as e:
                    if initial:
                        raise
                    logger.debug("%s: cannot copy: %s", self.path, e)
                    return None
            if copy is None:
                err = ReloadError("the file kept changing while it was being copied",
                                  path=self.path, code="reload.incomplete")
                if initial:
                    raise err
                return self._reject(self._next(), err, timings, build)
            t_copied = time.monotonic()
            if watched and self._last_state is not None:
                detected_at = _change_time(detected_at, self._last_state)
            timings["detect"] = _ms(t_settled - detected_at)
            timings["copy"] = _ms(t_copied - t_settled)
            serving = self._serving
            if serving is not None and copy.sha256 == serving.copy.sha256:
                self._shadow.discard(copy)
                return self._emit(ReloadEvent(serving.number, "unchanged", self.path,
                                              serving.number, sha256=copy.sha256,
                                              timings_ms=timings, build=build))
            number = self._next()
            try:
                check_candidate(copy.path, self.spec)
            except RelibError as e:
                self._shadow.discard(copy)
                if initial:
                    raise
                timings["validate"] = _ms(time.monotonic() - t_copied)
                return self._reject(number, e, timings, build, copy)
            t_valid = time.monotonic()
            timings["validate"] = _ms(t_valid - t_copied)
            if self._trial_spec is not None:
                result = run_trial(copy.path, self._trial_spec, timeout=self._trial_timeout,
                                   implementations=self._trial_impls)
                timings["trial"] = _ms(time.monotonic() - t_valid)
                if not result.ok:
                    self._shadow.discard(copy)
                    err = ReloadError(result.reason(), path=self.path,
                                      code="reload.trial-failed")
                    if initial:
                        raise err
                    return self._reject(number, err, timings, build, copy)
            return self._swap(number, copy, detected_at, timings, build, initial)

    def _next(self) -> int:
        self._number += 1
        return self._number

    def _reject(self, number: int, error: RelibError, timings: dict[str, float],
                build: BuildResult | None, copy: ShadowCopy | None = None) -> ReloadEvent:
        logger.warning("%s: version %d rejected: %s", self.path, number, error)
        return self._emit(ReloadEvent(number, "rejected", self.path, self.version,
                                      sha256=copy.sha256 if copy else None, reason=error,
                                      timings_ms=timings, build=build))

    def _swap(self, number: int, copy: ShadowCopy, detected_at: float,
              timings: dict[str, float], build: BuildResult | None,
              initial: bool) -> ReloadEvent:
        old = self._serving
        state: Any = None
        report: UnloadReport | None = None
        outcome: Outcome = "loaded"
        error: RelibError | None = None
        new: Version | None = None
        with self._exclusive(), self._watcher_quiet():
            if old is not None:
                if self._on_unload is not None:
                    try:
                        state = self._on_unload(old.handle)
                    except Exception as e:
                        self._shadow.discard(copy)
                        return self._reject(number, _callback_error("on_unload", e, self.path),
                                            timings, build, copy)
                t0 = time.monotonic()
                try:
                    report = old.unload()
                except StillMapped as e:
                    report = e.report
                except UnloadError as e:
                    if old.loaded:  # refused (threads running, before_unload panicked)
                        self._shadow.discard(copy)
                        timings["unload"] = _ms(time.monotonic() - t0)
                        return self._reject(number, e, timings, build, copy)
                    report = e.report if isinstance(e.report, UnloadReport) else None
                    logger.warning("%s: version %d given up: %s", self.path, old.number, e)
                self._serving = None
                timings["unload"] = _ms(time.monotonic() - t0)
            t1 = time.monotonic()
            try:
                new = self._start(number, copy, state)
            except Exception as e:
                error = e if isinstance(e, RelibError) else _callback_error("on_load", e,
                                                                             self.path)
                timings["load"] = _ms(time.monotonic() - t1)
                if initial:
                    raise error from (None if error is e else e)
                if old is None:  # nothing served before either (an earlier restore failed)
                    outcome = "failed"
                    logger.warning("%s: version %d failed: %s", self.path, number, error)
                else:
                    new, outcome = self._restore(old, report, state, error)
            else:
                timings["load"] = _ms(time.monotonic() - t1)
                if old is not None:
                    self._retire(old, report)
        timings["total"] = _ms(time.monotonic() - detected_at)
        event = ReloadEvent(number, outcome, self.path, new.number if new else None,
                            sha256=copy.sha256, shadow=copy.path if outcome == "loaded" else None,
                            reason=error, timings_ms=timings, unload=report, build=build,
                            main_result=new.main_result if new is not None else None,
                            leaked_shadows=self.leaked_shadows())
        if outcome == "loaded":
            logger.info("%s: version %d loaded in %.1f ms", self.path, number, timings["total"])
        return self._emit(event)

    def _restore(self, old: Version, report: UnloadReport | None, state: Any,
                 error: RelibError) -> tuple[Version | None, Outcome]:
        """Load the last good version again after its successor failed."""
        logger.warning("%s: version failed, restoring %d: %s", self.path, old.number, error)
        try:
            restore = old.copy if report is not None and report.unloaded \
                else self._shadow.duplicate(old.copy)
            new = self._start(old.number, restore, state)
        except Exception as e:
            logger.error("%s: restoring version %d failed too: %s", self.path, old.number, e)
            self._retire(old, report)
            return None, "failed"
        if restore is not old.copy:
            self._retire(old, report)
        return new, "rolled-back"

    def _start(self, number: int, copy: ShadowCopy, state: Any) -> Version:
        """Load ``copy`` and make it serve: main/init, then ``on_load``. On failure the
        copy is unloaded again (and deleted, unless it stays mapped) and the error raised."""
        try:
            v = open_version(number, copy, self.spec)
        except BaseException:
            self._shadow.discard(copy)
            raise
        self._serving = v
        try:
            v.start()
            if self._on_load is not None:
                self._on_load(v.handle, state)
        except BaseException:
            self._serving = None
            report = None
            try:
                report = v.unload()
            except RelibError as e:
                report = getattr(e, "report", None)
                logger.warning("%s: unloading the failed version %d: %s", self.path, number, e)
            self._retire(v, report)
            raise
        return v

    def _retire(self, v: Version, report: UnloadReport | None) -> None:
        """Delete an unloaded version's copy, or keep and list it when it stayed mapped."""
        if report is not None and report.unloaded and not v.loaded:
            self._shadow.discard(v.copy)
        elif not v.loaded:
            self._shadow.keep(v.copy)

    def _emit(self, event: ReloadEvent) -> ReloadEvent:
        self._history.append(event)
        self.events.put(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("%s: on_event raised", self.path)
        return event

    # -- closing ------------------------------------------------------------------

    def close(self) -> UnloadReport | None:
        """Stop watching, stop the reloader's thread, unload the serving version and
        delete the shadow copies. Returns the last version's unload report."""
        with self._cond:
            if self._closed:
                return self._final
            self._closed = True
        if self._watcher is not None:
            self._watcher.stop()
        if self._worker is not None:
            self._triggers.put(_STOP)
            if self._worker is not threading.current_thread():
                join_fully(self._worker)
        with self._cycle_lock, self._exclusive():
            # the watcher is stopped already: its scans cannot overlap this unload
            v, self._serving = self._serving, None
            if v is not None and v.loaded:
                try:
                    self._final = v.unload()
                except RelibError as e:
                    logger.warning("%s: unloading version %d at close: %s", self.path,
                                   v.number, e)
                    report = getattr(e, "report", None)
                    self._final = report if isinstance(report, UnloadReport) else None
                self._retire(v, self._final)
        leaked = self._shadow.close()
        self._finalizer.detach()
        if leaked:
            logger.warning("%s: shadow copies still mapped: %s", self.path,
                           ", ".join(c.path for c in leaked))
        return self._final


def _change_time(noticed: float, state: FileState) -> float:
    """When the change began, on the monotonic clock: the file's last write if that
    came before the watcher noticed (a polling observer notices up to one interval
    late; a rename publishes a file written earlier), else when it was noticed.

    A modification time far off (another machine's clock on a network file
    system) is not believed.
    """
    now_wall, now = time.time(), time.monotonic()
    written = now - (now_wall - state.mtime_ns / 1e9)
    return written if noticed - 10.0 < written < noticed else noticed


def _owner_ident(v: Version | None) -> int | None:
    if v is None:
        return None
    module = getattr(v.handle, "module", v.handle)
    ident = getattr(module, "owner_ident", None)
    return ident if isinstance(ident, int) else None


def _is_relib(path: str) -> bool:
    from relib_pure.inspection import inspect

    info = inspect(path)
    return info.relib is not None and info.relib.compilation_info is not None


def _callback_error(which: str, e: BaseException, path: str) -> ReloadError:
    return ReloadError(f"{which} raised {type(e).__name__}: {e}", path=path,
                       code="reload.callback-failed")


def _tail(text: str, lines: int = 5) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"
