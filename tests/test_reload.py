"""Reloader on a plain C library rebuilt with gcc while it is loaded.

Every new version is a real compile of fixtures/reload/reloadable.c with a
different VALUE; the library file is replaced by rename (as linkers and
cargo do) or written in place where the test is about partial writes.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relib_pure import Reloader, ReloadEvent
from relib_pure.errors import ModuleUnloaded, ReloadError, SymbolMissing

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and not os.environ.get("CI"),
                                reason="gcc is not installed")

SOURCE = Path(__file__).resolve().parent.parent / "fixtures" / "reload" / "reloadable.c"
EXPORTS = {"reload_value": (ctypes.c_int, []), "reload_add": (ctypes.c_int, [ctypes.c_int] * 2),
           "reload_slow": (ctypes.c_int, [ctypes.c_int]), "reload_calls": (ctypes.c_int, [])}
DEBOUNCE = 0.02
WAIT = 10.0


_BUILT: dict[tuple[object, ...], Path] = {}
_BUILDS = Path(tempfile.mkdtemp(prefix="reload-builds-"))
atexit.register(shutil.rmtree, _BUILDS, ignore_errors=True)


def compile_lib(out: Path, value: int, *defines: str, source: Path = SOURCE) -> Path:
    """gcc the fixture with VALUE=value into ``out``, replacing it by rename.

    A build of the same source and flags is compiled once per session and copied
    after that (gcc output is deterministic): the tests stay real rebuilds without
    paying for the same compile twice.
    """
    key = (source.read_bytes(), value, defines)
    built = _BUILT.get(key)
    if built is None or not built.exists():
        built = _BUILDS / f"lib{len(_BUILT)}.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-DVALUE={value}",
                        *(f"-D{d}" for d in defines), "-o", str(built), str(source)],
                       check=True, capture_output=True)
        _BUILT[key] = built
    tmp = out.with_name(f".{out.name}.{value}.tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, out)
    return out


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    out = tmp_path / "out" / "libreloadable.so"
    out.parent.mkdir()
    return compile_lib(out, 1)


@pytest.fixture
def reloader(lib: Path) -> Iterator[Callable[..., Reloader]]:
    made: list[Reloader] = []

    def make(**kw: object) -> Reloader:
        kw.setdefault("exports", EXPORTS)
        kw.setdefault("debounce", DEBOUNCE)
        kw.setdefault("init", "reload_init")
        r = Reloader(lib, **kw)  # type: ignore[arg-type]
        made.append(r)
        first = r.next_event(0)
        assert first is not None and first.outcome == "loaded" and first.version == 1
        return r
    yield make
    for r in made:
        r.close()


def next_outcome(r: Reloader, *skip: str) -> ReloadEvent:
    while True:
        event = r.next_event(WAIT)
        assert event is not None, "no reload event"
        if event.outcome not in skip:
            return event


def test_new_code_runs_after_a_rebuild(lib: Path, reloader: Callable[..., Reloader]) -> None:
    r = reloader()
    assert r.exports.reload_value() == 1
    old_fn = r.module.function("reload_value", ctypes.c_int, ())
    compile_lib(lib, 2)
    event = next_outcome(r)
    assert (event.outcome, event.version, event.serving, event.reason) == ("loaded", 2, 2, None)
    assert r.exports.reload_value() == 2 and r.exports.reload_add(3, 4) == 9
    assert r.function("reload_value", ctypes.c_int)() == 2
    # the previous version really left, and what was bound to it says so
    assert event.unload is not None and event.unload.clean
    with pytest.raises(ModuleUnloaded):
        old_fn()
    t = event.timings_ms
    assert {"detect", "copy", "validate", "unload", "load", "total"} <= set(t)
    assert t["total"] >= t["detect"] >= DEBOUNCE * 1000 * 0.9


def test_source_change_runs_the_build_and_a_broken_build_keeps_the_version(
        tmp_path: Path, lib: Path, reloader: Callable[..., Reloader]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    source = src / "reloadable.c"
    source.write_text(SOURCE.read_text())
    r = reloader(build=["gcc", "-shared", "-fPIC", "-o", str(lib), str(source)], src=src)
    source.write_text("#define VALUE 7\n" + SOURCE.read_text())
    event = next_outcome(r)
    assert event.outcome == "loaded" and event.build is not None and event.build.ok
    assert r.exports.reload_value() == 7
    source.write_text("int reload_value(void) { return }\n")
    event = next_outcome(r)
    assert event.outcome == "build-failed" and event.serving == 2
    assert event.reason is not None and event.reason.code == "reload.build-failed"
    assert "error" in event.reason.message and event.build is not None
    assert event.build.returncode not in (0, None) and "reloadable.c" in event.build.output
    assert r.exports.reload_value() == 7
    assert r.next_event(0.3) is None  # one build per change: no reload follows the failure


def test_a_library_built_inside_its_source_folder_reloads_once_per_edit(
        tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    source = folder / "reloadable.c"
    source.write_text(SOURCE.read_text())
    lib = folder / "libreloadable.so"
    # objects and the library land next to the source, as a simple Makefile does
    build = ["sh", "-c", "gcc -c -fPIC -o reloadable.o reloadable.c && "
             "gcc -shared -o libreloadable.so reloadable.o"]
    with Reloader(lib, exports=EXPORTS, build=build, src=folder, debounce=DEBOUNCE) as r:
        assert r.next_event(0) is not None and r.exports.reload_value() == 1
        source.write_text("#define VALUE 5\n" + SOURCE.read_text())
        event = next_outcome(r)
        assert event.outcome == "loaded" and r.exports.reload_value() == 5
        assert r.next_event(0.5) is None  # the build's own writes started no second build
        assert [e.outcome for e in r.history] == ["loaded", "loaded"]


def test_an_edit_made_while_the_build_runs_gets_its_own_build(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    source = folder / "reloadable.c"
    source.write_text(SOURCE.read_text())
    lib = tmp_path / "out" / "libreloadable.so"
    lib.parent.mkdir()
    compile_lib(lib, 1)
    snap = tmp_path / "snapshot.c"
    # the build reads the source first, then takes its time: an edit in between is new
    build = ["sh", "-c", f"cp {source} {snap} && sleep 0.4 && "
             f"gcc -shared -fPIC -o {lib}.tmp {snap} && mv {lib}.tmp {lib}"]
    with Reloader(lib, exports=EXPORTS, build=build, src=folder, debounce=DEBOUNCE) as r:
        assert r.next_event(0) is not None
        source.write_text("#define VALUE 5\n" + SOURCE.read_text())
        deadline = time.monotonic() + WAIT
        while not (snap.exists() and "VALUE 5" in snap.read_text()):  # the build has read it
            assert time.monotonic() < deadline, "the first build did not start"
            time.sleep(0.005)
        source.write_text("#define VALUE 9\n" + SOURCE.read_text())
        first = next_outcome(r)
        assert first.outcome == "loaded"
        second = next_outcome(r)
        assert second.outcome == "loaded" and r.exports.reload_value() == 9
        assert first.sha256 != second.sha256  # the first build made the VALUE 5 library
        assert [e.build is not None for e in r.history] == [False, True, True]
        assert r.next_event(0.5) is None


def test_build_output_folders_are_the_roots_child_towards_the_library() -> None:
    from relib_pure.reload.watch import output_folders

    assert output_folders("/p/target/debug/libm.so", ["/p"]) == ("/p/target",)
    assert output_folders("/p/libm.so", ["/p"]) == ()  # the root itself is sources
    assert output_folders("/out/libm.so", ["/p", "/q/"]) == ()
    assert output_folders("/p/build/x/libm.so", ["/p/src", "/p"]) == ("/p/build",)


def test_a_version_that_stays_mapped_keeps_its_copy_listed(
        tmp_path: Path) -> None:
    lib = tmp_path / "libnodelete.so"

    def build(value: int) -> None:
        tmp = tmp_path / ".next.so"
        subprocess.run(["gcc", "-shared", "-fPIC", f"-DVALUE={value}", "-Wl,-z,nodelete",
                        "-o", str(tmp), str(SOURCE)], check=True)
        os.replace(tmp, lib)
    build(1)
    # a warning only; and the shadow copy's fresh name and inode mean the new code loads
    r = Reloader(lib, exports=EXPORTS, watch=False)
    first = r.module.validated.path
    build(2)
    event = r.reload()
    assert event is not None and event.outcome == "loaded" and r.exports.reload_value() == 2
    assert event.unload is not None and not event.unload.unloaded
    assert "nodelete" in event.unload.cause_codes
    assert event.leaked_shadows == (first,) and r.leaked_shadows() == (first,)
    shadow = Path(r.shadow_dir)
    second = event.shadow
    report = r.close()
    assert report is not None and not report.unloaded
    # the directory stays for the copies still mapped (until exit), and only for them
    assert sorted(str(p) for p in shadow.iterdir()) == [first, second]
    assert r.leaked_shadows() == (first, second)
    maps = Path("/proc/self/maps").read_text()
    assert first in maps and second in maps


def test_failing_init_rolls_back_to_the_last_good_version(
        lib: Path, reloader: Callable[..., Reloader]) -> None:
    r = reloader()
    compile_lib(lib, 2, "INIT_RESULT=3")
    event = next_outcome(r)
    assert (event.outcome, event.version, event.serving) == ("rolled-back", 2, 1)
    assert event.reason is not None and event.reason.code == "reload.main-failed"
    assert "reload_init() returned 3" in event.reason.message
    assert r.version == 1 and r.exports.reload_value() == 1
    compile_lib(lib, 4)
    event = next_outcome(r)
    assert (event.outcome, event.serving) == ("loaded", 3) and r.exports.reload_value() == 4


def test_when_the_restore_fails_too_nothing_serves_until_a_good_version(
        lib: Path, reloader: Callable[..., Reloader]) -> None:
    refuse = False

    def on_load(module: object, state: object) -> None:
        if refuse:
            raise RuntimeError("on_load refuses every version now")
    r = reloader(watch=False, on_load=on_load)
    refuse = True
    compile_lib(lib, 2)
    event = r.reload()
    assert event is not None and (event.outcome, event.serving) == ("failed", None)
    assert event.reason is not None and event.reason.code == "reload.callback-failed"
    assert "on_load refuses every version now" in event.reason.message
    with pytest.raises(ModuleUnloaded, match="no version is serving"):
        r.exports.reload_value()
    assert r.version is None and list(Path(r.shadow_dir).iterdir()) == []
    refuse = False
    compile_lib(lib, 3)
    event = r.reload()
    assert event is not None and (event.outcome, event.serving) == ("loaded", 3)
    assert r.exports.reload_value() == 3


def test_validation_refuses_before_the_serving_version_is_touched(
        lib: Path, reloader: Callable[..., Reloader]) -> None:
    seen: list[str] = []

    def validate(info: object) -> str | None:
        seen.append(getattr(info, "sha256"))
        return "version 2 is not wanted" if len(seen) == 2 else None
    r = reloader(validate=validate)
    module = r.module
    compile_lib(lib, 2)
    event = next_outcome(r)
    assert (event.outcome, event.serving, event.unload) == ("rejected", 1, None)
    assert event.reason is not None and event.reason.code == "reload.invalid"
    assert "version 2 is not wanted" in event.reason.message
    assert r.module is module and module.loaded and r.exports.reload_value() == 1
    # a library lacking a declared export is refused the same way
    stripped = lib.parent / "stripped.c"
    stripped.write_text(SOURCE.read_text().replace("int reload_calls(void)",
                                                   "static int reload_calls(void)"))
    compile_lib(lib, 3, source=stripped)
    event = next_outcome(r)
    assert event.outcome == "rejected" and isinstance(event.reason, SymbolMissing)
    assert event.reason.symbols == ("reload_calls",)
    assert r.module is module and r.exports.reload_value() == 1


def test_truncated_write_is_never_loaded(lib: Path, tmp_path: Path,
                                         reloader: Callable[..., Reloader]) -> None:
    r = reloader(settle_timeout=0.2)
    v2 = compile_lib(tmp_path / "v2.so", 2).read_bytes()
    with open(lib, "r+b") as f:  # in place, as a copy interrupted halfway leaves it
        f.truncate(0)
        f.write(v2[:len(v2) // 2])
    event = next_outcome(r)
    assert (event.outcome, event.serving) == ("rejected", 1)
    assert event.reason is not None and event.reason.code == "reload.incomplete"
    assert "past the file's" in event.reason.message
    assert r.exports.reload_value() == 1
    with open(lib, "ab") as f:
        f.write(v2[len(v2) // 2:])
    event = next_outcome(r)
    assert event.outcome == "loaded" and r.exports.reload_value() == 2


def test_identical_rewrite_is_no_reload(lib: Path, reloader: Callable[..., Reloader]) -> None:
    r = reloader()
    module = r.module
    copy = lib.with_name("copy.so")
    shutil.copy2(lib, copy)
    os.replace(copy, lib)  # a new inode with the same bytes
    event = next_outcome(r)
    assert (event.outcome, event.version, event.serving) == ("unchanged", 1, 1)
    assert r.module is module and module.loaded
    compile_lib(lib, 1)  # a rebuild of unchanged code gives the same bytes again
    assert next_outcome(r).outcome == "unchanged"
    assert [e.outcome for e in r.history] == ["loaded", "unchanged", "unchanged"]


def test_rapid_writes_give_one_reload(lib: Path, tmp_path: Path,
                                      reloader: Callable[..., Reloader]) -> None:
    builds = [compile_lib(tmp_path / f"v{i}.so", i) for i in range(2, 7)]
    r = reloader(debounce=0.3)
    for b in builds:
        shutil.copy(b, lib)
        time.sleep(0.01)
    event = next_outcome(r)
    assert event.outcome == "loaded" and r.exports.reload_value() == 6
    assert r.next_event(0.4) is None


def test_shadow_copies_are_private_and_deleted(lib: Path,
                                               reloader: Callable[..., Reloader]) -> None:
    r = reloader()
    shadow = Path(r.shadow_dir)
    assert stat.S_IMODE(shadow.stat().st_mode) == 0o700 and shadow.stat().st_uid == os.getuid()
    (first,) = shadow.iterdir()
    assert stat.S_IMODE(first.stat().st_mode) == 0o500
    assert str(first) in Path("/proc/self/maps").read_text()
    compile_lib(lib, 2)
    event = next_outcome(r)
    assert event.outcome == "loaded" and event.shadow is not None
    assert [p.name for p in shadow.iterdir()] == [Path(event.shadow).name]
    assert not first.exists() and r.leaked_shadows() == ()
    r.close()
    assert not shadow.exists()


def test_calls_during_a_swap_finish_on_the_old_version_or_wait(
        lib: Path, reloader: Callable[..., Reloader]) -> None:
    r = reloader(watch=False)
    results: dict[str, int] = {}
    started = threading.Event()

    def slow() -> None:
        started.set()
        results["in_flight"] = r.exports.reload_slow(300)
    t = threading.Thread(target=slow)
    t.start()
    started.wait()
    time.sleep(0.05)  # the slow call is inside the library now
    compile_lib(lib, 2)
    swap = threading.Thread(target=lambda: results.setdefault("version", r.reload().version))
    swap.start()
    time.sleep(0.05)
    # asked for while the swap waits on the call in flight: served by the new version
    results["during"] = r.exports.reload_value()
    swap.join(WAIT)
    t.join(WAIT)
    assert results == {"in_flight": 1, "version": 2, "during": 2}


def test_on_unload_state_reaches_on_load(lib: Path,
                                         reloader: Callable[..., Reloader]) -> None:
    handed: list[tuple[int, object]] = []

    def on_unload(module: object) -> int:
        return int(module.function("reload_calls", ctypes.c_int)())  # type: ignore[attr-defined]

    def on_load(module: object, state: object) -> None:
        handed.append((int(module.function("reload_value", ctypes.c_int)()), state))  # type: ignore[attr-defined]
    r = reloader(watch=False, on_unload=on_unload, on_load=on_load)
    for _ in range(3):
        r.exports.reload_add(1, 1)
    compile_lib(lib, 2)
    event = r.reload()
    assert event is not None and event.outcome == "loaded"
    assert handed == [(1, None), (2, 3)]


def test_a_crash_in_the_trial_child_rejects_the_version(
        lib: Path, reloader: Callable[..., Reloader]) -> None:
    r = reloader(watch=False, trial="child")
    compile_lib(lib, 2, "CRASH_IN_INIT")
    event = r.reload()
    assert event is not None and (event.outcome, event.serving) == ("rejected", 1)
    assert event.reason is not None and event.reason.code == "reload.trial-failed"
    assert "SIGSEGV" in event.reason.message and "timings_ms" not in event.reason.message
    assert "trial" in event.timings_ms and r.exports.reload_value() == 1
    compile_lib(lib, 3)
    event = r.reload()
    assert event is not None and event.outcome == "loaded" and r.exports.reload_value() == 3


def test_polling_observer_sees_the_change(lib: Path,
                                          reloader: Callable[..., Reloader]) -> None:
    r = reloader(poll=0.05)
    compile_lib(lib, 2)
    assert next_outcome(r).outcome == "loaded" and r.exports.reload_value() == 2


def _threads() -> tuple[set[str], int]:
    return ({t.name for t in threading.enumerate()}, len(os.listdir("/proc/self/task")))


def _fd_count() -> int:
    """Open descriptors, less the host's kept-open ones (maps/statm, opened once per
    process on first use: a test that runs first would otherwise count them)."""
    from relib_pure import _hostfds

    with _hostfds.lock:
        return len(set(os.listdir("/proc/self/fd")) - {str(fd) for fd in _hostfds.fds})


@pytest.mark.parametrize("poll", [None, 0.05])
def test_close_leaves_nothing_running(lib: Path, poll: float | None) -> None:
    before = _threads()
    fds = _fd_count()
    r = Reloader(lib, exports=EXPORTS, debounce=DEBOUNCE, poll=poll)
    assert _threads() != before  # the worker and the observer run
    compile_lib(lib, 2)
    assert r.next_event(0) is not None  # version 1
    assert next_outcome(r).outcome == "loaded" and r.version == 2
    report = r.close()
    assert report is not None and report.clean
    assert _threads() == before and _fd_count() == fds
    with pytest.raises(ModuleUnloaded):
        r.exports.reload_value()
    assert r.close() is report


def test_a_first_version_that_fails_raises_and_leaves_nothing(lib: Path) -> None:
    before = _threads()
    shadows = set(Path("/tmp").glob(f"relib-pure-shadow-{os.getpid()}-*"))
    compile_lib(lib, 1, "INIT_RESULT=9")
    with pytest.raises(ReloadError) as info:
        Reloader(lib, exports=EXPORTS, init="reload_init", debounce=DEBOUNCE)
    assert info.value.code == "reload.main-failed"
    assert _threads() == before
    assert set(Path("/tmp").glob(f"relib-pure-shadow-{os.getpid()}-*")) == shadows


def test_many_reloads_leave_counts_flat(lib: Path, tmp_path: Path,
                                        reloader: Callable[..., Reloader]) -> None:
    a, b = lib.read_bytes(), compile_lib(tmp_path / "v2.so", 2).read_bytes()
    r = reloader(watch=False)

    def counts() -> tuple[int, int, int]:
        # the mappings of shadow copies: only the serving version's may be left
        shadows = Path("/proc/self/maps").read_text().count(r.shadow_dir)
        return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")), shadows

    def mappings() -> int:
        return Path("/proc/self/maps").read_text().count("\n")

    def rss_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")
    for i in range(20):  # warm-up: caches and allocator arenas reach their size
        lib.write_bytes(b if i % 2 == 0 else a)
        r.reload()
    start, rss, maps = counts(), rss_kb(), mappings()
    for i in range(200):
        lib.write_bytes(b if i % 2 == 0 else a)
        event = r.reload()
        assert event is not None and event.outcome == "loaded", event
        assert r.exports.reload_value() == (2 if i % 2 == 0 else 1)
    assert counts() == start
    # the allocator may split or add an arena mapping; a leak per reload would be 200
    assert mappings() - maps <= 3
    assert rss_kb() - rss < 4096
    assert len(list(Path(r.shadow_dir).iterdir())) == 1


def test_bench_reload_smoke(repo_root: Path) -> None:
    """The benchmark runs end to end (a few rounds, a short debounce)."""
    import sys

    r = subprocess.run([sys.executable, str(repo_root / "tools" / "bench_reload.py"),
                        "--rounds", "3", "--debounce", "0.01", "--poll", "0.02"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()
            if line.startswith(("inotify", "polling"))}
    assert set(rows) == {"inotify", "polling"}
    assert all("x  detect" in row and "load" in row for row in rows.values())
