"""``relib-pure demo``: the README's first command, run as a user would (a child process)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("lang", [
    pytest.param("c", marks=pytest.mark.skipif(shutil.which("cc") is None
                                               and not os.environ.get("CI"),
                                               reason="cc is not installed")),
    pytest.param("rust", marks=pytest.mark.skipif(shutil.which("rustc") is None
                                                  and not os.environ.get("CI"),
                                                  reason="rustc is not installed")),
])
def test_demo_rebuilds_and_runs_the_new_code(lang: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RELIB_PURE_CACHE": str(tmp_path / "cache"),
           "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "relib_pure", "demo", "--lang", lang],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"1. build the {lang} example" in out
    assert "relib 0.7.0 (protocol 0.7), unloading on" in out
    assert "check: ok" in out
    assert out.count("module says: 'hello from the example module'") == 2  # main of v1 and v2
    assert "add(2, 40) = 42\n" in out and "add(2, 40) = 80 (new code)" in out
    assert re.search(r"v2 loaded in [\d.]+ ms; previous version clean", out)
    assert re.search(r"version 1: clean \(driver relib-0\.7", out)
    assert re.search(r"version 2: clean \(driver relib-0\.7", out)
    assert out.rstrip().endswith("demo done: the new code ran and every version left the process")
    if lang == "rust":
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout
        assert f"rustc field: {rustc.split(' ', 1)[1].strip()}" in out
    # everything lived in a temporary directory, removed at the end
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("relib-pure-")]


def test_demo_without_a_compiler_exits_2_and_says_what_to_install(tmp_path: Path) -> None:
    here = str(Path(sys.executable).parent)
    if shutil.which("cc", path=here) or shutil.which("rustc", path=here):
        pytest.skip("a compiler sits next to the interpreter")
    env = {"PATH": here, "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "RELIB_PURE_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "relib_pure", "demo"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2
    assert "needs rustc or a C compiler" in r.stderr and "[example.no-compiler]" in r.stderr
