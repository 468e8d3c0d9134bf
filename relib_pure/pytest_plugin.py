"""pytest plugin: a test fails when the native library it used does not unload cleanly.

Active once relib-pure is installed (entry point ``pytest11``); ``-p
no:relib_pure.pytest_plugin`` turns it off. It adds:

- ``relib_load``: a fixture returning a loader, ``relib_load(path, **options)``,
  that loads a plain library (a :class:`~relib_pure.runtime.Module`) or a relib
  module (a :class:`~relib_pure.relib.RelibModule`, with ``exports``/``imports``
  as :func:`relib_pure.load_module` takes them). When the test body returns,
  every library it loaded is unloaded and verified; one that is still mapped,
  left threads, descriptors or mappings behind, refused to unload (or, with
  ``max_freed_allocations``, left relib allocations) fails the test, with the
  unload report in the message.
- ``relib_library``: the library named by the test's
  ``@pytest.mark.relib_library(path, **options)`` marker, loaded the same way
  (a relative path is taken from the test module's folder).
- ``@pytest.mark.relib_isolated``: the test (setup, call, teardown) runs in a
  forked child process; a crash there (``SIGSEGV``, ``abort()``...) is a failed
  test that names the signal, and the session goes on.
- ``--relib-cycles N``: tests using those fixtures run their body N times,
  each time loading and unloading afresh; growth of memory, descriptors,
  threads or mappings between the first and the last run fails the test
  (:mod:`relib_pure.runtime.cycles`). Libraries that other fixtures loaded
  through ``relib_load`` stay loaded over the runs and are judged after the
  last one.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from relib_pure.runtime.cycles import CycleOutcome, LibraryCycle

# relib_pure.runtime is imported only by tests that use the fixtures: every
# pytest session of a machine with relib-pure installed loads this module

__all__ = ["LibraryLoader"]

_LOADER = pytest.StashKey["LibraryLoader"]()
# set in a forked child of relib_isolated: the pipe its reports go to
_child_fd: int | None = None


class LibraryLoader:
    """The ``relib_load`` fixture's value: loads libraries for one test and judges their unload."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._pending: list[tuple[LibraryCycle, Any]] = []

    def __call__(self, path: str | os.PathLike[str], *, exports: Any = None,
                 imports: Mapping[str, Any] | None = None, import_types: Any = None,
                 interface: Any = None, relib: bool | None = None, owner: str = "thread",
                 check: bool = True, policy: Any = None,
                 max_freed_allocations: int | None = None) -> Any:
        """Load ``path`` (relative: from the test module's folder) for this test.

        Returns a ``Module`` for a plain library, a ``RelibModule`` for a relib
        module (``relib=False`` loads it plain). Its unload is verified when
        the test body returns, unless the test unloaded it itself (then that
        unload's report is judged).
        """
        cycle = self._cycle(path, exports=exports, imports=imports, import_types=import_types,
                            interface=interface, relib=relib, owner=owner, check=check,
                            policy=policy, max_freed_allocations=max_freed_allocations)
        module = cycle.load()
        self._pending.append((cycle, module))
        return module

    def _cycle(self, path: str | os.PathLike[str], **options: Any) -> LibraryCycle:
        from relib_pure.runtime.cycles import LibraryCycle

        where = Path(path)
        return LibraryCycle(where if where.is_absolute() else self._base / where, **options)

    def finish(self, pending: list[tuple[LibraryCycle, Any]] | None = None) -> CycleOutcome:
        """Unload what this test loaded (newest first; or ``pending``, what
        :meth:`set_aside` returned) and collect the verdicts."""
        from relib_pure.errors import RelibError
        from relib_pure.runtime.cycles import CycleOutcome

        if pending is None:
            pending, self._pending = self._pending, []
        reports: list[Any] = []
        problems: list[str] = []
        error: RelibError | None = None
        stop = False
        for cycle, module in pending[::-1]:
            if module.loaded:
                outcome = cycle.unload(module)
            else:  # the test unloaded it: judge that unload
                outcome = CycleOutcome(tuple(r for r in (_report_of(module),) if r is not None))
            reports.extend(outcome.reports)
            problems.extend(outcome.problems)
            error = error or outcome.error
            stop = stop or outcome.stop
        return CycleOutcome(tuple(reports), error, tuple(problems), stop)

    def set_aside(self, keep: Any = None) -> list[tuple[LibraryCycle, Any]]:
        """Take out what was loaded so far except the module ``keep``: libraries other
        fixtures loaded, which a rerun of the test body does not load again."""
        aside = [entry for entry in self._pending if entry[1] is not keep]
        self._pending = [entry for entry in self._pending if entry[1] is keep]
        return aside

    def put_back(self, entries: list[tuple[LibraryCycle, Any]]) -> None:
        self._pending[:0] = entries

    def discard(self) -> None:
        """Unload leftovers without judging them (the test already failed)."""
        from relib_pure.errors import RelibError

        pending, self._pending = self._pending, []
        for _, module in pending[::-1]:
            if module.loaded:
                try:
                    module.unload()
                except RelibError:
                    pass  # the library stays loaded; the test's own failure is the news


