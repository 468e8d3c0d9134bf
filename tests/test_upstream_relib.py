"""Upstream relib's own test scenarios (relib 0.7.0 ``testing/``), built from the kit's
sources and hosted by relib_pure through its public API.

Each scenario is a cargo feature set of upstream's ``testing/module`` crate
(``tools/relib_kit.py``). The expectations are upstream's host's
(``testing/host/src/<scenario>.rs``); upstream's own ``test_host`` is run on the
same builds so a failure here can be told apart from an upstream failure.
Scenarios that abort the process or keep their module loaded for good run in a
child interpreter (``tests/upstream_relib.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from relib_pure.errors import (AlreadyLoaded, BeforeUnloadPanicked, ExportPanicked,
                               ThreadsStillRunning)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import upstream_relib as up  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def child(scenario: str, module: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tests" / "upstream_relib.py"), scenario,
                           str(module)], capture_output=True, text=True, timeout=timeout, env=env)


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the child (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def private_copy(src: Path, tmp_path: Path, name: str = "libtest_module.so") -> Path:
    # a private path per test: relib's already-loaded check is by path, and a
    # module leaked by one test must not make another test's load fail
    dst = tmp_path / name
    shutil.copy2(src, dst)
    return dst


@pytest.mark.parametrize("profile", ["release", "debug"])
def test_unloading(relib_kit_build: Any, tmp_path: Path, profile: str) -> None:
    """unloading.rs: 12 warm-ups, then 2 iterations calling every export; memory back to its
    start, the thread-local destructor run on the owner thread at unload.

    Upstream compares VmSize exactly. In a Python host the brk heap belongs to the
    interpreter as much as to the module (pytest's own objects move its top by
    megabytes) and CPython maps its small-object arenas 1 MiB at a time, so the
    mappings outside ``[heap]`` (where the 200 MB blocks of main, alloc_mem and
    leak are mmapped) must come back to within 4 MiB, far below one such block,
    and the module's small allocations are judged by the host's tracker instead:
    none left live after unload, the leaked ones freed. One extra warm-up calls
    every export once, so the interpreter's first-call caches are not counted.
    """
    kit = relib_kit_build("unloading", profile)
    path = private_copy(kit.module, tmp_path)
    for _ in range(12):
        m = up.load(path)
        m.call_main()
        assert m.unload().clean
    for iteration in range(3):
        host = up.HostImports()
        other_before, _ = up.mapped_bytes()
        m = up.load(path, host)
        m.call_main()
        up.check_exports(m, host)
        owner = m.module.owner_ident
        report = m.unload()
        other_after, _ = up.mapped_bytes()
        assert report.clean, report.summary()
        if iteration:
            assert other_after - other_before < 4 << 20, (other_before, other_after)
        assert host.drop_state[owner] == "called"
        assert host.calls["thread_local_drop_called"] == 1
        # call_imports reached every import, owning returns included
        for name in ("ref_", "ref_owned_ret", "ref_ret", "ref_ret2", "primitive",
                     "primitive_ret", "alloc_mem", "empty", "empty_default", "dbg_default"):
            assert host.calls.get(name) == 1, (name, host.calls)
        # what the module leaked is freed by the host at unload; leak() forgets 200 MB,
        # which only a debug build really allocates (LLVM drops the unused release one)
        assert report.extra["freed_allocations"] >= 1 and m.live_allocations() == 0
        if profile == "debug":
            assert report.extra["freed_bytes"] >= up.SIZE_200_MB, report.extra


def test_threads_check(relib_kit_build: Any, tmp_path: Path) -> None:
    """threads_check.rs: main leaves a sleeping thread; unload is refused (ThreadsStillRunning)."""
    kit = relib_kit_build("threads_check")
    m = up.load(private_copy(kit.module, tmp_path))
    m.call_main()
    with pytest.raises(ThreadsStillRunning) as info:
        m.unload()
    assert info.value.code == "unload.threads-running"
    assert m.spawned_threads_count() == 1
    assert m.module.loaded  # refused: the module stays usable, as upstream's does


def test_before_unload_panic(relib_kit_build: Any, tmp_path: Path) -> None:
    """before_unload_panic.rs: the panic becomes BeforeUnloadPanicked, the module stays."""
    kit = relib_kit_build("before_unload_panic")
    m = up.load(private_copy(kit.module, tmp_path))
    m.call_main()
    with pytest.raises(BeforeUnloadPanicked):
        m.unload()
    assert m.module.loaded


def test_is_already_loaded_error(relib_kit_build: Any, tmp_path: Path) -> None:
    """is_already_loaded_error.rs: a second load of a loaded path fails; after unload it works."""
    kit = relib_kit_build("is_already_loaded_error")
    path = private_copy(kit.module, tmp_path)
    m = up.load(path)
    m.call_main()
    with pytest.raises(AlreadyLoaded):
        up.load(path)
    assert m.unload().clean
    again = up.load(path)
    again.call_main()
    assert again.unload().clean


@pytest.mark.parametrize("profile", ["release", "debug"])
def test_multiple_modules(relib_kit_build: Any, tmp_path: Path, profile: str) -> None:
    """multiple_modules.rs: 10 copies loaded and unloaded from 10 threads at once, every
    unload clean (libgcc_s kept resident, so no module is pinned by it)."""
    kit = relib_kit_build("multiple_modules", profile)
    paths = [private_copy(kit.module, tmp_path, f"libtest_module_{i}.so") for i in range(10)]
    errors: list[BaseException] = []
    reports: list[Any] = []
    barrier = threading.Barrier(10)

    def run(path: Path) -> None:
        try:
            m = up.load(path)
            m.call_main()
            barrier.wait(timeout=60)  # all ten loaded before the first unload
            reports.append(m.unload())
        except BaseException as e:  # reported below, with every thread's outcome
            errors.append(e)
    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # upstream asserts that every unload succeeds; relib_pure's "unloaded" also means the
    # file is no longer mapped and the loader no longer knows it. (That concurrent
    # verification does not blame one module for another's activity is the business of
    # the concurrency tests.)
    assert len(reports) == 10, reports
    assert all(r.unloaded and not r.threads for r in reports), [r.summary() for r in reports]


def test_multiple_modules_sequential_unload_first(relib_kit_build: Any, tmp_path: Path) -> None:
    """The issue's measurement: 10 copies loaded, then the *first* unloaded first."""
    kit = relib_kit_build("multiple_modules")
    mods = []
    for i in range(10):
        m = up.load(private_copy(kit.module, tmp_path, f"libtest_module_{i}.so"))
        m.call_main()
        mods.append(m)
    for m in mods:
        report = m.unload()
        assert report.clean, report.summary()


