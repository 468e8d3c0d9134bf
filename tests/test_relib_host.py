"""The relib protocol host against the fixture module, one base module per generation.

Each generation loads its fixture with the full interface and checks exports of
every kind (unit, primitive, boxed or written-whole structures and strings),
imports, panics, thread-locals on the owner thread, the thread check, leak
freeing and statics reset by a real unload (relib-abi.md §1.5, §1.6, §4).
"""

from __future__ import annotations

import ctypes
import shutil
import threading

import pytest

from relib_pure.abi import GENERATIONS
from relib_pure.errors import ExportPanicked, ModuleUnloaded, SymbolMissing, ThreadsStillRunning
from relib_pure.relib import RStr, load_module
from test_relib_host_support import (EXPORTS, GENERATION_FIXTURES, I32_MAX, I32_MIN, ONES,
                                     STRUCT_IMPORTS, HostImports, Point, child_json,
                                     import_types, load_fixture, run_child)

ALL = list(GENERATION_FIXTURES)


def test_every_generation_has_a_fixture() -> None:
    assert sorted(GENERATION_FIXTURES) == sorted(g.name for g in GENERATIONS)


@pytest.mark.parametrize("gen", ALL)
def test_exports_of_every_kind(native, gen: str) -> None:
    path = native(GENERATION_FIXTURES[gen])
    host = HostImports(gen)
    with load_fixture(path, gen, host=host) as m:
        assert m.generation.name == gen
        assert m.module_id is not None and m.module_id >= 1
        assert m.call_main() is None
        ex = m.exports
        assert ex.empty() is None
        assert ex.primitive(I32_MAX) is None
        assert ex.primitive_ret(I32_MIN) == I32_MIN
        assert ex.add(2**64 - 1, 2) == 1  # wrapping add in the module
        assert ex.ref_(ONES) is None
        assert ex.ref_owned_ret("owned ✓") == "owned ✓"
        assert ex.ref_ret("abcdef") == "bcdef"
        assert ex.ref_ret2(RStr.from_bytes("first"), "second") == "first"
        p = ex.point(7, -9)
        assert isinstance(p, Point) and (p.x, p.y) == (7, -9)
        data = ex.alloc_mem(100_000)
        assert data == b"\x2a" * 100_000
        assert [ex.counter() for _ in range(3)] == [1, 2, 3]
        assert ex.alloc_churn(25_000, 1_000) == 25  # usize return, never boxed
        # boxing is decided by the module's __post symbols (convention B only)
        b = gen not in ("0.1.8", "0.2", "0.2.3")
        assert (ex.point.boxed, ex.ref_owned_ret.boxed, ex.primitive_ret.boxed) == (b, b, False)


@pytest.mark.parametrize("gen", ALL)
def test_imports_called_by_the_module(native, gen: str) -> None:
    host = HostImports(gen)
    m = load_fixture(native(GENERATION_FIXTURES[gen]), gen, host=host)
    assert m.exports.call_imports() is True
    report = m.unload()
    expected = ["empty", "primitive", "primitive_ret", "ref_"]
    if gen in STRUCT_IMPORTS:
        expected += ["ref_ret", "point"]
    assert host.names() == expected
    values = dict(host.calls)
    assert values["primitive"] == I32_MAX
    assert values["primitive_ret"] == I32_MIN
    assert values["ref_"] == ONES
    if gen in STRUCT_IMPORTS:
        assert values["point"] == (3, -4)
    assert report.extra["import_calls"] == len(expected)
    # 0.3+ boxed returns: the module released every host box through the post slot
    assert report.extra["pending_import_boxes"] == 0


@pytest.mark.parametrize("gen", ALL)
def test_panic_in_export_keeps_module_usable(native, gen: str, capfd) -> None:
    with load_fixture(native(GENERATION_FIXTURES[gen]), gen) as m:
        with pytest.raises(ExportPanicked) as info:
            m.exports.panic()
        assert info.value.code == "call.panicked" and info.value.path == m.path
        assert m.exports.add(40, 2) == 42
    err = capfd.readouterr().err
    assert "the export \"panic\" panics on purpose" in err
    if m.generation.has_eprintln:
        # 0.1.8-0.3: relib's panic hook sent the text through the host's eprintln import
        assert "\nbacktrace:\n" in err and "thread '" not in err
    else:
        assert "panicked at" in err  # std's default hook (0.4+)


