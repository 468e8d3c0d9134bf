"""relib_pure.testing.assert_unloads_cleanly on real libraries: per-cycle figures and verdicts.

Libraries that cannot be unloaded (a thread that never ends, a GNU-unique
symbol) stay in the process that tried, so those runs happen in a child.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from relib_pure.errors import InspectionError, UnloadNotClean
from relib_pure.runtime.figures import RESOURCES
from relib_pure.testing import assert_unloads_cleanly

REPO = Path(__file__).resolve().parent.parent


def _in_child(lib: Path, cycles: int) -> dict:
    script = textwrap.dedent("""
        import json, sys
        from relib_pure.testing import assert_unloads_cleanly
        try:
            assert_unloads_cleanly(sys.argv[1], call="cycle_work", restype="int",
                                   cycles=int(sys.argv[2]))
            print(json.dumps({"raised": None}))
        except Exception as e:
            print(json.dumps({"raised": type(e).__name__, "code": getattr(e, "code", None),
                              "message": str(e), "completed": e.run.completed}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", script, str(lib), str(cycles)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_clean_library_returns_per_cycle_figures(native) -> None:
    run = assert_unloads_cleanly(native("cycle_clean"), call="cycle_work", restype="int",
                                 cycles=30)
    assert run.clean and run.completed == 30 and run.error_code is None
    assert run.last is not None and run.last.result == 42
    assert [r.cycle for r in run.records] == list(range(1, 31))
    assert [r.warmup for r in run.records[:2]] == [True, False]
    for r in run.records:
        f = r.figures
        assert f.rss_kb > 0 and f.vmsize_kb >= f.rss_kb and f.fds > 0 and f.threads >= 1
        assert f.mappings > 0 and r.seconds > 0 and r.clean
    moves = {g.resource: g for g in run.growth()}
    assert tuple(moves) == RESOURCES
    assert moves["fds"].delta == 0 and moves["threads"].delta == 0 and not run.grew
    assert "clean after 30 of 30 cycle(s)" in run.describe()


def test_fd_leak_raises_with_a_growth_diff(native) -> None:
    with pytest.raises(UnloadNotClean) as info:
        assert_unloads_cleanly(native("cycle_leak_fd"), call="cycle_work", restype="int",
                               cycles=5)
    err = info.value
    run = err.run
    try:
        assert err.code == "cycle.not-clean" and err.path == str(native("cycle_leak_fd"))
        assert [n for n, _ in run.failures] == [1, 2, 3, 4, 5]
        fds = next(g for g in run.growth() if g.resource == "fds")
        assert (fds.delta, fds.late_delta, fds.grew) == (4, 2, True)
        text = str(err)
        assert "fds: " in text and "(+4, +2 in the second half, tolerance 0) GREW" in text
        assert "cycle 1 was not clean:" in text and "descriptor left open: fd" in text
        assert "-> /dev/null" in text and "(4 more cycle(s) not clean: 2, 3, 4, 5)" in text
    finally:  # the library's descriptors are this process's now
        for _, outcome in run.failures:
            for report in outcome.reports:
                for fd in report.fds:
                    os.close(fd.fd)


def test_growth_the_unload_reports_cannot_see_is_cycle_growth(native) -> None:
    # 1 MiB of anonymous memory per cycle: the size of a CPython arena, which the
    # per-unload report deliberately ignores; the process figures still show it
    def leak(m):
        return m.function("rt_leak_mmap", ctypes.c_void_p, (ctypes.c_long,))(256)
    with pytest.raises(UnloadNotClean) as info:
        assert_unloads_cleanly(native("rt_basic"), call=leak, cycles=6,
                               tolerance={"vmsize_kb": 2048, "rss_kb": 2048})
    err = info.value
    assert err.code == "cycle.growth" and not err.run.failures
    assert err.run.last is not None and err.run.last.clean
    vm = next(g for g in err.run.growth() if g.resource == "vmsize_kb")
    assert vm.delta >= 5 * 1024 and vm.grew
    assert "vmsize_kb: " in str(err) and "GREW" in str(err)


def test_thread_that_never_ends_stops_the_run(native) -> None:
    out = _in_child(native("cycle_thread"), 4)
    assert out["raised"] == "UnloadNotClean" and out["code"] == "cycle.not-clean"
    assert out["completed"] == 1
    assert "unload.threads-running" in out["message"]
    assert "thread still running: tid" in out["message"]
    assert "stopped after cycle 1: the library could not be loaded again" in out["message"]


def test_gnu_unique_symbol_keeps_it_mapped(native) -> None:
    out = _in_child(native("cycle_unique"), 3)
    assert out["raised"] == "UnloadNotClean" and out["code"] == "cycle.not-clean"
    assert out["completed"] == 1 and "STILL MAPPED" in out["message"]
    assert "cause gnu-unique" in out["message"]
    assert "_ZZ13cycle_countervE7counter" in out["message"]


def test_relib_module_with_exports(native) -> None:
    run = assert_unloads_cleanly(
        native("relib_0_7"), call=lambda m: m.exports.add(2, 40), cycles=1,
        exports={"add": (ctypes.c_uint64, [ctypes.c_uint64, ctypes.c_uint64])})
    assert run.clean and run.last is not None and run.last.result == 42
    assert run.last.reports[0].driver == "relib-0.7"
    assert all(r.freed_allocations is not None for r in run.records)


def test_upstream_relib_module_main_cycles(relib_test_module: Path, capfd) -> None:
    run = assert_unloads_cleanly(relib_test_module, cycles=3)
    assert run.clean and run.completed == 3
    assert capfd.readouterr().out.count("[module] main called") == 3
    assert all(r.freed_allocations and r.freed_allocations > 0 for r in run.records)
    # relib frees what the module left; asking for none left makes it a failure
    from upstream_relib import HostImports, interface

    with pytest.raises(UnloadNotClean) as info:  # upstream's trait files, parsed
        assert_unloads_cleanly(relib_test_module, call=lambda m: m.exports.primitive_ret(-2**31),
                               interface=interface(), imports=HostImports().implementations(),
                               max_freed_allocations=0)
    assert info.value.run.last.result == -2**31
    assert "relib allocations left at unload:" in str(info.value)


def test_bad_arguments_and_input(native, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cycles must be an integer of at least 1"):
        assert_unloads_cleanly(native("cycle_clean"), cycles=0)
    with pytest.raises(ValueError, match="unknown resource 'heap'"):
        assert_unloads_cleanly(native("cycle_clean"), tolerance={"heap": 1})
    with pytest.raises(ValueError, match="restype must be one of"):
        assert_unloads_cleanly(native("cycle_clean"), call="cycle_work", restype="float")
    with pytest.raises(InspectionError) as info:
        assert_unloads_cleanly(tmp_path / "missing.so")
    assert info.value.code == "inspect.not-found"


def test_growth_rule_tells_a_leak_from_a_one_time_step() -> None:
    from relib_pure.runtime.figures import Growth

    leak = Growth("fds", 8, 12, 0, mid=10)
    assert leak.grew and leak.describe() == \
        "fds: 8 -> 12 (+4, +2 in the second half, tolerance 0) GREW"
    # a malloc arena made in the second cycle, then reused: 64 MiB once
    step = Growth("vmsize_kb", 181184, 246720, 8192, mid=246720)
    assert not step.grew and step.describe().endswith(": a one-time step, not growth")
    alone = Growth("vmsize_kb", 181184, 246720, 8192)
    assert not alone.grew and alone.describe().endswith(": not judged from one cycle")
    assert not Growth("rss_kb", 1000, 2000, 2048, mid=1500).grew
