"""The package is typed (py.typed): keep it clean under ``mypy --strict``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_mypy_strict_is_clean(repo_root: Path) -> None:
    if shutil.which("mypy") is None and subprocess.run(
            [sys.executable, "-m", "mypy", "--version"], capture_output=True).returncode != 0:
        pytest.skip("mypy is not installed (it is part of the test extra)")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "relib_pure"],
                       cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_py_typed_marker_ships(repo_root: Path) -> None:
    assert (repo_root / "relib_pure" / "py.typed").exists()
