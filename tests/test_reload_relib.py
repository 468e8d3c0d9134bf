"""Reloader on relib modules (the std-only Rust fixture module, protocol 0.7).

The versions are the fixture's code_change scenarios (main returns 1 / 2),
panic_main and a module built without unloading, each swapped in by renaming
its build over the watched path.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relib_pure import Reloader, ReloadEvent
from test_relib_host_support import EXPORTS, HostImports, import_types

WAIT = 10.0


def replace(path: Path, build: Path) -> None:
    tmp = path.with_name(".next.so")
    shutil.copyfile(build, tmp)
    os.replace(tmp, path)


def next_event(r: Reloader) -> ReloadEvent:
    event = r.next_event(WAIT)
    assert event is not None, "no reload event"
    return event


def test_relib_versions_swap_hand_over_state_and_roll_back(
        native: Callable[[str], Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "libmodule.so"
    replace(path, native("relib_0_7_code_change_a"))
    host = HostImports("0.7")
    handed: list[object] = []

    def on_unload(module: object) -> int:
        return int(module.call_main(ctypes.c_uint64)) * 10  # type: ignore[attr-defined]

    with Reloader(path, exports=EXPORTS, imports=host.implementations(),
                  import_types=import_types("0.7"), main_restype=ctypes.c_uint64,
                  debounce=0.02, on_unload=on_unload,
                  on_load=lambda m, state: handed.append(state)) as r:
        first = next_event(r)
        assert (first.outcome, first.main_result) == ("loaded", 1)
        assert r.exports.add(2, 40) == 42
        module_a = r.module
        replace(path, native("relib_0_7_code_change_b"))
        event = next_event(r)
        assert (event.outcome, event.version, event.main_result) == ("loaded", 2, 2)
        assert event.unload is not None and event.unload.unloaded
        assert event.unload.driver == "relib-0.7" and "freed_allocations" in event.unload.extra
        assert not module_a.loaded and handed == [None, 10]
        assert r.exports.add(1, 2) == 3

        replace(path, native("relib_0_7_panic_main"))
        event = next_event(r)
        assert (event.outcome, event.serving) == ("rolled-back", 2)
        assert event.reason is not None and event.reason.code == "call.panicked"
        assert r.module.call_main(ctypes.c_uint64) == 2  # the restored code, not panic_main's
        assert r.exports.add(5, 5) == 10

        replace(path, native("relib_0_7_nounload"))
        event = next_event(r)
        assert (event.outcome, event.serving, event.unload) == ("rejected", 2, None)
        assert event.reason is not None and event.reason.code == "reload.not-unloadable"
    assert r.version is None
    assert "panicked" in capfd.readouterr().err


def test_upstream_relib_code_change_builds_swap_under_the_reloader(
        relib_kit_build: Callable[..., Any], tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    """Upstream relib 0.7's test module (the kit, release): its code_change feature sets are
    successive builds of one module. Each replaces the watched file; the Reloader swaps
    it in, the new code runs (its own output), the old one's before_unload runs at the
    swap and every replaced version unloads clean."""
    import upstream_relib as up

    path = tmp_path / "libtest_module.so"
    builds = [relib_kit_build(f).module for f in (
        "code_change", "code_change,code_change_before_unload",
        "code_change,code_change_before_unload,code_change_leak")]
    replace(path, builds[0])
    host = up.HostImports()
    with Reloader(path, interface=up.interface(), imports=host.implementations(),
                  debounce=0.02) as r:
        assert next_event(r).outcome == "loaded"
        assert _module_lines(capfd) == ["[module] main"]
        expected = [["[module] main"],  # v1 had no before_unload
                    ["[module] before_unload", "[module] main", "[module] leak"]]
        for build, lines in zip(builds[1:], expected):
            replace(path, build)
            event = next_event(r)
            assert event.outcome == "loaded", event.summary()
            assert event.unload is not None and event.unload.clean, event.unload.summary()
            assert _module_lines(capfd) == lines
    assert r.version is None
    assert _module_lines(capfd) == ["[module] before_unload"]  # the last one, at close


def _module_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return [ln.strip() for ln in capfd.readouterr().out.splitlines() if ln.startswith("[module]")]


def _trial_reloader(path: Path, host: HostImports, **kwargs: Any) -> Reloader:
    return Reloader(path, exports=EXPORTS, imports=host.implementations(),
                    import_types=import_types("0.7"), main_restype=ctypes.c_uint64,
                    watch=False, trial="child", **kwargs)


@pytest.mark.parametrize("answers", ["host", "zero"])
def test_trial_child_calls_the_hosts_imports(native: Callable[[str], Path], tmp_path: Path,
                                             answers: str) -> None:
    """The new version's main returns what the host's ``primitive_ret(41)`` answers,
    plus one. Its trial child calls that import too: answered by the host's own
    implementation (so the trial sees what the swap will see), or with zero."""
    path = tmp_path / "libmodule.so"
    replace(path, native("relib_0_7_code_change_a"))
    host = HostImports("0.7")
    with _trial_reloader(path, host, trial_imports=answers) as r:
        replace(path, native("relib_0_7_import_main"))
        event = r.reload()
        assert event is not None and event.outcome == "loaded", event.summary()
        assert event.main_result == 42  # the host's answer, in the host
        trial_calls = 1 if answers == "host" else 0
        assert host.calls.count(("primitive_ret", 41)) == trial_calls + 1
        assert host.names().count("primitive_ret") == trial_calls + 1


def test_trial_child_rejects_a_version_whose_host_import_raises(
        native: Callable[[str], Path], tmp_path: Path) -> None:
    """main calls the ``panic`` import, whose host implementation raises: relib aborts
    the process that runs it. The trial child runs it and dies; this process, which
    would have died at the swap, keeps serving the last good version."""
    path = tmp_path / "libmodule.so"
    replace(path, native("relib_0_7_code_change_a"))
    host = HostImports("0.7")
    with _trial_reloader(path, host) as r:
        replace(path, native("relib_0_7_import_panic"))
        event = r.reload()
        assert event is not None and (event.outcome, event.serving) == ("rejected", 1)
        assert event.reason is not None and event.reason.code == "reload.trial-failed"
        assert "SIGABRT" in event.reason.message and "main" in event.reason.message
        assert host.names() == ["panic"]  # raised here, on the child's behalf
        assert r.module.call_main(ctypes.c_uint64) == 1


def test_trial_names_imports_that_cannot_cross(native: Callable[[str], Path]) -> None:
    """Imports taking or returning structures other than strings (``point``) or
    pointers cannot be answered across processes: the child answers them with zero
    and the result names them."""
    from relib_pure.reload.trial import run_trial
    from relib_pure.reload.version import LoadSpec
    from relib_pure.reload.trial import describe_spec, trial_implementations

    host = HostImports("0.7")
    spec = LoadSpec(relib=True, exports=EXPORTS, imports=host.implementations(),
                    import_types=import_types("0.7"), main_restype=ctypes.c_uint64)
    result = run_trial(str(native("relib_0_7_import_main")), describe_spec(spec),
                       implementations=trial_implementations(spec))
    assert result.ok, result.reason()
    assert result.forwarded == 1 and host.calls == [("primitive_ret", 41)]
    assert set(result.zeroed) == {"point"}
