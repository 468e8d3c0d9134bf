"""The runtime's fast paths give the same answers as the slow ones they replace.

PROCMAP_QUERY against the maps text, the thread pidfd wait against polling the
task list, cached validation against a fresh one, descriptor identities
against targets, the skipped already-mapped search against a file mapped in
between, and owner threads (not listed by ``threading``) against the
"threads the module started" diff.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import threading
import weakref
from pathlib import Path

import pytest

from relib_pure.compat import Policy
from relib_pure.errors import AlreadyLoaded, InspectionError, LoadError
from relib_pure.runtime import load, load_validated, procfs, validate
from relib_pure.runtime import owner as owner_mod


@pytest.fixture
def rt_copy(native, tmp_path: Path) -> Path:
    target = tmp_path / "librt_fast.so"
    shutil.copy(native("rt_basic"), target)
    return target


@pytest.fixture(params=["ioctl", "maps-text"])
def query_mode(request, monkeypatch) -> str:
    """Run a test with PROCMAP_QUERY and again with the partial-read fallback."""
    if request.param == "maps-text":
        monkeypatch.setattr(procfs, "_query_supported", False)
    return str(request.param)


def test_query_mapping_agrees_with_the_maps_text(query_mode: str) -> None:
    if query_mode == "ioctl":
        assert procfs.query_mapping(id(object())) is not None
        if procfs._query_supported is not True:
            pytest.skip("this kernel has no PROCMAP_QUERY (Linux 6.11+)")
    rows = [m for m in procfs.parse_maps(procfs.read_maps()) if m.path != "[vsyscall]"]
    assert len(rows) > 20
    for m in rows:
        for address in (m.start, (m.start + m.end) // 2, m.end - 1):
            got = procfs.query_mapping(address)
            if got != m:
                # the process changed meanwhile (an arena, a thread stack): recheck
                fresh = procfs.mapping_at(procfs.parse_maps(procfs.read_maps()), address)
                assert got == fresh, (hex(address), m, got)
    # below the first mapping there is nothing
    assert procfs.query_mapping(0) is None
    assert procfs.query_mapping(rows[0].start - 1) is None


def test_swapped_file_refused_with_either_identity_check(native, tmp_path: Path,
                                                         query_mode: str) -> None:
    target = tmp_path / "libswap.so"
    shutil.copy(native("rt_basic"), target)
    other = tmp_path / "other.so"
    shutil.copy(native("rt_other"), other)
    validated = validate(target)
    os.replace(other, target)
    with pytest.raises(LoadError) as info:
        load_validated(validated)
    assert info.value.code == "load.swapped"
    assert "is not the validated one" in info.value.message
    with load(target) as module:
        assert module.function("rt_tag")() == 2
    assert module.report is not None and module.report.clean


@pytest.mark.parametrize("mode", ["pidfd", "polling"])
def test_wait_task_gone(monkeypatch, mode: str) -> None:
    if mode == "polling":
        monkeypatch.setattr(procfs, "_pidfd_threads", False)
    release = threading.Event()
    t = threading.Thread(target=release.wait)
    t.start()
    tid = t.native_id
    assert tid is not None
    # still running: the wait times out and says so
    assert procfs.wait_task_gone(tid, 0.05) is False
    assert os.path.exists(f"/proc/self/task/{tid}")
    release.set()
    assert procfs.wait_task_gone(tid, 10) is True
    assert not os.path.exists(f"/proc/self/task/{tid}")
    t.join()
    if mode == "pidfd" and procfs._pidfd_threads is None:
        pytest.fail("the pidfd path was never taken")
    # a thread that is long gone
    assert procfs.wait_task_gone(tid, 0.05) is True


def test_owner_thread_does_not_keep_a_result_alive(native) -> None:
    class Big:
        pass

    with load(native("c_plain")) as module:
        obj = module.run_on_owner(Big)
        ref = weakref.ref(obj)
        del obj
        # no gc.collect(): nothing but the caller may have held it
        assert ref() is None
        with pytest.raises(ZeroDivisionError):
            module.run_on_owner(lambda: 1 // 0)


def test_owner_thread_exits_after_unload_and_refuses_work(native) -> None:
    module = load(native("c_plain"))
    owner = module._owner
    assert owner is not None
    tid = owner.native_id
    assert tid in owner_mod.live_native_ids() and os.path.exists(f"/proc/self/task/{tid}")
    assert module.unload().clean
    assert tid not in owner_mod.live_native_ids()
    assert not os.path.exists(f"/proc/self/task/{tid}")
    assert owner.closed
    with pytest.raises(Exception) as info:
        owner.submit(lambda: None)
    assert getattr(info.value, "code", None) == "call.unloaded"


def test_unload_never_closes_under_a_job_still_running(native, monkeypatch) -> None:
    """A job queued behind the close steps still runs on the owner thread; if it
    outlasts the exit timeout, unload waits for it before dlclose."""
    import time

    import relib_pure.runtime.module as module_mod

    monkeypatch.setattr(module_mod, "OWNER_EXIT_TIMEOUT", 0.05)
    module = load(native("c_plain"))
    owner = module._owner
    assert owner is not None
    running, release = threading.Event(), threading.Event()
    state: dict[str, object] = {}

    def occupy() -> None:
        running.set()
        release.wait(10)

    def slow() -> None:
        time.sleep(0.3)
        state["slow_done"] = True

    def unload() -> None:
        state["report"] = module.unload()
        state["slow_done_at_return"] = state.get("slow_done", False)

    def queued(n: int) -> None:
        deadline = time.monotonic() + 10
        while owner._jobs.qsize() < n and time.monotonic() < deadline:
            time.sleep(0.001)
        assert owner._jobs.qsize() == n

    a = threading.Thread(target=module.run_on_owner, args=(occupy,))
    a.start()
    assert running.wait(10)
    u = threading.Thread(target=unload)
    u.start()
    queued(1)  # the close job waits behind occupy()
    b = threading.Thread(target=module.run_on_owner, args=(slow,))
    b.start()
    queued(2)  # slow() waits behind the close job
    release.set()
    for t in (a, u, b):
        t.join(20)
    assert state["slow_done_at_return"] is True
    report = state["report"]
    assert report.clean, report.summary()  # type: ignore[attr-defined]


def test_owner_thread_leaves_no_dummy_in_threading(native) -> None:
    """logging calls threading.current_thread() on the owner thread; the stand-in
    threading registers for it must not outlive the thread."""
    module = load(native("c_plain"))
    current = module.run_on_owner(threading.current_thread)
    ident = module.owner_ident
    assert current.ident == ident and current in threading.enumerate()
    del current
    assert module.unload().clean
    assert ident not in {t.ident for t in threading.enumerate()}


def test_other_modules_owner_threads_are_not_leaked_threads(native, rt_copy: Path) -> None:
    """Owner threads are not in threading.enumerate(): they must still not count as
    native threads another module started."""
    first = load(native("c_plain"))
    second = load(rt_copy)  # its owner thread starts during first's lifetime
    assert second.function("rt_tag")() == 1
    report = first.unload()
    assert report.threads == () and report.clean, report.summary()
    # and a thread the module does start is still seen
    assert second.function("rt_thread_start")() == 0
    with pytest.raises(Exception) as info:
        second.unload()
    assert getattr(info.value, "code", None) == "unload.threads-running"
    assert second.function("rt_thread_stop")() == 0
    assert second.unload().clean


def test_descriptor_replaced_behind_the_same_name_is_a_leak(rt_copy: Path,
                                                            tmp_path: Path) -> None:
    """Same number, same target text, another file: compared by identity, it is reported."""
    victim = tmp_path / "victim.txt"
    victim.write_text("old")
    fd = os.open(victim, os.O_RDONLY)
    try:
        module = load(rt_copy, owner="caller")
        leak = module.function("rt_leak_fd", ctypes.c_int, (ctypes.c_char_p,))
        os.close(fd)
        replacement = tmp_path / "victim.new"
        replacement.write_text("new")
        os.replace(replacement, victim)
        got = leak(os.fsencode(victim))
        if got != fd:
            os.close(got)
            module.unload()
            pytest.skip(f"the kernel handed out fd {got}, not the freed {fd}")
        report = module.unload()
        assert report.unloaded and not report.clean
        assert [(f.fd, f.target) for f in report.fds] == [(fd, str(victim))]
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def test_validation_cache_follows_the_file(rt_copy: Path) -> None:
    first = validate(rt_copy)
    again = validate(rt_copy)
    assert again.info is first.info and again.check_report is first.check_report
    # resolve also depends on this process's loaded objects and LD_LIBRARY_PATH:
    # cached while they stay, checked afresh when either changes
    resolving = Policy()
    once = validate(rt_copy, policy=resolving).check_report
    assert validate(rt_copy, policy=resolving).check_report is once
    other = rt_copy.with_name("libother_loaded.so")
    shutil.copy2(rt_copy, other)
    extra = ctypes.CDLL(str(other))  # one more object in the loader's list
    try:
        assert validate(rt_copy, policy=resolving).check_report is not once
    finally:
        del extra
    old_path = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = str(rt_copy.parent)
    try:
        changed_path = validate(rt_copy, policy=resolving).check_report
        assert changed_path is not once and validate(
            rt_copy, policy=resolving).check_report is changed_path
    finally:
        if old_path is None:
            del os.environ["LD_LIBRARY_PATH"]
        else:
            os.environ["LD_LIBRARY_PATH"] = old_path
    with open(rt_copy, "ab") as f:
        f.write(b"\0" * 64)
    changed = validate(rt_copy)
    assert changed.info is not first.info
    assert changed.info.file_size == first.info.file_size + 64
    assert changed.file.size == first.file.size + 64


def test_symlinks_resolve_like_realpath(rt_copy: Path, tmp_path: Path) -> None:
    link_dir = tmp_path / "linked"
    link_dir.symlink_to(rt_copy.parent, target_is_directory=True)
    link = link_dir / rt_copy.name
    v = validate(link)
    assert v.path == str(link) and v.real_path == os.path.realpath(link)
    with load(link) as module:
        assert module.path == str(link) and module.function("rt_tag")() == 1
    assert module.report is not None and module.report.clean
    dangling = tmp_path / "dangling.so"
    dangling.symlink_to(tmp_path / "nowhere.so")
    with pytest.raises(InspectionError) as info:
        validate(dangling)
    assert info.value.code == "inspect.not-found"
    to_dir = tmp_path / "dir.so"
    to_dir.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InspectionError) as info:
        validate(to_dir)
    assert info.value.code == "inspect.not-a-file"


def test_file_mapped_between_two_loads_is_already_loaded(rt_copy: Path) -> None:
    """The second load may skip the maps search when the text is unchanged; a file
    mapped in between changes the text, so it is searched and found."""
    for _ in range(2):
        with load(rt_copy, owner="caller") as module:
            assert module.function("rt_tag")() == 1
        assert module.report is not None and module.report.clean
    with open(rt_copy, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as view:
        assert view[:4] == b"\x7fELF"
        with pytest.raises(AlreadyLoaded):
            load(rt_copy, owner="caller")
    with load(rt_copy, owner="caller") as module:
        pass
    assert module.report is not None and module.report.clean


@pytest.mark.parametrize("owner", ["thread", "caller"])
def test_report_timings_cover_every_step(native, owner: str) -> None:
    with load(native("c_plain"), owner=owner) as module:  # type: ignore[arg-type]
        pass
    timings = module.report.timings_us  # type: ignore[union-attr]
    assert set(timings) == {"snapshot", "owner_start", "dlopen", "identity", "after_open",
                            "before_close", "owner_exit", "dlclose", "verify"}
    assert all(v >= 0 for v in timings.values())
    if owner == "caller":
        assert timings["owner_exit"] < 1000


def test_python_threads_alive_at_unload_are_not_leaked_memory(native) -> None:
    """Each Python thread started during the lifetime holds a 16 KiB frame-stack
    chunk; chunks mapped back to back merge into one maps line (32, 48 KiB...),
    which is still not the module's doing."""
    module = load(native("c_plain"))
    release = threading.Event()
    started = threading.Barrier(5)

    def park() -> None:
        started.wait()
        release.wait(30)

    threads = [threading.Thread(target=park) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    try:
        report = module.unload()
    finally:
        release.set()
        for t in threads:
            t.join()
    assert report.clean, report.summary()


def test_maps_descriptor_after_fork_is_the_childs_own() -> None:
    """The kept-open maps descriptor describes the process that opened it: a
    forked child reopens it, sees its own mappings, and closes the inherited one."""
    procfs.read_maps()
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            fds = set(os.listdir("/proc/self/fd"))
            with mmap.mmap(-1, 7 * mmap.PAGESIZE) as region:
                addr = ctypes.addressof(ctypes.c_char.from_buffer(region))
                own = procfs.mapping_at(procfs.parse_maps(procfs.read_maps()), addr)
                seen = own is not None and own.start <= addr < own.end
            code = 0 if seen and set(os.listdir("/proc/self/fd")) == fds else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
