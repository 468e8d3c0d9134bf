"""Shared pytest fixtures: native test libraries built from ``fixtures/``.

``native("name")`` builds (or reuses from the hash-keyed cache) the fixture
``name`` declared in some ``fixtures/**/fixture.json`` and returns its path.
On CI (``CI=true``) a missing toolchain fails the test; locally it skips with
the reason, so a machine without MinGW still runs everything else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import build_fixtures  # noqa: E402


@pytest.fixture(scope="session")
def native() -> Callable[[str], Path]:
    def get(name: str) -> Path:
        try:
            return build_fixtures.build(name)
        except build_fixtures.FixtureUnavailable as e:
            if os.environ.get("CI"):
                pytest.fail(f"fixture toolchain missing on CI: {e}")
            pytest.skip(f"fixture toolchain missing: {e}")
    return get


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


import relib_kit  # noqa: E402


@pytest.fixture(scope="session")
def relib_kit_build() -> Callable[..., relib_kit.KitBuild]:
    """``relib_kit_build("unloading", profile="release")``: upstream relib's test module, built.

    Built from ``../shared/relib-kit`` by ``tools/relib_kit.py`` into the fixture
    cache (keyed by the kit's content, toolchain, features and profile). On CI a
    missing kit fails the test; elsewhere it skips with the reason.
    """
    def get(features: str, profile: str = "release", host: bool = True) -> relib_kit.KitBuild:
        try:
            return relib_kit.build(features, profile=profile, host=host)
        except relib_kit.KitUnavailable as e:
            if os.environ.get("CI"):
                pytest.fail(f"relib kit missing on CI: {e}")
            pytest.skip(f"relib kit unavailable: {e}")
    return get


@pytest.fixture(scope="session")
def relib_test_module(relib_kit_build, tmp_path_factory) -> Path:
    """Upstream relib 0.7's ``testing/module`` built with ``unloading`` (a real relib module),
    copied so that no other test's loader of the kit's file makes it "already loaded"."""
    source = relib_kit_build("unloading").module
    copy = tmp_path_factory.mktemp("relib-kit") / source.name
    copy.write_bytes(source.read_bytes())
    return copy
