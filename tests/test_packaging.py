"""Packaging metadata and the sdist: it ships the tests together with what they need."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


def test_license_file_matches_metadata(repo_root: Path) -> None:
    project = _pyproject(repo_root)["project"]
    license_ = project["license"]
    spdx = license_ if isinstance(license_, str) else license_["text"]
    assert spdx == "MIT"
    assert (repo_root / "LICENSE").read_text().startswith("MIT License")
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]


def test_metadata_has_bounds_urls_and_python_classifiers(repo_root: Path) -> None:
    project = _pyproject(repo_root)["project"]
    assert all(">=" in d for d in project["dependencies"]), project["dependencies"]
    assert project["urls"]
    versions = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                if c.startswith("Programming Language :: Python :: 3.")}
    assert versions == {"3.10", "3.11", "3.12", "3.13"}


def test_sdist_ships_what_the_tests_need(repo_root: Path, tmp_path: Path) -> None:
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    tracked = subprocess.run(["git", "ls-files", "tests", "fixtures", "tools", "docs"],
                             cwd=repo_root, capture_output=True, text=True, check=True)
    # the build writes its egg-info under tmp_path's copy, not the checkout
    src = tmp_path / "src"
    files = [*tracked.stdout.split(), "pyproject.toml", "README.md", "LICENSE",
             "MANIFEST.in", *subprocess.run(["git", "ls-files", "relib_pure"], cwd=repo_root,
                                            capture_output=True, text=True,
                                            check=True).stdout.split()]
    for name in files:
        if (repo_root / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / name, src / name)
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from setuptools import build_meta as b; "
                        "print(b.build_sdist(sys.argv[1]))", str(out)],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out / r.stdout.split()[-1]) as tar:
        shipped = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {n for n in tracked.stdout.split() if "__pycache__" not in n}
    assert needed - shipped == set()
    assert "LICENSE" in shipped
    assert not [n for n in shipped if n.startswith(("tests/", "fixtures/"))
                and n.endswith((".so", ".dll"))]
