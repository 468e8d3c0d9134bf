"""The pytest plugin (relib_pure.pytest_plugin), run on generated test files with pytester.

Libraries that cannot be unloaded (an endless thread, a GNU-unique symbol) and
crashes run in a pytest subprocess, so nothing they leave stays in this one.
"""

from __future__ import annotations

import ctypes
import importlib
import pkgutil
import re
import textwrap
from pathlib import Path

import pytest

import relib_pure
import test_relib_host_support  # noqa: F401 - imported by generated tests, see below

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules first imported inside them from
# sys.modules; the next import in this process would make a second copy (a second
# LibraryInfo class, which isinstance() against cached objects then rejects). So
# every relib_pure module is imported here, before any inner run.
for _found in pkgutil.walk_packages(relib_pure.__path__, "relib_pure."):
    if not _found.name.endswith("__main__"):
        importlib.import_module(_found.name)

# the plugin under test; third-party plugins are kept out of the inner runs, which
# would otherwise import them afresh each time (seconds for hypothesis)
PLUGIN = ("-p", "relib_pure.pytest_plugin", "-p", "no:hypothesispytest", "-p", "no:benchmark",
          "-p", "no:cacheprovider")
LIBS = ("cycle_clean", "cycle_leak_fd", "cycle_thread", "cycle_unique", "rt_basic", "relib_0_7")


@pytest.fixture(scope="module")
def lib(native) -> dict[str, Path]:
    """The fixture libraries, built before pytester moves HOME (rustup lives there)."""
    return {name: native(name) for name in LIBS}


def _write(pytester: pytest.Pytester, body: str, **libs: Path) -> None:
    names = "".join(f"{k.upper()} = {str(v)!r}\n" for k, v in libs.items())
    pytester.makepyfile("import ctypes\nimport pytest\n" + names + textwrap.dedent(body))


def test_clean_library_passes_and_cycles_rerun_the_body(pytester, lib) -> None:
    _write(pytester, """
        RUNS = []

        def test_work(relib_load):
            lib = relib_load(LIB)
            assert lib.function("cycle_work", ctypes.c_int)() == 42
            RUNS.append(1)

        def test_count():
            assert len(RUNS) == 5
    """, lib=lib["cycle_clean"])
    pytester.runpytest(*PLUGIN, "--relib-cycles", "5").assert_outcomes(passed=2)


def test_libraries_from_other_fixtures_stay_loaded_over_the_reruns(pytester, lib) -> None:
    second = pytester.path / "libclean_copy.so"  # another file: loaded besides the first
    second.write_bytes(lib["cycle_clean"].read_bytes())
    _write(pytester, """
        @pytest.fixture
        def clean(relib_load):
            return relib_load(CLEAN)

        @pytest.fixture
        def leaky(relib_load):
            return relib_load(LEAK)

        def test_fixture_library(clean, relib_load):
            assert clean.function("cycle_work", ctypes.c_int)() == 42
            assert relib_load(CLEAN2).function("cycle_work", ctypes.c_int)() == 42

        def test_leaky_fixture_library(leaky):
            assert leaky.function("cycle_work", ctypes.c_int)() == 42
    """, clean=lib["cycle_clean"], leak=lib["cycle_leak_fd"], clean2=second)
    result = pytester.runpytest(*PLUGIN, "--relib-cycles", "3")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # a descriptor per run while the fixture's library stays loaded, all three in its report
    assert re.search(r"fds: \d+ -> \d+ \(\+2, \+1 in the second half, tolerance 0\) GREW", out)
    assert "loaded by a fixture, unloaded after the test:" in out
    # distinct descriptors: with CI set, pytest does not truncate the failure text, so the
    # report appears twice in it (message and assertion detail)
    assert len(set(re.findall(r"descriptor left open: fd \d+ -> /dev/null", out))) == 3


def test_fd_leak_fails_with_the_unload_report(pytester, lib) -> None:
    _write(pytester, """
        def test_leaks(relib_load):
            lib = relib_load(LIB)
            assert lib.function("cycle_work", ctypes.c_int)() == 42
    """, lib=lib["cycle_leak_fd"])
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "native library not unloaded cleanly" in out
    assert "unloaded, with leaks" in out and re.search(r"descriptor left open: fd \d+ -> "
                                                       r"/dev/null", out)
    # cycles: the growth diff as well
    result = pytester.runpytest(*PLUGIN, "--relib-cycles", "4")
    result.assert_outcomes(failed=1)
    assert re.search(r"fds: \d+ -> \d+ \(\+3, \+\d in the second half, tolerance 0\) GREW",
                     result.stdout.str())


def test_relib_library_marker_loads_relative_to_the_test(pytester, lib) -> None:
    (pytester.path / "libs").mkdir()
    (pytester.path / "libs" / "libcycle_clean.so").write_bytes(
        lib["cycle_clean"].read_bytes())
    _write(pytester, """
        @pytest.mark.relib_library("libs/libcycle_clean.so")
        def test_marked(relib_library):
            assert relib_library.function("cycle_work", ctypes.c_int)() == 42
            assert relib_library.loaded

        def test_unmarked(relib_library):
            pass
    """)
    result = pytester.runpytest(*PLUGIN, "--relib-cycles", "3")
    result.assert_outcomes(passed=1, errors=1)
    assert "needs @pytest.mark.relib_library(path, ...)" in result.stdout.str()


