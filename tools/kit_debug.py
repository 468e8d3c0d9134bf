#!/usr/bin/env python3
"""Build upstream relib 0.7's test module in debug (with DWARF), cached by source hash.

``debug_test_module()`` runs, once per change of the kit's sources or of rustc,
``cargo build --offline --locked -p test_module --features unloading`` (dev
profile) in ``../shared/relib-kit/relib-0.7.0`` with the target directory in
the fixture cache, and copies ``libtest_module.so`` to a key-named folder
(the next cargo build of another feature overwrites the target's copy).
Cargo locks its target directory, so concurrent builds wait for each other.

Usage: ``python tools/kit_debug.py`` prints the module's path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _kit_root() -> Path:
    """``$RELIB_KIT``, else ``shared/relib-kit`` beside the repository (as on CI) or
    beside one of its parents (a git worktree under the checkout's folder)."""
    if os.environ.get("RELIB_KIT"):
        return Path(os.environ["RELIB_KIT"])
    for parent in REPO.parents:
        if (parent / "shared" / "relib-kit").is_dir():
            return parent / "shared" / "relib-kit"
    return REPO.parent / "shared" / "relib-kit"


#: relib 0.7.0's workspace
KIT = _kit_root() / "relib-0.7.0"
FEATURE = "unloading"


class KitUnavailable(RuntimeError):
    """The kit or cargo is missing, or the build failed."""


def cache_dir() -> Path:
    env = os.environ.get("RELIB_PURE_FIXTURE_CACHE")
    return Path(env) if env else REPO / ".fixture-cache"


def _key() -> str:
    h = hashlib.sha256(FEATURE.encode())
    try:
        h.update(subprocess.run(["rustc", "-vV"], capture_output=True, check=True,
                                timeout=60).stdout)
    except (OSError, subprocess.SubprocessError) as e:
        raise KitUnavailable(f"rustc not runnable: {e}") from e
    for path in sorted(KIT.rglob("*")):
        if "target" in path.relative_to(KIT).parts or not path.is_file():
            continue
        if path.suffix in (".rs", ".toml", ".lock"):
            h.update(str(path.relative_to(KIT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def debug_test_module() -> Path:
    """Path of the cached debug ``libtest_module.so`` (built when missing)."""
    if not (KIT / "Cargo.toml").is_file():
        raise KitUnavailable(f"no relib kit at {KIT}")
    out = cache_dir() / f"relib-kit-debug-{FEATURE}-{_key()}" / "libtest_module.so"
    if out.is_file():
        return out
    target = cache_dir() / "relib-kit" / "target"
    cmd = ["cargo", "build", "--offline", "--locked", "-p", "test_module", "--features", FEATURE]
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    try:
        done = subprocess.run(cmd, cwd=KIT, env=env, capture_output=True, text=True,
                              timeout=1500)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KitUnavailable(f"cargo build failed to run: {e}") from e
    if done.returncode != 0:
        raise KitUnavailable(f"cargo build failed:\n{done.stderr[-3000:]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    shutil.copyfile(target / "debug" / "libtest_module.so", tmp)
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    try:
        print(debug_test_module())
    except KitUnavailable as e:
        print(e, file=sys.stderr)
        sys.exit(1)