CODE_CHANGE_VARIANTS = (
    ("code_change", ["[module] main"]),
    ("code_change,code_change_before_unload", ["[module] main", "[module] before_unload"]),
    ("code_change,code_change_before_unload,code_change_leak",
     ["[module] main", "[module] leak", "[module] before_unload"]),
    ("code_change,code_change_before_unload,code_change_leak,code_change_backtrace_unloading",
     ["[module] main", "[module] leak", "code_change_backtrace_unloading",
      "[module] before_unload"]),
)


@pytest.mark.parametrize("profile", ["release", "debug"])
def test_code_change(relib_kit_build: Any, tmp_path: Path, capfd: Any, profile: str) -> None:
    """code_change (runner + code_change.rs): each rebuilt variant is copied over the same path
    and loaded; the new code runs (its own output, its own before_unload, its leak freed),
    and every unload is clean. The backtrace variant's main asserts that a backtrace taken
    inside the module names its own function, after earlier versions were unloaded."""
    path = tmp_path / "libtest_module.so"
    for features, expected in CODE_CHANGE_VARIANTS:
        kit = relib_kit_build(features, profile)
        shutil.copy2(kit.module, path)
        capfd.readouterr()
        m = up.load(path)
        m.call_main()
        report = m.unload()
        lines = [ln.strip() for ln in capfd.readouterr().out.splitlines()
                 if ln.startswith(("[module]", "code_change_"))]
        assert lines == expected, (features, lines)
        assert report.clean, (features, report.summary())
        if "code_change_leak" in features and profile == "debug":
            assert report.extra["freed_bytes"] >= up.SIZE_200_MB, report.extra


