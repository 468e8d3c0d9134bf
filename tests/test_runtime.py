"""Runtime host on real libraries: load, call from any thread, verified unload, leaks.

Scenarios that leave a library mapped for good run in a child process
(tests/test_runtime_isolated.py); everything here unloads what it loads.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import relib_pure
from relib_pure.errors import (AlreadyLoaded, CallError, IncompatibleModuleError,
                               InspectionError, LoadError, ModuleUnloaded, ThreadsStillRunning)
from relib_pure.runtime import Module, UnloadReport, load, load_validated, validate
from relib_pure.runtime import procfs


def mapped(path: Path) -> bool:
    st = os.stat(path)
    fid = procfs.file_id(st)
    return procfs.maps_mention(procfs.read_maps(), fid, os.path.realpath(path))


@pytest.fixture
def rt_copy(native, tmp_path: Path) -> Path:
    """A private copy of the runtime fixture, so no other test can have it mapped."""
    target = tmp_path / "librt_copy.so"
    shutil.copy(native("rt_basic"), target)
    return target


def test_public_names_reexported() -> None:
    assert relib_pure.load is load
    assert relib_pure.Module is Module
    assert relib_pure.UnloadReport is UnloadReport
    assert relib_pure.probe is relib_pure.runtime.probe


@pytest.mark.parametrize("owner", ["thread", "caller"])
def test_plain_c_load_call_unload_clean(native, owner: str) -> None:
    path = native("c_plain")
    module = load(path, owner=owner)
    assert module.loaded and mapped(path)
    add = module.function("plain_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int))
    scale = module.function("plain_scale", ctypes.c_double, (ctypes.c_double,))
    assert add(40, 2) == 42
    assert scale(2.0) == 5.0
    report = module.unload()
    assert report.unloaded and report.clean, report.summary()
    assert not report.loader_knows and report.causes == ()
    assert not mapped(path)
    assert report.owner == owner and report.driver == "plain"
    with pytest.raises(ModuleUnloaded) as info:
        add(1, 2)
    assert info.value.code == "call.unloaded" and info.value.path == module.path
    with pytest.raises(ModuleUnloaded):
        module.unload()
    with pytest.raises(ModuleUnloaded):
        module.function("plain_add")


def test_missing_symbol_is_typed(native) -> None:
    with load(native("c_plain")) as module:
        with pytest.raises(relib_pure.SymbolMissing) as info:
            module.function("no_such_function")
        assert info.value.symbols == ("no_such_function",)
        # a hidden symbol is not exported either
        with pytest.raises(relib_pure.SymbolMissing):
            module.function("plain_hidden")
    assert not module.loaded


def test_rust_plain_unloads_clean(native) -> None:
    path = native("rust_plain")
    with load(path) as module:
        add = module.function("rust_plain_add", ctypes.c_int32, (ctypes.c_int32, ctypes.c_int32))
        calls = module.function("rust_plain_calls", ctypes.c_uint64)
        assert add(2, 3) == 5 and add(-1, 1) == 0
        assert calls() == 2
    assert module.report is not None and module.report.clean, module.report.summary()
    assert not mapped(path)


def test_rust_thread_locals_from_main_and_other_threads_unload_clean(native) -> None:
    """Every call runs on the owner thread, which exits before dlclose: the TLS
    destructors run there and glibc's counter does not pin the library."""
    path = native("rust_tls")
    module = load(path)
    touch = module.function("rust_tls_touch", ctypes.c_size_t, (ctypes.c_uint8,))
    touches = module.function("rust_tls_touches", ctypes.c_uint64)
    dtors = module.function("rust_tls_dtors_run", ctypes.c_uint64)
    spawn = module.function("rust_tls_run_threads", ctypes.c_uint64,
                            (ctypes.c_uint32, ctypes.c_uint32))
    touch(1)  # main Python thread
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(5):
                touch(i)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # all 21 touches landed in one thread's thread-locals: the owner's
    assert touches() == 21
    # the module's own threads touch and exit; their destructors ran (2 each)
    before = dtors()
    assert spawn(3, 4) == 12
    assert dtors() == before + 6
    report = module.unload()
    assert report.unloaded and report.clean, report.summary()
    assert not mapped(path)