@pytest.mark.parametrize("gen", ALL)
def test_leak_is_freed_and_statics_reset(native, gen: str) -> None:
    path = native(GENERATION_FIXTURES[gen])
    leak = 8 * 1024 * 1024
    m = load_fixture(path, gen)
    assert m.exports.only_called_once() is True
    assert m.exports.only_called_once() is False
    m.exports.leak(leak)
    report = m.unload()
    assert report.unloaded, report
    assert report.extra["freed_bytes"] >= leak
    assert report.extra["freed_allocations"] >= 3  # init's two buffers + the leak
    assert report.extra["relib_generation"] == gen
    with pytest.raises(ModuleUnloaded):
        m.exports.add(1, 1)
    again = load_fixture(path, gen)
    try:
        assert again.module_id > m.module_id  # ids are never reused
        assert again.exports.only_called_once() is True  # statics were reset by the unload
    finally:
        assert again.unload().unloaded


@pytest.mark.parametrize("gen", ["0.1.8", "0.2.3", "0.7"])
def test_thread_locals_destroyed_on_owner_thread(native, gen: str) -> None:
    host = HostImports(gen)
    m = load_fixture(native(GENERATION_FIXTURES[gen]), gen, host=host)
    owner = m.module.owner_ident
    m.exports.thread_locals(1024 * 1024)
    assert host.tls_drop_threads == []  # owner-thread TLS lives until unload
    report = m.unload()
    assert report.unloaded, report
    # relib's private destructor list ran during unload, on the owner thread
    assert host.tls_drop_threads == [owner] * 3


@pytest.mark.parametrize("variant,gen", [("relib_0_7_threads_check", "0.7"),
                                         ("relib_0_1_8_threads_check", "0.1.8")])
def test_threads_check_scenario(native, variant: str, gen: str) -> None:
    # main leaves a thread sleeping ~1e6 s: the module can never unload, so a child runs it
    proc = run_child("""
        import json, os, sys
        from relib_pure.errors import ThreadsStillRunning
        from test_relib_host_support import load_fixture
        m = load_fixture(sys.argv[1], sys.argv[2])
        m.call_main()
        try:
            m.unload()
            out = {"error": None}
        except ThreadsStillRunning as e:
            out = {"error": e.code, "count": m.spawned_threads_count(),
                   "loaded": m.loaded, "usable": m.exports.add(1, 2) == 3}
        print(json.dumps(out), flush=True)
        os._exit(0)  # the sleeper would keep the interpreter's exit hooks waiting
    """, str(native(variant)), gen)
    assert proc.returncode == 0, proc.stderr
    assert child_json(proc) == {"error": "unload.threads-running", "count": 1, "loaded": True,
                                "usable": True}


@pytest.mark.parametrize("gen", ["0.1.8", "0.2.3", "0.7"])
def test_short_thread_joined_then_unload_ok(native, gen: str) -> None:
    m = load_fixture(native(GENERATION_FIXTURES[gen]), gen)
    m.exports.spawn_thread(200)
    with pytest.raises(ThreadsStillRunning):
        m.unload()
    m.exports.join_threads()
    assert m.spawned_threads_count() == 0
    assert m.unload().unloaded


def test_owner_caller_mode(native) -> None:
    m = load_fixture(native("relib_0_7"), "0.7", owner="caller")
    assert m.exports.add(1, 1) == 2
    errors: list[BaseException] = []

    def other() -> None:
        try:
            m.exports.add(1, 1)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and getattr(errors[0], "code", None) == "call.wrong-thread"
    assert m.unload().unloaded


def test_missing_symbols_are_listed_before_init(native, tmp_path) -> None:
    path = native("relib_0_7")
    with pytest.raises(SymbolMissing) as info:
        load_module(path, exports={"nope": (None, []), "nada": (ctypes.c_int, [])},
                    imports={"missing": lambda: None}, import_types={"missing": (None, [])})
    assert set(info.value.symbols) == {"__relib__Exports_nope", "__relib__Exports_nada",
                                       "__relib__Imports_missing"}
    assert info.value.path == str(path)
    # nothing stayed mapped: the same path loads again
    m = load_module(path)
    assert m.unload().unloaded