@pytest.mark.parametrize("profile", ["release", "debug"])
def test_backtrace_unloading(relib_kit_build: Any, tmp_path: Path, profile: str) -> None:
    """backtrace_unloading.rs: 10 cycles whose main asserts a backtrace naming its own source
    line (debug) or function (release), so symbolisation works after every reload."""
    kit = relib_kit_build("backtrace_unloading", profile)
    upstream = relib_kit_upstream(kit)
    if upstream.returncode != 0:
        pytest.skip(f"upstream's own test_host fails this build here too (exit "
                    f"{upstream.returncode}): {_last_line(upstream.stderr, 'panicked')}")
    path = private_copy(kit.module, tmp_path)
    for _ in range(10):
        m = up.load(path)
        m.call_main()
        report = m.unload()
        assert report.clean, report.summary()


def relib_kit_upstream(kit: Any) -> subprocess.CompletedProcess[str]:
    import relib_kit

    return relib_kit.run_upstream_host(kit)


def _last_line(text: str, needle: str) -> str:
    hits = [ln for ln in text.splitlines() if needle in ln]
    return hits[0].strip() if hits else text.strip().splitlines()[-1] if text.strip() else ""


@pytest.mark.parametrize("scenario", ["exportify", "exportify,ret_primitive_main",
                                      "exportify,ret_heap_main", "exportify,panic_main"])
def test_exportify(relib_kit_build: Any, scenario: str) -> None:
    """exportify.rs: main's return value (u64::MAX, RString "ret_heap_main") or its panic."""
    kit = relib_kit_build(scenario)
    out = last_json(child(scenario, kit.module))
    if scenario.endswith("ret_primitive_main"):
        assert out == {"main": 2**64 - 1}
    elif scenario.endswith("ret_heap_main"):
        assert out == {"main": "ret_heap_main"}
    elif scenario.endswith("panic_main"):
        assert out == {"main_error": "call.panicked"}
    else:
        assert out == {"main": None}


def test_no_unloading(relib_kit_build: Any) -> None:
    """no_unloading.rs: loads and runs; unload is refused with a typed error, not a crash."""
    kit = relib_kit_build("no_unloading")
    out = last_json(child("no_unloading", kit.module))
    assert out == {"unload_error": "unload.not-supported", "unloading": False}


def test_panic_in_interface_module(relib_kit_build: Any) -> None:
    """panic_in_interface_module.rs: a panicking export is ExportPanicked; the module goes on."""
    kit = relib_kit_build("panic_in_interface_module")
    out = last_json(child("panic_in_interface_module", kit.module))
    assert out == {"panic_error": ExportPanicked.default_code, "still_callable": True}


def test_panic_in_interface_host(relib_kit_build: Any) -> None:
    """panic_in_interface_host (runner): the host import panics; the module aborts the process
    with upstream's exact message."""
    kit = relib_kit_build("panic_in_interface_host")
    proc = child("panic_in_interface_host", kit.module)
    assert proc.returncode != 0
    assert last_json(proc) == {"before_abort": True}
    assert UPSTREAM_ABORTS["panic_in_interface_host"] in proc.stderr, proc.stderr[-2000:]


def test_dealloc_validation(relib_kit_build: Any) -> None:
    """dealloc_validation (runner): an invalid dealloc in main aborts with upstream's text."""
    kit = relib_kit_build("dealloc_validation")
    proc = child("dealloc_validation", kit.module)
    assert proc.returncode != 0
    assert last_json(proc) == {"before_abort": True}
    # relib numbers modules from 1 per process: the child loads exactly one
    assert UPSTREAM_ABORTS["dealloc_validation"] in proc.stderr, proc.stderr[-2000:]


