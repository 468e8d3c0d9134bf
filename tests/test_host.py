"""``runtime.Host``: the process-wide state in one object, a fresh one per test if wanted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import relib_pure
from relib_pure.errors import AlreadyLoaded
from relib_pure.runtime import Host, default_host, load

REPO = Path(__file__).resolve().parent.parent


def test_a_fresh_host_keeps_its_own_registry(native, tmp_path: Path) -> None:
    path = tmp_path / "libhost_a.so"
    shutil.copy2(native("c_plain"), path)
    host = Host()
    m = load(path, host=host)
    try:
        assert host.live_modules() == (m,) and m.host is host
        assert m not in default_host().live_modules()
        with pytest.raises(AlreadyLoaded):
            load(path, host=host)
    finally:
        report = m.unload()
    assert report.clean and host.live_modules() == ()


def test_driver_factory_is_injected(native, tmp_path: Path) -> None:
    """The default host gets relib's driver from the package root; a host without a factory
    loads the same relib module as a plain library."""
    path = tmp_path / "librelib_host.so"
    shutil.copy2(native("relib_0_7"), path)
    assert default_host().driver_factory is relib_pure._protocol_driver
    with load(path) as m:
        assert m.driver.name == "relib-0.7"
    plain = Host(driver_factory=None)
    m = load(path, host=plain, owner="caller")
    assert m.driver.name == "plain"
    m.unload()


def test_runtime_does_not_import_the_relib_protocol_host() -> None:
    code = ("import sys, relib_pure.runtime, relib_pure.runtime.host; "
            "print('relib_pure.relib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO)}, check=True).stdout.strip()
    assert out == "False"


def test_clear_caches_makes_the_next_load_a_first_load(native, tmp_path: Path) -> None:
    path = tmp_path / "libhost_clear.so"
    shutil.copy2(native("c_plain"), path)
    host = Host()
    load(path, host=host).unload()
    assert host.last_clean is not None
    host.clear_caches()
    assert host.last_clean is None
    m = load(path, host=host)
    assert m.unload().clean
