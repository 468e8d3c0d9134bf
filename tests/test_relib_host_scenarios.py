"""relib's upstream host scenarios (relib-abi.md §6) against the fixture variants.

Scenarios that abort the process or leave a module that can never unload run
in a child interpreter; the test checks its exit status and output.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import threading
from pathlib import Path

import pytest

from relib_pure.errors import (AlreadyLoaded, ExportPanicked, IncompatibleModuleError,
                               SymbolMissing, UnloadError)
from relib_pure.relib import RString, load_module
from test_relib_host_support import (GENERATION_FIXTURES, Point, child_json, load_fixture,
                                     run_child)

#: generations covered by every scenario their base fixture supports
FULL = ["0.1.8", "0.2.3", "0.7"]


def _mapped(path: Path | str) -> bool:
    with open("/proc/self/maps") as f:
        return str(path) in f.read()


def test_parallel_module_loading_one_ok(native, tmp_path) -> None:
    # upstream: no unloading, 300 threads load one path at once -> one Ok, the rest
    # ModuleAlreadyLoaded, nothing else. The winner stays loaded (leaked) by design.
    path = tmp_path / "libparallel.so"
    shutil.copyfile(native("relib_0_7_nounload"), path)
    barrier = threading.Barrier(300)
    results: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            out: object = load_module(path, owner="caller")
        except BaseException as e:  # noqa: BLE001 - every outcome is collected
            out = e
        with lock:
            results.append(out)
    threads = [threading.Thread(target=worker) for _ in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    oks = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(oks) == 1
    assert len(errors) == 299 and all(isinstance(e, AlreadyLoaded) for e in errors), \
        {type(e).__name__ for e in errors}
    assert all(e.code == "load.already-loaded" and e.path == str(path) for e in errors)


@pytest.mark.parametrize("gen", FULL)
def test_is_already_loaded_error(native, gen: str) -> None:
    path = native(GENERATION_FIXTURES[gen])
    m = load_fixture(path, gen)
    with pytest.raises(AlreadyLoaded):
        load_fixture(path, gen)
    assert m.loaded  # the failed second load did not disturb the first
    assert m.unload().unloaded
    again = load_fixture(path, gen)
    assert again.unload().unloaded


def test_backtrace_unloading_ten_cycles(native) -> None:
    path = native("relib_0_7_backtrace")
    for _ in range(10):
        m = load_fixture(path, "0.7")
        m.call_main()  # asserts its backtrace names its own function
        report = m.unload()
        # misc_cleanup unmapped the mappings std's backtrace made of the .so
        assert report.unloaded, report
        assert not _mapped(path)


@pytest.mark.parametrize("variant,gen", [("relib_0_7_nounload", "0.7"),
                                         ("relib_0_2_nounload", "0.2")])
def test_no_unloading_module_is_leaked(native, tmp_path, capfd, variant: str, gen: str) -> None:
    path = tmp_path / f"lib{variant}.so"
    shutil.copyfile(native(variant), path)
    m = load_fixture(path, gen)
    assert not m.unloading and m.module_id is None
    m.call_main()
    assert "[module] main" in capfd.readouterr().out
    assert m.exports.add(1, 2) == 3
    with pytest.raises(UnloadError) as info:
        m.unload()
    assert info.value.code == "unload.not-supported"
    assert m.loaded and m.exports.counter() == 1  # still usable, leaked for good


def test_exportify_unit_main(native, capfd) -> None:
    with load_fixture(native("relib_0_7"), "0.7") as m:
        assert m.call_main() is None
    assert "[module] main" in capfd.readouterr().out


@pytest.mark.parametrize("variant", ["relib_0_7_ret_primitive_main"])
def test_exportify_ret_primitive_main(native, variant: str) -> None:
    with load_fixture(native(variant), "0.7") as m:
        assert m.module.symbol("__relib__main")
        with pytest.raises(SymbolMissing):  # u64 is returned directly: no post function
            m.module.symbol("__post__relib__main")
        assert m.call_main(ctypes.c_uint64) == 2**64 - 1


def test_exportify_ret_heap_main(native) -> None:
    with load_fixture(native("relib_0_7_ret_heap_main"), "0.7") as m:
        assert m.module.symbol("__post__relib__main")  # boxed: a post function exists
        assert m.call_main(RString) == "ret_heap_main"
        assert m.call_main(RString) == "ret_heap_main"  # the box was released, not reused


@pytest.mark.parametrize("variant,gen", [("relib_0_7_panic_main", "0.7"),
                                         ("relib_0_1_8_panic_main", "0.1.8")])
def test_exportify_panic_main(native, capfd, variant: str, gen: str) -> None:
    with load_fixture(native(variant), gen) as m:
        with pytest.raises(ExportPanicked):
            m.call_main()
        assert m.exports.add(1, 1) == 2  # the host keeps running
    assert "panicked" in capfd.readouterr().err


@pytest.mark.parametrize("variant,gen", [("relib_0_7_before_unload_panic", "0.7"),
                                         ("relib_0_1_8_before_unload_panic", "0.1.8")])
def test_before_unload_panic(native, variant: str, gen: str) -> None:
    proc = run_child("""
        import json, os, sys
        from relib_pure.errors import BeforeUnloadPanicked
        from test_relib_host_support import load_fixture
        m = load_fixture(sys.argv[1], sys.argv[2])
        m.call_main()
        try:
            m.unload()
            out = {"error": None}
        except BeforeUnloadPanicked as e:
            out = {"error": e.code, "path": e.path == m.path, "loaded": m.loaded,
                   "usable": m.exports.add(2, 2) == 4}
        print(json.dumps(out), flush=True)
        os._exit(0)  # the module can never unload; skip the exit-time retry
    """, str(native(variant)), gen)
    assert proc.returncode == 0, proc.stderr
    assert child_json(proc) == {"error": "unload.before-unload-panicked", "path": True,
                                "loaded": True, "usable": True}
    assert "panicked" in proc.stderr


@pytest.mark.parametrize("gen", FULL)
def test_multiple_modules_on_ten_threads(native, tmp_path, gen: str) -> None:
    src = native(GENERATION_FIXTURES[gen])
    paths = []
    for i in range(10):
        p = tmp_path / f"libtest_module_{i}.so"
        shutil.copyfile(src, p)
        paths.append(p)
    barrier = threading.Barrier(10)
    outcomes: dict[int, object] = {}

    def worker(i: int) -> None:
        barrier.wait()
        try:
            m = load_fixture(paths[i], gen, owner="caller")
            m.call_main()
            m.exports.leak(1 << 20)
            report = m.unload()
            outcomes[i] = (m.module_id, report.unloaded, report.extra["freed_bytes"])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion
            outcomes[i] = e
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(v, tuple) for v in outcomes.values()), outcomes
    ids = [v[0] for v in outcomes.values()]  # type: ignore[index]
    assert len(set(ids)) == 10
    assert all(v[1] and v[2] >= 1 << 20 for v in outcomes.values())  # type: ignore[index]


def test_code_change_between_loads(native, tmp_path, capfd) -> None:
    # rebuild between loads: the new file is written over the same path
    path = tmp_path / "libcode_change.so"
    seen = []
    for variant in ["relib_0_7_code_change_a", "relib_0_7_code_change_b",
                    "relib_0_7_code_change_a"]:
        shutil.copyfile(native(variant), path)
        m = load_fixture(path, "0.7")
        seen.append(m.call_main(ctypes.c_uint64))
        assert m.unload().unloaded
    assert seen == [1, 2, 1]
    # every reload ran before_unload of the code loaded at the time
    assert capfd.readouterr().out.count("[module] before_unload") == 3


def test_dealloc_validation_aborts(native) -> None:
    proc = run_child("""
        import sys
        from test_relib_host_support import load_fixture
        m = load_fixture(sys.argv[1], "0.7")
        print("loaded id", m.module_id, flush=True)
        m.call_main()
        print("main returned", flush=True)
    """, str(native("relib_0_7_dealloc_validation")))
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "loaded id 1" in proc.stdout and "main returned" not in proc.stdout
    message = ("[module id: 1] something unrecoverable happened: invalid pointer was passed "
               "to dealloc of global allocator")
    assert message in proc.stderr
    # the host printed "aborting" and aborted itself: it never returned to the module
    assert "aborting" in proc.stderr.split(message, 1)[1]
    assert "the host returned from unrecoverable" not in proc.stderr


def test_panicking_import_aborts(native) -> None:
    proc = run_child("""
        import sys
        from test_relib_host_support import load_fixture
        m = load_fixture(sys.argv[1], "0.7")
        m.call_main()
        print("main returned", flush=True)
    """, str(native("relib_0_7_import_panic")))
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "main returned" not in proc.stdout
    assert '[relib] host panicked while executing import "panic" of module, aborting' \
        in proc.stderr
    # the host printed the Python traceback before reporting failure
    assert "RuntimeError: host import panics on purpose" in proc.stderr


def test_compilation_policy(native) -> None:
    old = native("relib_0_7_oldrustc")
    ref = native("relib_0_7")
    # the module's own generation is accepted without an expectation
    m = load_fixture(old, "0.7")
    assert m.compilation_info.rustc_version.startswith("1.80.0")
    assert m.unload().unloaded
    with pytest.raises(IncompatibleModuleError) as info:
        load_fixture(old, "0.7", expect=ref)  # "like that other module"
    assert info.value.code == "compat.compilation-mismatch"
    assert info.value.path == str(old) and "1.80.0" in info.value.message
    assert not _mapped(old)  # refused before dlopen
    with load_fixture(ref, "0.7") as first:
        with load_fixture(native("relib_0_7_bfd"), "0.7", expect=first) as second:
            assert second.compilation_info.raw == first.compilation_info.raw


def test_unsupported_relib_version_refused_before_dlopen(native, tmp_path) -> None:
    data = native("relib_0_7").read_bytes()
    assert data.count(b"|0.7.0|1") == 1
    path = tmp_path / "librelib_future.so"
    path.write_bytes(data.replace(b"|0.7.0|1", b"|0.9.0|1"))  # same length, version 0.9
    with pytest.raises(IncompatibleModuleError) as info:
        load_module(path)
    assert info.value.code == "compat.unsupported-relib" and "0.9.0" in info.value.message
    assert info.value.path == str(path)
    assert not _mapped(path)


@pytest.mark.parametrize("variant", ["relib_0_7_bfd", "relib_0_7_relr"])
def test_linker_variants(native, variant: str) -> None:
    with load_fixture(native(variant), "0.7") as m:
        m.call_main()
        assert m.exports.ref_owned_ret("x") == "x"


def test_plain_load_uses_relib_driver(native) -> None:
    import relib_pure

    m = relib_pure.load(native("relib_0_7"))
    try:
        assert m.driver.name == "relib-0.7"
        main = m.function("__relib__main", None, [ctypes.POINTER(ctypes.c_bool)])
        ok = ctypes.c_bool(False)
        main(ctypes.byref(ok))
        assert ok.value
    finally:
        report = m.unload()
    assert report.unloaded and report.extra["freed_allocations"] >= 2




@pytest.mark.parametrize("gen,expected", [
    # 0.1.8-0.2.2: the slot cannot report failure, so the host aborts itself
    ("0.1.8", "[relib_pure] relib 0.1.8 imports cannot report failure, aborting"),
    # 0.2.3: the wrapper returns false and the module aborts with relib's text
    ("0.2.3", "[relib] host panicked while executing an import of module, aborting"),
    # 0.3+: the success flag is false; the module names the import
    ("0.3", '[relib] host panicked while executing import "primitive" of module, aborting'),
])
def test_raising_import_aborts_per_convention(native, gen: str, expected: str) -> None:
    proc = run_child("""
        import sys
        from test_relib_host_support import HostImports, load_fixture
        host = HostImports(sys.argv[2])
        impls = host.implementations()
        def primitive(x):
            raise ValueError(f"import primitive refuses {x}")
        impls["primitive"] = primitive
        from relib_pure.relib import load_module
        from test_relib_host_support import EXPORTS, import_types
        m = load_module(sys.argv[1], exports=EXPORTS, imports=impls,
                        import_types=import_types(sys.argv[2]))
        print("calling", flush=True)
        m.exports.call_imports()
        print("returned", flush=True)
    """, str(native(GENERATION_FIXTURES[gen])), gen)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "calling" in proc.stdout and "returned" not in proc.stdout
    assert "ValueError: import primitive refuses 2147483647" in proc.stderr
    assert expected in proc.stderr


@pytest.mark.parametrize("gen,expected", [
    ("0.1.8", "[relib_pure] relib 0.1.8 imports cannot report failure, aborting"),
    ("0.2.3", "[relib] host panicked while executing an import of module, aborting"),
    ("0.7", '[relib] host panicked while executing import "primitive_ret" of module, aborting'),
])
def test_import_returning_a_wrong_type_aborts(native, gen: str, expected: str) -> None:
    # ctypes converts a callback's return value only after the Python function has
    # returned, where an error is printed as "unraisable" and the module gets an
    # undefined value; the host must convert it inside its guard and fail the call
    proc = run_child("""
        import sys
        from relib_pure.relib import load_module
        from test_relib_host_support import EXPORTS, HostImports, import_types
        impls = HostImports(sys.argv[2]).implementations()
        impls["primitive_ret"] = lambda x: "not an i32"
        m = load_module(sys.argv[1], exports=EXPORTS, imports=impls,
                        import_types=import_types(sys.argv[2]))
        print("calling", flush=True)
        m.exports.call_imports()
        print("returned", flush=True)
    """, str(native(GENERATION_FIXTURES[gen])), gen)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "calling" in proc.stdout and "returned" not in proc.stdout
    assert "TypeError" in proc.stderr and "primitive_ret" in proc.stderr
    assert expected in proc.stderr
    # the module never saw a garbage value (it would fail its assertion instead)
    assert "import primitive_ret must return its argument" not in proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("gen", ["0.2", "0.7"])
def test_struct_import_without_a_box_is_refused_at_load(native, gen: str) -> None:
    from relib_pure.errors import LoadError

    # primitive_ret's slot exists in both; declared to return a structure, it would be
    # returned by value (0.2: plain; 0.7: no __post slot), which ctypes cannot do
    path = native(GENERATION_FIXTURES[gen])
    with pytest.raises(LoadError) as info:
        load_module(path, imports={"primitive_ret": lambda x: Point(x, x)},
                    import_types={"primitive_ret": (Point, [ctypes.c_int32])})
    assert info.value.code == "load.init-failed" and info.value.path == str(path)
    assert "primitive_ret" in info.value.message and "structure" in info.value.message
    assert not _mapped(path)


@pytest.mark.parametrize("gen,prefix", [("0.1.8", "[module]"), ("0.7", "[module id: 1]")])
def test_foreign_thread_tls_aborts_after_unload(native, gen: str, prefix: str) -> None:
    # relib-abi §4.4 rule 2: a thread other than the owner creates module TLS; unload
    # frees and locks the allocator but glibc keeps the library mapped; when that
    # thread exits its TLS destructor hits the locked allocator -> unrecoverable
    proc = run_child("""
        import ctypes, json, sys, threading
        from relib_pure.errors import StillMapped
        from test_relib_host_support import load_fixture
        m = load_fixture(sys.argv[1], sys.argv[2])
        created, release = threading.Event(), threading.Event()
        def foreign():
            # the raw function pointer, bypassing the owner thread on purpose
            ok = ctypes.c_bool(False)
            fn = m.exports.thread_locals._func
            if m.generation.export_convention == "A":
                fn(ctypes.addressof(ok), 1024)
            else:
                fn(ctypes.byref(ok), 1024)
            created.set()
            release.wait()
        t = threading.Thread(target=foreign)
        t.start()
        created.wait()
        try:
            m.unload()
            print(json.dumps({"error": None}), flush=True)
        except StillMapped as e:
            print(json.dumps({"error": e.code}), flush=True)
        release.set()
        t.join()
        # join returns before the OS thread ran its TLS destructors: wait for it
        import os, time
        deadline = time.monotonic() + 20
        while os.path.exists(f"/proc/self/task/{t.native_id}") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        print("thread exited", flush=True)
    """, str(native(f"relib_{gen.replace('.', '_')}")), gen)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stdout, proc.stderr)
    assert child_json(proc) == {"error": "unload.still-mapped"}
    assert "thread exited" not in proc.stdout
    assert (f"{prefix} something unrecoverable happened: module allocator was invoked while "
            "module was in the process of unloading") in proc.stderr


def test_module_without_unloading_is_left_quietly_at_exit(native) -> None:
    # upstream leaks such modules by design; interpreter exit must neither crash
    # nor warn about them (a module loaded from a thread that has since exited, too)
    proc = run_child("""
        import sys, threading
        from relib_pure.relib import load_module
        box = []
        def worker():
            box.append(load_module(sys.argv[1], owner="caller"))
            box[0].call_main()
        t = threading.Thread(target=worker)
        t.start(); t.join()
        print("loaded", box[0].loaded)
    """, str(native("relib_0_7_nounload")))
    assert proc.returncode == 0, proc.stderr
    assert "loaded True" in proc.stdout
    assert "left loaded" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