def test_parallel_module_loading(relib_kit_build: Any) -> None:
    """parallel_module_loading.rs: 300 threads load one path; exactly one succeeds, the others
    get the already-loaded error."""
    kit = relib_kit_build("parallel_module_loading")
    out = last_json(child("parallel_module_loading", kit.module, timeout=300))
    assert out == {"results": {"ok": 1, "load.already-loaded": 299}}


#: upstream runner scenarios whose host must abort, with the text it must print
UPSTREAM_ABORTS = {
    "panic_in_interface_host":
        '[relib] host panicked while executing import "panic" of module, aborting',
    "dealloc_validation": "[module id: 1] something unrecoverable happened: invalid pointer "
                          "was passed to dealloc of global allocator",
}


@pytest.mark.parametrize("profile", ["release", "debug"])
@pytest.mark.parametrize("scenario", [s for s in __import__("relib_kit").RUNNER_SCENARIOS
                                      if s != "backtrace_unloading"])
def test_upstream_host_on_same_build(relib_kit_build: Any, scenario: str, profile: str) -> None:
    """Upstream's own test_host on the builds the tests above use, judged as upstream's runner
    judges it: the ground truth those tests follow. (backtrace_unloading is run, and its
    upstream result reported, by test_backtrace_unloading.)"""
    if profile == "debug" and scenario not in ("unloading", "multiple_modules", "code_change"):
        pytest.skip("debug builds are run for unloading, multiple_modules and code_change")
    proc = relib_kit_upstream(relib_kit_build(scenario, profile))
    if scenario in UPSTREAM_ABORTS:
        assert proc.returncode != 0 and UPSTREAM_ABORTS[scenario] in proc.stderr, \
            proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]


def _raw_box(module: Any, symbol: str, *args: Any,
             argtypes: tuple[Any, ...] = ()) -> tuple[bytes, bytes]:
    """Call a boxed 0.3+ export returning an RString by hand: the 32 bytes of its box and
    the text they point to, both read before the box is released."""
    import ctypes
    import struct

    from relib_pure.abi import post_symbol

    fn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(ctypes.c_bool), *argtypes)(
        module.symbol(symbol))
    post = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(module.symbol(post_symbol(symbol)))

    def call() -> tuple[bytes, bytes]:
        ok = ctypes.c_bool(False)
        box = fn(ctypes.byref(ok), *args)
        assert ok.value and box
        raw = ctypes.string_at(box, 32)
        buffer, length = struct.unpack_from("<2Q", raw)
        text = ctypes.string_at(buffer, length)
        post(box)
        return raw, text
    return module.run_on_owner(call)  # type: ignore[no-any-return]


