"""The package is typed (py.typed): keep it clean under ``mypy --strict``."""

from __future__ import annotations

import os
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


def _mypy_available() -> bool:
    return subprocess.run([sys.executable, "-m", "mypy", "--version"],
                          capture_output=True).returncode == 0


def test_public_names_are_typed_from_the_package_root(repo_root: Path, tmp_path: Path) -> None:
    """A user's ``mypy --strict`` sees real types through the lazy package root."""
    if not _mypy_available():
        pytest.skip("mypy is not installed (it is part of the test extra)")
    import relib_pure

    script = tmp_path / "user.py"
    lines = ["import relib_pure", 'info = relib_pure.inspect("x.so")', "reveal_type(info)"]
    lines += [f"reveal_type(relib_pure.{name})" for name in relib_pure._LAZY]
    script.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "MYPYPATH": str(repo_root)}
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache"), str(script)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    revealed = [line for line in out.splitlines() if "Revealed type" in line]
    assert len(revealed) == 1 + len(relib_pure._LAZY), out
    assert 'Revealed type is "relib_pure.model.LibraryInfo"' in revealed[0], out
    assert not [line for line in revealed if '"Any"' in line], out
    # reveal_type notes are not errors; anything else is
    assert "error:" not in out, out


def test_type_checking_imports_match_the_lazy_table(repo_root: Path) -> None:
    import ast
    import importlib

    import relib_pure

    tree = ast.parse((repo_root / "relib_pure" / "__init__.py").read_text())
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    imported.update({a.name: stmt.module for a in stmt.names})
    assert sorted(imported) == sorted(relib_pure._LAZY)
    for name, module in imported.items():
        assert getattr(importlib.import_module(module), name) is getattr(relib_pure, name)