def test_relib_module_with_exports_imports_and_a_test_body_failure(pytester, lib) -> None:
    # the host side of the fixture module's imports, shared with the relib host tests
    _write(pytester, """
        from test_relib_host_support import HostImports, import_types

        EXPORTS = {"add": (ctypes.c_uint64, [ctypes.c_uint64, ctypes.c_uint64]),
                   "call_imports": (ctypes.c_bool, [])}

        def test_add(relib_load):
            host = HostImports("0.7")
            m = relib_load(MOD, exports=EXPORTS, imports=host.implementations(),
                           import_types=import_types("0.7"))
            assert m.exports.add(2, 40) == 42
            assert m.exports.call_imports() is True
            assert {"empty", "primitive", "primitive_ret", "ref_"} <= set(host.names())

        def test_body_fails(relib_load):
            m = relib_load(MOD, exports=EXPORTS)
            assert m.exports.add(2, 2) == 5
    """, mod=lib["relib_0_7"])
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "assert 4 == 5" in out and "not unloaded cleanly" not in out


def test_upstream_relib_module_and_freed_allocations(pytester, relib_test_module) -> None:
    _write(pytester, """
        def test_main(relib_load):
            relib_load(MOD).call_main()

        def test_no_leftovers_allowed(relib_load):
            relib_load(MOD, max_freed_allocations=0).call_main()
    """, mod=relib_test_module)
    result = pytester.runpytest(*PLUGIN, "--relib-cycles", "3")
    result.assert_outcomes(passed=1, failed=1)
    assert "relib allocations left at unload:" in result.stdout.str()


def test_thread_and_gnu_unique_fail_in_a_subprocess(pytester, lib) -> None:
    _write(pytester, """
        def test_thread(relib_load):
            relib_load(THREAD).function("cycle_work", ctypes.c_int)()

        def test_unique(relib_load):
            relib_load(UNIQUE).function("cycle_work", ctypes.c_int)()
    """, thread=lib["cycle_thread"], unique=lib["cycle_unique"])
    result = pytester.runpytest_subprocess(*PLUGIN, "--relib-cycles", "3")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "unload.threads-running" in out and "thread still running: tid" in out
    assert "STILL MAPPED" in out and "cause gnu-unique" in out
    assert "stopped after cycle 1: the library could not be loaded again" in out


def test_isolated_marker_turns_a_crash_into_a_failed_test(pytester, lib) -> None:
    _write(pytester, """
        @pytest.mark.relib_isolated
        def test_crash(relib_load):
            print("about to crash", flush=True)
            relib_load(RT).function("rt_segfault", ctypes.c_int)()

        @pytest.mark.relib_isolated
        def test_isolated_assert(relib_load):
            assert relib_load(RT).function("rt_add", ctypes.c_int,
                                           (ctypes.c_int, ctypes.c_int))(1, 2) == 4

        @pytest.mark.relib_isolated
        def test_isolated_ok(relib_load):
            assert relib_load(RT).function("rt_add", ctypes.c_int,
                                           (ctypes.c_int, ctypes.c_int))(1, 2) == 3

        def test_after():
            pass
    """, rt=lib["rt_basic"])
    result = pytester.runpytest_subprocess(*PLUGIN, "-v")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert re.search(r"test_crash FAILED", out) and re.search(r"test_after PASSED", out)
    assert "was killed by SIGSEGV (signal 11) during call" in out
    assert "Captured stdout call" in out and "about to crash" in out
    assert "assert 3 == 4" in out


def test_bad_cycle_count_is_a_usage_error(pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*PLUGIN, "--relib-cycles", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--relib-cycles must be at least 1" in result.stderr.str()


def test_entry_point_is_declared(repo_root: Path) -> None:
    import tomllib

    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {
        "relib_pure.pytest_plugin": "relib_pure.pytest_plugin"}




def _readme_block(repo_root: Path, marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (repo_root / "README.md").read_text(), re.S)
    return next(b for b in blocks if marker in b)


def test_readme_examples_run(pytester, lib, repo_root: Path) -> None:
    for name in ("cycle_clean", "relib_0_7"):
        (pytester.path / lib[name].name).write_bytes(lib[name].read_bytes())
    swap = {'"libmylib.so"': repr("libcycle_clean.so"), '"my_work"': repr("cycle_work"),
            '"libmy_module.so"': repr("librelib_0_7.so")}
    plugin_example = _readme_block(repo_root, "relib_load")
    helper_example = _readme_block(repo_root, "assert_unloads_cleanly(")
    for old, new in swap.items():
        plugin_example = plugin_example.replace(old, new)
        helper_example = helper_example.replace(old, new)
    pytester.makepyfile(test_readme_plugin=plugin_example)
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=3)
    pytester.makepyfile(test_readme_helper="def test_helper():\n" + textwrap.indent(
        helper_example.replace("libcycle_clean.so", str(lib["cycle_clean"]))
        .replace("cycles=1000", "cycles=50"), "    "))
    result = pytester.runpytest(*PLUGIN, "-s", "test_readme_helper.py")
    result.assert_outcomes(passed=1)
    assert "fds: " in result.stdout.str()