def test_caller_mode_refuses_other_threads(native) -> None:
    module = load(native("c_plain"), owner="caller")
    add = module.function("plain_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int))
    seen: list[BaseException] = []

    def other() -> None:
        try:
            add(1, 1)
        except BaseException as e:
            seen.append(e)
        try:
            module.unload()
        except BaseException as e:
            seen.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert [type(e) for e in seen] == [CallError, relib_pure.UnloadError]
    assert seen[0].code == "call.wrong-thread"
    assert seen[1].code == "unload.wrong-thread"
    assert module.loaded and add(1, 1) == 2
    assert module.unload().clean


def test_thread_starter_refused_then_usable_then_clean(rt_copy: Path) -> None:
    module = load(rt_copy)
    start = module.function("rt_thread_start")
    stop = module.function("rt_thread_stop")
    add = module.function("rt_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int))
    assert start() == 0
    with pytest.raises(ThreadsStillRunning) as info:
        module.unload()
    err = info.value
    assert err.code == "unload.threads-running" and err.path == module.path
    assert len(err.report.threads) == 1 and not err.report.unloaded
    # refused, so still loaded and usable
    assert module.loaded and mapped(rt_copy)
    assert add(2, 2) == 4
    assert stop() == 0
    report = module.unload()
    assert report.clean, report.summary()
    assert not mapped(rt_copy)


def test_thread_joiner_is_clean(rt_copy: Path) -> None:
    module = load(rt_copy)
    joined = module.function("rt_thread_joined", ctypes.c_long, (ctypes.c_long,))
    assert joined(10) == 55
    report = module.unload()
    assert report.clean, report.summary()
    assert report.threads == () and report.mappings == ()


def test_fd_leak_reported_with_target(rt_copy: Path, tmp_path: Path) -> None:
    victim = tmp_path / "leaked.txt"
    victim.write_text("x")
    module = load(rt_copy)
    leak = module.function("rt_leak_fd", ctypes.c_int, (ctypes.c_char_p,))
    fd = leak(os.fsencode(victim))
    assert fd >= 0
    try:
        report = module.unload()
        assert report.unloaded and not report.clean
        assert (fd, str(victim)) in [(f.fd, f.target) for f in report.fds]
        assert report.to_dict()["leaks"]["fds"] == [{"fd": fd, "target": str(victim)}]
    finally:
        os.close(fd)


def test_mmap_leak_reported_with_size(rt_copy: Path) -> None:
    module = load(rt_copy)
    leak = module.function("rt_leak_mmap", ctypes.c_void_p, (ctypes.c_long,))
    addr = leak(5)
    assert addr
    report = module.unload()
    assert report.unloaded and not report.clean
    page = os.sysconf("SC_PAGESIZE")
    found = [m for m in report.mappings if m.start <= addr < m.end]
    assert len(found) == 1, report.summary()
    assert found[0].start == addr and found[0].size == 5 * page and found[0].perms == "rw-p"
    assert found[0].path == ""


@pytest.mark.parametrize("how", ["64-MiB-boundary", "above-a-guard-page"])
def test_leak_shaped_like_allocator_memory_is_still_reported(rt_copy: Path, how: str) -> None:
    """A leak that starts on a 64 MiB boundary (where malloc arenas start) or
    sits right above a PROT_NONE page (as a thread stack does) is reported:
    only the real shapes (an arena's 64 MiB reservation, a stack of the thread
    stack size) are the allocator's."""
    module = load(rt_copy)
    if how == "64-MiB-boundary":
        leak = module.function("rt_leak_aligned", ctypes.c_void_p, (ctypes.c_long, ctypes.c_long))
        size = 8 << 20
        addr = leak(size, 64 << 20)
        assert addr and addr % (64 << 20) == 0
    else:
        leak = module.function("rt_leak_above_guard", ctypes.c_void_p, (ctypes.c_long,))
        size = 5 << 20
        addr = leak(size)
        assert addr
        below = procfs.query_mapping(addr - 1)
        assert below is not None and below.perms == "---p" and below.end == addr
    report = module.unload()
    assert report.unloaded and not report.clean
    found = [m for m in report.mappings if m.start <= addr < m.end]
    assert len(found) == 1, report.summary()
    assert (found[0].start, found[0].size, found[0].perms) == (addr, size, "rw-p")


def test_already_loaded_by_path_and_by_inode(rt_copy: Path, tmp_path: Path) -> None:
    link = tmp_path / "hardlink.so"
    os.link(rt_copy, link)
    with load(rt_copy) as module:
        with pytest.raises(AlreadyLoaded) as info:
            load(rt_copy)
        assert info.value.code == "load.already-loaded"
        with pytest.raises(AlreadyLoaded):
            load(link)  # another name, same inode
        assert module.function("rt_tag")() == 1
    assert module.report is not None and module.report.clean
    assert not mapped(rt_copy)


def test_300_threads_loading_one_path(rt_copy: Path) -> None:
    n = 300
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = load(rt_copy)
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    modules = [r for r in results if isinstance(r, Module)]
    refused = [r for r in results if isinstance(r, AlreadyLoaded)]
    assert len(modules) == 1 and len(refused) == n - 1, {type(r) for r in results}
    assert modules[0].unload().unloaded
    assert not mapped(rt_copy)


def test_swapped_file_between_check_and_load(native, tmp_path: Path) -> None:
    target = tmp_path / "libswap.so"
    shutil.copy(native("rt_basic"), target)
    other = tmp_path / "other.so"
    shutil.copy(native("rt_other"), other)
    validated = validate(target)
    os.replace(other, target)  # what gets mapped now is rt_other
    with pytest.raises(LoadError) as info:
        load_validated(validated)
    assert info.value.code == "load.swapped" and info.value.path == str(target)
    assert not mapped(target)
    # validated afresh, the new file loads (it is rt_other: tag 2)
    with load(target) as module:
        assert module.function("rt_tag")() == 2


def test_modified_in_place_between_check_and_load(rt_copy: Path) -> None:
    validated = validate(rt_copy)
    with open(rt_copy, "ab") as f:
        f.write(b"\0" * 16)  # same inode, other bytes
    with pytest.raises(LoadError) as info:
        load_validated(validated)
    assert info.value.code == "load.swapped"
    assert not mapped(rt_copy)


def test_same_size_rewrite_with_restored_mtime_is_detected(native, tmp_path: Path) -> None:
    """The validated file rewritten in place (same inode) with another library
    of the same size, its mtime put back with os.utime: the ctime still
    changed, so every such swap is refused, right after validation or later."""
    original, other = native("rt_basic").read_bytes(), native("rt_other").read_bytes()
    assert len(original) == len(other) and original != other
    target = tmp_path / "librewrite.so"
    for round_ in range(20):
        target.write_bytes(original)
        if round_ % 5 == 4:
            time.sleep(0.05)  # the rewrite in a later clock tick than the copy, too
        validated = validate(target)
        before = os.stat(target)
        with open(target, "r+b") as f:  # in place: the inode is kept
            f.write(other)
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(target)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
            before.st_ino, before.st_size, before.st_mtime_ns)
        with pytest.raises(LoadError) as info:
            load_validated(validated)
        assert info.value.code == "load.swapped", round_
        assert not mapped(target)
    with load(target) as module:  # validated afresh: it is rt_other now
        assert module.function("rt_tag")() == 2


def test_compat_error_stops_before_mapping(native) -> None:
    path = native("cross_foreign")
    with pytest.raises(IncompatibleModuleError) as info:
        load(path)
    assert info.value.path is not None
    assert not mapped(path)
    # relaxed, dlopen itself refuses it, with dlerror's text
    with pytest.raises(LoadError) as info2:
        load(path, check=False)
    assert info2.value.code == "load.dlopen"
    # glibc's own words for a foreign-machine object, carried over from dlerror()
    assert "cannot open shared object file" in info2.value.message
    assert not mapped(path)


def test_bad_input_is_typed(tmp_path: Path) -> None:
    with pytest.raises(InspectionError) as info:
        load(tmp_path / "missing.so")
    assert info.value.code == "inspect.not-found"
    junk = tmp_path / "junk.so"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(InspectionError) as info:
        load(junk)
    assert info.value.path is not None and info.value.code.startswith("inspect.")
    with pytest.raises(InspectionError) as info:
        load(tmp_path)
    assert info.value.code == "inspect.not-a-file"


def test_context_manager_unloads_on_error(native) -> None:
    path = native("c_plain")
    with pytest.raises(ZeroDivisionError):
        with load(path) as module:
            raise ZeroDivisionError("inside the with block")
    assert not module.loaded and not mapped(path)


def test_report_to_dict_shape(native) -> None:
    with load(native("c_plain")) as module:
        pass
    data = module.report.to_dict()
    assert data["unloaded"] is True and data["clean"] is True
    assert set(data["leaks"]) == {"threads", "fds", "mappings"}
    assert {"dlopen", "dlclose", "verify"} <= set(data["timings_us"])


def test_calls_racing_an_unload_either_run_or_raise(rt_copy: Path) -> None:
    module = load(rt_copy)
    add = module.function("rt_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int))
    outcomes: list[str] = []
    unexpected: list[BaseException] = []
    started = threading.Barrier(5)

    def caller() -> None:
        started.wait()
        while True:
            try:
                assert add(20, 22) == 42
                outcomes.append("ran")
            except ModuleUnloaded:
                outcomes.append("refused")
                return
            except BaseException as e:
                unexpected.append(e)
                return

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    report = module.unload()
    for t in threads:
        t.join()
    assert unexpected == []
    assert report.unloaded and outcomes.count("refused") == 4
    assert not mapped(rt_copy)


def test_retry_unload_after_the_pinning_thread_exits(native, tmp_path: Path) -> None:
    """owner='caller' on a worker thread that touches Rust thread-locals: while the
    worker lives glibc keeps the library (StillMapped, cause tls-destructors);
    once it has exited, retry_unload() finishes the job."""
    lib = tmp_path / "librust_tls_copy.so"
    shutil.copy(native("rust_tls"), lib)
    box: dict[str, object] = {}
    done = threading.Event()

    def worker() -> None:
        module = load(lib, owner="caller")
        box["module"] = module
        module.function("rust_tls_touch", ctypes.c_size_t, (ctypes.c_uint8,))(3)
        try:
            module.unload()
        except relib_pure.StillMapped as e:
            box["error"] = e
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    assert done.wait(30)
    err = box["error"]
    assert isinstance(err, relib_pure.StillMapped)
    assert err.report.cause_codes == ("tls-destructors",) and not err.report.unloaded
    assert mapped(lib)
    t.join()
    assert procfs.wait_task_gone(t.native_id, 10)
    module = box["module"]
    assert isinstance(module, Module)
    report = module.retry_unload()
    assert report.unloaded and report.retried
    assert not mapped(lib)
    with pytest.raises(ModuleUnloaded):
        module.retry_unload()


def test_cxx_thread_local_destructor_is_named_as_the_cause(native, tmp_path: Path) -> None:
    """A C++ thread_local with a destructor registers it through libstdc++'s
    __cxa_thread_atexit: check names the hazard, and while the touching thread
    lives the still-mapped cause is tls-destructors (not another-handle)."""
    lib = tmp_path / "libcxx_tls_copy.so"
    shutil.copy(native("cxx_tls_dtor"), lib)
    info = relib_pure.inspect(lib)
    assert "__cxa_thread_atexit" in {s.name for s in info.imports}
    assert "__cxa_thread_atexit_impl" not in {s.name for s in info.imports}
    assert info.hazards.thread_atexit
    (finding,) = relib_pure.check(lib, relib_pure.Policy(resolve=False)).by_code(
        "hazard.thread-atexit")
    assert "__cxa_thread_atexit" in finding.message
    box: dict[str, object] = {}

    def worker() -> None:
        module = load(lib, owner="caller")
        box["module"] = module
        assert module.function("cxx_tls_touch", ctypes.c_uint64)() == 1
        try:
            module.unload()
        except relib_pure.StillMapped as e:
            box["error"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    err = box["error"]
    assert isinstance(err, relib_pure.StillMapped)
    assert err.report.cause_codes == ("tls-destructors",)
    assert mapped(lib)
    assert procfs.wait_task_gone(t.native_id, 10)
    module = box["module"]
    assert isinstance(module, Module)
    assert module.retry_unload().unloaded
    assert not mapped(lib)


def test_forked_child_cannot_use_owner_thread_modules(rt_copy: Path) -> None:
    module = load(rt_copy)
    tag = module.function("rt_tag")
    assert tag() == 1
    pid = os.fork()
    if pid == 0:  # child: the owner thread did not survive the fork
        code = 3
        try:
            tag()
        except ModuleUnloaded:
            code = 0
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert tag() == 1  # the parent is untouched
    assert module.unload().clean


def test_forked_child_unloads_its_caller_owned_module(rt_copy: Path) -> None:
    """owner='caller', then fork: the child's main thread has a new thread id,
    which the module did not start; the child's unload is clean."""
    module = load(rt_copy, owner="caller")
    assert module.function("rt_tag")() == 1
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            report = module.unload()
            code = 0 if report.clean and not mapped(rt_copy) else 5
            if code:
                os.write(2, report.summary().encode())
        except BaseException as e:  # noqa: BLE001 - the child reports by exit status
            os.write(2, f"child: {type(e).__name__}: {e}\n".encode())
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert module.function("rt_tag")() == 1  # the parent's copy is untouched
    assert module.unload().clean


def test_bind_declared_interface(native) -> None:
    from relib_pure.interface import Interface

    api = Interface.from_dict({"plain_add": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
                               "plain_scale": (ctypes.c_double, [ctypes.c_double])})
    with load(native("c_plain")) as module:
        funcs = module.bind(api)
        assert funcs["plain_add"](3, 4) == 7 and funcs["plain_scale"](4.0) == 10.0
        wrong = Interface.from_dict({"plain_add": (ctypes.c_int, []),
                                     "nope_a": (None, []), "nope_b": (None, [])})
        with pytest.raises(relib_pure.SymbolMissing) as info:
            module.bind(wrong)
        assert info.value.symbols == ("nope_a", "nope_b")
        with pytest.raises(CallError):
            module.bind(Interface.from_dict({"f": (None, [])}, trait="Exports"))
    with pytest.raises(ModuleUnloaded):
        funcs["plain_add"](1, 2)


def test_unload_refused_on_the_owner_thread_itself(native) -> None:
    module = load(native("c_plain"))
    with pytest.raises(relib_pure.UnloadError) as info:
        module.run_on_owner(module.unload)
    assert info.value.code == "unload.wrong-thread"
    assert module.loaded
    assert module.unload().clean


def test_dlopen_flags_are_the_ones_asked_for(native) -> None:
    path = native("rt_flags")  # calls a function nobody defines, shadows getpid()
    with pytest.raises(LoadError) as info:
        load(path)  # RTLD_NOW: the undefined function is resolved up front
    assert info.value.code == "load.dlopen"
    assert "rt_flags_undefined_function" in info.value.message
    assert not mapped(path)
    with load(path, lazy=True) as module:
        assert module.function("rt_flags_ok")() == 5
        # without DEEPBIND the library's own getpid() call binds to libc's
        assert module.function("rt_flags_getpid")() == os.getpid()
    assert module.report is not None and module.report.clean
    with load(path, lazy=True, deepbind=True) as module:
        assert module.function("rt_flags_getpid")() == 424242
    assert not mapped(path)


def test_partial_maps_read_reaches_the_address() -> None:
    full = procfs.read_maps().splitlines()
    assert len(b"\n".join(full)) > 8192  # several kernel reads' worth
    for line in (full[0], full[len(full) // 2], full[-1]):
        start = int(line.split(b"-")[0], 16)
        part = procfs.read_maps(through=start).splitlines()
        assert line in part
    # the first mapping needs only the first read
    assert len(procfs.read_maps(through=int(full[0].split(b"-")[0], 16))) < 8192


def test_function_binds_only_the_librarys_own_exports(rt_copy: Path) -> None:
    """dlsym on the handle also searches the library's dependencies; a module's
    functions are its own exports, never libc's getpid reached through it."""
    from relib_pure.interface import Interface

    with load(rt_copy) as module:
        assert module.function("rt_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int))(2, 3) == 5
        with pytest.raises(relib_pure.SymbolMissing) as info:
            module.function("getpid", ctypes.c_int)
        assert info.value.symbols == ("getpid",) and info.value.path == str(rt_copy)
        assert "libc.so" in info.value.message
        with pytest.raises(relib_pure.SymbolMissing) as info:
            module.symbol("malloc")
        # C would stop reading at the NUL and find rt_add
        with pytest.raises(relib_pure.SymbolMissing):
            module.function("rt_add\0anything")
        with pytest.raises(relib_pure.SymbolMissing):
            module.function("rt_add\udcff")
        with pytest.raises(relib_pure.SymbolMissing) as info:
            module.bind(Interface.from_dict({"rt_tag": (ctypes.c_int, []),
                                             "getpid": (ctypes.c_int, [])}))
        assert info.value.symbols == ("getpid",)


def test_another_handle_is_named_as_the_cause(rt_copy: Path) -> None:
    """A second dlopen of the same file (here ctypes') keeps the object: the
    report says so, and once that handle is closed retry_unload() finishes."""
    import _ctypes

    module = load(rt_copy)
    other = ctypes.CDLL(str(rt_copy))
    try:
        with pytest.raises(relib_pure.StillMapped) as info:
            module.unload()
        report = info.value.report
        assert report.cause_codes == ("another-handle",), report.summary()
        assert report.loader_knows and not report.unloaded and report.still_mapped
        assert info.value.path == str(rt_copy) and mapped(rt_copy)
        assert other.rt_tag() == 1  # the other handle still works
        with pytest.raises(ModuleUnloaded):
            module.function("rt_tag")
    finally:
        _ctypes.dlclose(other._handle)
    report = module.retry_unload()
    assert report.unloaded and not mapped(rt_copy)


def test_empty_and_nul_paths_are_typed(tmp_path: Path) -> None:
    with pytest.raises(InspectionError) as info:
        load("")
    assert info.value.code == "inspect.not-found" and info.value.path == ""
    with pytest.raises(InspectionError) as info:
        load(str(tmp_path / "a\0b.so"))
    assert info.value.code == "inspect.io" and "null byte" in info.value.message


def test_cycle_arguments_are_checked_before_any_child_starts(native) -> None:
    from relib_pure.runtime import run_cycle

    path = native("c_plain")
    for bad in ({"owner": "nobody"}, {"times": 0}, {"restype": "float128"}):
        with pytest.raises(ValueError):
            relib_pure.probe(path, call="plain_bump", **bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            run_cycle(path, call="plain_bump", **bad)  # type: ignore[arg-type]
    assert not mapped(path)


def test_native_thread_that_called_into_python_still_blocks_unload(rt_copy: Path) -> None:
    """A native thread running a ctypes callback becomes a threading "dummy" thread
    once Python asks who it is (logging does, on every record); it is still the
    library's thread and still inside its code, so unload is refused."""
    callback_type = ctypes.CFUNCTYPE(None)
    seen = threading.Event()

    @callback_type
    def callback() -> None:
        threading.current_thread()
        seen.set()

    module = load(rt_copy)
    start = module.function("rt_thread_start_cb", ctypes.c_int, (callback_type,))
    stop = module.function("rt_thread_stop")
    assert start(callback) == 0
    assert seen.wait(10)
    tids = {t.native_id for t in threading.enumerate()
            if isinstance(t, threading._DummyThread)}  # type: ignore[attr-defined]
    with pytest.raises(ThreadsStillRunning) as info:
        module.unload()
    leaked = [t.tid for t in info.value.report.threads]
    assert len(leaked) == 1 and leaked[0] in tids
    assert module.loaded and mapped(rt_copy)
    assert stop() == 0
    report = module.unload()
    assert report.clean, report.summary()
    assert not mapped(rt_copy)


def test_leftover_mapping_of_the_file_is_named_as_the_cause(rt_copy: Path) -> None:
    """The loader let go, but someone mapped the file itself meanwhile: still
    mapped by the kernel's account, and the cause says why."""
    import mmap

    module = load(rt_copy)
    with open(rt_copy, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        with pytest.raises(relib_pure.StillMapped) as info:
            module.unload()
        report = info.value.report
        assert report.cause_codes == ("leftover-mapping",), report.summary()
        assert not report.loader_knows and not report.unloaded
        page = mmap.PAGESIZE
        assert [m.size for m in report.still_mapped] == [(len(view) + page - 1) // page * page]
    finally:
        view.close()
    report = module.retry_unload()
    assert report.unloaded and not mapped(rt_copy)


def test_mapping_of_a_file_named_like_the_library_is_still_a_leak(rt_copy: Path) -> None:
    import mmap

    neighbour = Path(str(rt_copy) + ".cache")
    neighbour.write_bytes(b"\1" * (3 * mmap.PAGESIZE))
    module = load(rt_copy)
    with open(neighbour, "r+b") as f:
        view = mmap.mmap(f.fileno(), 0)
    try:
        report = module.unload()
        assert report.unloaded
        assert [(m.path, m.size) for m in report.mappings] == \
            [(str(neighbour), 3 * mmap.PAGESIZE)], report.summary()
    finally:
        view.close()


def test_another_handle_on_a_thread_local_library_is_not_blamed_on_destructors(
        native, tmp_path: Path) -> None:
    """With an owner thread, every call ran there and that thread is gone before
    dlclose: a Rust library with thread-locals kept by a second handle is kept by
    the handle, and the report must say so (not "tls-destructors")."""
    import _ctypes

    lib = tmp_path / "librust_tls_handle.so"
    shutil.copy(native("rust_tls"), lib)
    module = load(lib)
    module.function("rust_tls_touch", ctypes.c_size_t, (ctypes.c_uint8,))(1)
    other = ctypes.CDLL(str(lib))
    try:
        with pytest.raises(relib_pure.StillMapped) as info:
            module.unload()
        assert info.value.report.cause_codes == ("another-handle",), \
            info.value.report.summary()
    finally:
        _ctypes.dlclose(other._handle)
    assert module.retry_unload().unloaded and not mapped(lib)