def test_fixture_module_agrees_with_real_relib(relib_kit_build: Any, native: Any,
                                               tmp_path: Path) -> None:
    """The fixture module and upstream's module return the same RString shape (32 bytes:
    buffer, length, capacity, non-null vtable inside the module) and box the same exports."""
    import struct

    import relib_pure
    from relib_pure.abi import post_symbol
    from relib_pure.relib import RStr

    real_path = private_copy(relib_kit_build("unloading").module, tmp_path)
    fixture_path = native("relib_0_7")
    shapes = {}
    for label, path in (("real", real_path), ("fixture", fixture_path)):
        m = up.load(path) if label == "real" else relib_pure.relib.load_module(path)
        try:
            text = RStr.from_bytes(up.ONES)
            raw, contents = _raw_box(m.module, "__relib__Exports_ref_owned_ret", text,
                                     argtypes=(RStr,))
            buffer, length, capacity, vtable = struct.unpack("<4Q", raw)
            assert length == 100 and capacity >= 100 and buffer and vtable, (label, raw.hex())
            assert contents == up.ONES.encode()
            text_map = [mp for mp in relib_pure.runtime.procfs.parse_maps(
                open("/proc/self/maps", "rb").read().splitlines())
                if mp.start <= vtable < mp.end]
            assert text_map and text_map[0].path == str(path), (label, hex(vtable), text_map)
            shapes[label] = (length, capacity >= length, bool(vtable))
        finally:
            m.unload()
    assert shapes["real"] == shapes["fixture"]
    # the same boxing table for the exports both define
    real = relib_pure.inspect(real_path)
    fixture = relib_pure.inspect(fixture_path)
    real_syms = {s.name for s in real.exports}
    fixture_syms = {s.name for s in fixture.exports}
    common = sorted(n for n in real_syms & fixture_syms
                    if n.startswith("__relib__Exports_") or n == "__relib__main")
    assert len(common) >= 8, common
    table = {n: (post_symbol(n) in real_syms, post_symbol(n) in fixture_syms) for n in common}
    assert all(a == b for a, b in table.values()), table
    assert table["__relib__Exports_ref_owned_ret"] == (True, True)
    assert table["__relib__Exports_primitive_ret"] == (False, False)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "relib_pure", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_cli_run_calls_relib_main(relib_kit_build: Any, tmp_path: Path) -> None:
    """`relib-pure run` calls a relib module's main right after load, as relib's host does."""
    path = private_copy(relib_kit_build("unloading").module, tmp_path)
    proc = _cli("run", "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["main"] == {"symbol": "__relib__main", "result": None}
    assert data["clean"] and data["stage"] == "done"
    assert "[module] main called" in proc.stderr  # native stdout goes to stderr under run
    again = _cli("run", "--call", "main", "--times", "2", "--json", str(path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["call"]["times"] == 2
    assert again.stderr.count("[module] main called") == 2


def test_cli_run_refuses_threads_check(relib_kit_build: Any, tmp_path: Path) -> None:
    """`relib-pure run` on upstream's threads_check: main's thread keeps it loaded; the
    thread is named and the exit status is 1."""
    path = private_copy(relib_kit_build("threads_check").module, tmp_path)
    proc = _cli("run", "--json", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["error"]["code"] == "unload.threads-running"
    threads = data["unload"]["leaks"]["threads"]
    assert len(threads) == 1 and threads[0]["tid"] > 0
    assert f"tid {threads[0]['tid']}" in data["error"]["message"]
    text = _cli("run", str(path))
    assert text.returncode == 1 and "thread still running: tid" in text.stdout


RESIDENCY_OFF = r"""
import json, shutil, sys
sys.path.insert(0, sys.argv[3])
import upstream_relib as up
from relib_pure.errors import StillMapped
from relib_pure.runtime import resident
resident.RESIDENT = ()  # what relib_pure did before: the first module brings libgcc_s in
paths = []
for i in range(2):
    dst = f"{sys.argv[2]}/libtest_module_{i}.so"
    shutil.copy2(sys.argv[1], dst)
    paths.append(dst)
mods = [up.load(p) for p in paths]
for m in mods:
    m.call_main()
try:
    mods[0].unload()
    print(json.dumps({"first": "clean"}))
except StillMapped as e:
    print(json.dumps({"first": e.code, "causes": [c.code for c in e.report.causes],
                      "detail": [c.detail for c in e.report.causes]}))
"""


def test_libgcc_binding_is_named_when_residency_is_off(relib_kit_build: Any,
                                                       tmp_path: Path) -> None:
    """The issue's measurement, with residency switched off in a child: the first of two
    relib 0.4.1+ modules cannot leave (libgcc_s binds pthread_key_create to it), and the
    unload report names that cause instead of a bare "another-handle"."""
    kit = relib_kit_build("multiple_modules")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", RESIDENCY_OFF, str(kit.module), str(tmp_path),
                           str(REPO / "tests")], capture_output=True, text=True, timeout=120,
                          env=env)
    out = last_json(proc)
    assert out == {"first": "unload.still-mapped", "causes": ["dependency-bound"],
                   "detail": ["libgcc_s.so.1"]}, (out, proc.stderr[-2000:])