def test_call_main_without_main_and_unknown_export(native) -> None:
    with load_fixture(native("relib_0_7"), "0.7") as m:
        with pytest.raises(SymbolMissing):
            m.export("does_not_exist")
        counter = m.export("counter", ctypes.c_uint64)
        assert counter() == 1


def test_declared_interface_matches_the_fixture_symbols(native) -> None:
    # the tests' declarations must name exactly what the module exports and imports,
    # so an export or import slot the tests forgot cannot go unnoticed
    from relib_pure.inspection import inspect

    for gen, variant in GENERATION_FIXTURES.items():
        info = inspect(native(variant))
        names = info.export_names()
        exports = {n.removeprefix("__relib__Exports_") for n in names
                   if n.startswith("__relib__Exports_")}
        slots = {n.removeprefix("__relib__Imports_") for n in names
                 if n.startswith("__relib__Imports_")}
        assert exports == set(EXPORTS), (gen, exports ^ set(EXPORTS))
        assert slots == set(import_types(gen)), (gen, slots ^ set(import_types(gen)))


def test_copy_loaded_twice_from_other_path(native, tmp_path) -> None:
    src = native("relib_0_7")
    a, b = tmp_path / "liba.so", tmp_path / "libb.so"
    shutil.copyfile(src, a)
    shutil.copyfile(src, b)
    with load_fixture(a, "0.7") as ma, load_fixture(b, "0.7") as mb:
        assert ma.module_id != mb.module_id
        assert ma.exports.counter() == 1 and ma.exports.counter() == 2
        assert mb.exports.counter() == 1  # separate statics


def test_not_a_relib_module_is_refused_before_dlopen(native) -> None:
    from relib_pure.errors import InspectionError

    path = native("c_plain")
    with pytest.raises(InspectionError) as info:
        load_module(path)
    assert info.value.code == "inspect.no-compilation-info" and info.value.path == str(path)
    with open("/proc/self/maps") as f:
        assert str(path) not in f.read()


NO_TRACKER_WARNING = "seems like this module doesn't have a registered global alloc tracker"


@pytest.mark.parametrize("variant,enable,warned", [
    ("relib_0_7_no_tracker", True, True),     # 0.7 checks when the tracker is enabled...
    ("relib_0_7_no_tracker", False, False),   # ...and not otherwise
    ("relib_0_4_1_no_tracker", True, True),   # 0.2-0.6 always check
    ("relib_0_7", True, False),               # init's two buffers were reported
])
def test_no_alloc_tracker_warning(native, caplog, variant: str, enable: bool,
                                  warned: bool) -> None:
    # a module whose global allocator is not relib's tracker (relib-abi.md §4.2 step 6)
    import logging

    gen = "0.7" if variant.startswith("relib_0_7") else "0.4.1-0.6"
    with caplog.at_level(logging.WARNING, logger="relib_pure.relib"):
        m = load_fixture(native(variant), gen, enable_alloc_tracker=enable)
        m.call_main()  # allocates and frees 1 MB, spawns and joins a thread
        m.exports.leak(1 << 20)
        report = m.unload()
    assert report.unloaded, report
    assert any(NO_TRACKER_WARNING in r.getMessage() for r in caplog.records) is warned
    if variant != "relib_0_7":
        # the host never heard of an allocation: exit frees nothing
        assert report.extra["freed_allocations"] == 0


@pytest.mark.parametrize("enable,live", [(True, 2), (False, 0)])
def test_enable_alloc_tracker_reaches_init(native, enable: bool, live: int) -> None:
    # relib 0.7's init reserves (and reports) its two buffers only with the flag set;
    # with the tracker as allocator and the flag off, the module's first allocation
    # would deadlock (relib-abi.md §4.3), so the child exits before making one
    proc = run_child("""
        import json, os, sys
        from relib_pure.relib import load_module
        m = load_module(sys.argv[1], enable_alloc_tracker=sys.argv[2] == "1")
        print(json.dumps({"live": m.live_allocations()}), flush=True)
        os._exit(0)
    """, str(native("relib_0_7")), "1" if enable else "0")
    assert proc.returncode == 0, proc.stderr
    assert child_json(proc) == {"live": live}