def _report_of(module: Any) -> Any:
    inner = getattr(module, "module", module)  # a RelibModule wraps the runtime Module
    return getattr(inner, "report", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("relib-pure", "native library unload checks (relib-pure)")
    group.addoption("--relib-cycles", type=int, default=1, metavar="N", dest="relib_cycles",
                    help="run tests that use relib_load/relib_library N times each and fail "
                         "on growth of memory, descriptors, threads or mappings (default 1)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("relib_cycles") < 1:
        raise pytest.UsageError("--relib-cycles must be at least 1")
    config.addinivalue_line(
        "markers", "relib_library(path, **options): the library the relib_library fixture "
                   "loads (options as relib_load takes them)")
    config.addinivalue_line(
        "markers", "relib_isolated: run the test in a forked child process, so that a crash "
                   "in native code fails the test (naming the signal) instead of pytest")


@pytest.fixture
def relib_load(request: pytest.FixtureRequest) -> Iterator[LibraryLoader]:
    """A loader for native libraries whose unload this test verifies (see the module doc)."""
    loader = LibraryLoader(Path(request.node.path).parent)
    request.node.stash[_LOADER] = loader
    yield loader
    loader.discard()


@pytest.fixture
def relib_library(request: pytest.FixtureRequest, relib_load: LibraryLoader) -> Any:
    """The library of the test's ``relib_library`` marker, loaded through :func:`relib_load`."""
    marker = request.node.get_closest_marker("relib_library")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{request.node.nodeid}: the relib_library fixture needs "
                                "@pytest.mark.relib_library(path, ...)")
    return relib_load(*marker.args, **marker.kwargs)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a test that loads libraries through the plugin, and judge the unloads."""
    from relib_pure.runtime.cycles import run_cycles

    loader = pyfuncitem.stash.get(_LOADER, None)
    if loader is None or inspect.iscoroutinefunction(pyfuncitem.obj):
        return None  # pytest's own call
    # the test function's own parameters (pytest's default call passes the same)
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    marker = pyfuncitem.get_closest_marker("relib_library")
    # libraries other fixtures loaded stay loaded over the reruns and are judged after
    # the last; the relib_library fixture's is loaded again for every run
    aside = loader.set_aside(keep=args.get("relib_library"))
    runs = 0

    def cycle() -> CycleOutcome:
        nonlocal runs
        if runs and "relib_library" in args and marker is not None:
            args["relib_library"] = loader(*marker.args, **marker.kwargs)
        runs += 1
        pyfuncitem.obj(**args)
        return loader.finish()
    try:
        run = run_cycles(cycle, path=pyfuncitem.nodeid,
                         cycles=pyfuncitem.config.getoption("relib_cycles"))
    except BaseException:
        loader.put_back(aside)  # the fixture's teardown unloads them
        raise
    text = [] if run.clean else [run.describe(with_path=False)]
    others = loader.finish(aside)
    if not others.clean:
        text.append("loaded by a fixture, unloaded after the test:\n" + others.describe())
    if text:
        pytest.fail("native library not unloaded cleanly\n" + "\n".join(text), pytrace=False)
    return True


# -- relib_isolated: the test in a forked child -----------------------------------------


def _send(obj: dict[str, Any]) -> None:
    if _child_fd is not None:
        os.write(_child_fd, (json.dumps(obj) + "\n").encode())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _send({"phase": "setup"})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    _send({"phase": "call"})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _send({"phase": "teardown"})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if _child_fd is not None or item.get_closest_marker("relib_isolated") is None:
        return None
    if not hasattr(os, "fork"):
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _run_forked(item, nextitem):
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _run_forked(item: pytest.Item, nextitem: pytest.Item | None) -> list[pytest.TestReport]:
    global _child_fd
    from _pytest.runner import runtestprotocol

    config = item.config
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the
        # child; the child only runs this test (the runtime resets its own locks)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: run the protocol, send the reports, never return
        code = 0
        try:
            os.close(read_fd)
            _child_fd = write_fd
            for report in runtestprotocol(item, log=False, nextitem=nextitem):
                _send({"report": config.hook.pytest_report_to_serializable(config=config,
                                                                           report=report)})
        except BaseException:  # noqa: BLE001 - the parent reports the missing result
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    phase = "setup"
    reports: list[pytest.TestReport] = []
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        msg = json.loads(line)
        if "phase" in msg:
            phase = msg["phase"]
        else:
            reports.append(config.hook.pytest_report_from_serializable(config=config,
                                                                       data=msg["report"]))
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and reports:
        return reports
    # the child wrote to the capture files it shares with this process; what the
    # crashing phase printed was never read there
    sections = []
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        out, err = capman.read_global_capture()
        sections = [(f"Captured {name} {phase}", text)
                    for name, text in (("stdout", out), ("stderr", err)) if text]
    return _crash_reports(item, reports, phase, status, time.monotonic() - started, sections)


def _crash_reports(item: pytest.Item, got: list[pytest.TestReport], phase: str, status: int,
                   duration: float,
                   sections: list[tuple[str, str]]) -> list[pytest.TestReport]:
    """Reports for a child that died: what it sent, then a failed call naming the signal."""
    if os.WIFSIGNALED(status):
        num = os.WTERMSIG(status)
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = f"signal {num}"
        how = f"was killed by {name} (signal {num})"
    else:
        how = f"exited with status {os.WEXITSTATUS(status)} without a result"
    text = (f"the child process running this test (relib_isolated) {how} during {phase} "
            "(what it printed is below; faulthandler's traceback, when Python was running, "
            "went to the terminal)")
    done = {r.when for r in got}
    make: Callable[..., pytest.TestReport] = pytest.TestReport
    keywords = {k: 1 for k in item.keywords}
    out = list(got)
    if "setup" not in done:
        out.append(make(item.nodeid, item.location, keywords, "passed", None, "setup", [], 0.0))
    if "call" not in done or phase == "teardown":
        when = "teardown" if phase == "teardown" else "call"
        out.append(make(item.nodeid, item.location, keywords, "failed", text, when, sections,
                        duration))
    if "teardown" not in done and phase != "teardown":
        out.append(make(item.nodeid, item.location, keywords, "passed", None, "teardown", [],
                        0.0))
    return out
