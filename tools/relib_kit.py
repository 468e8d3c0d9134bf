#!/usr/bin/env python3
"""Build upstream relib's test module and host from ``../shared/relib-kit``, cached by content.

The kit holds relib 0.7.0's source tree and every crate it needs, vendored for
offline cargo. A *scenario* is a cargo feature set of upstream's ``testing/``
workspace (``unloading``, ``exportify,ret_heap_main``, ...), built as
upstream's ``testing/runner`` does. Each build is copied out of cargo's target
directory into a folder keyed by the kit's content, the toolchain, the feature
set and the profile, laid out the way upstream's ``test_host`` expects to be run
(``<folder>/target/<profile>/libtest_module.so`` relative to its working
directory)::

    python tools/relib_kit.py unloading            # release build, prints the module path
    python tools/relib_kit.py --debug unloading
    python tools/relib_kit.py --list               # scenarios upstream's runner tests

The kit is found at ``$RELIB_PURE_RELIB_KIT`` or ``<repo>/../shared/relib-kit`` (the
nearest ``shared/relib-kit`` above the checkout);
the cache at ``$RELIB_PURE_FIXTURE_CACHE/relib-kit`` (or ``<repo>/.fixture-cache``).
The kit is read-only: cargo's target directory lives in the cache too, shared by
every feature set so dependencies compile once.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

KIT_BUILDER_VERSION = "1"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_fixtures import cache_dir  # noqa: E402

#: feature sets upstream's runner builds for Linux (testing/runner/src/main.rs and
#: its per-scenario modules), in its order
RUNNER_SCENARIOS = (
    "parallel_module_loading", "is_already_loaded_error", "backtrace_unloading", "unloading",
    "no_unloading", "exportify", "exportify,ret_primitive_main", "exportify,ret_heap_main",
    "exportify,panic_main", "threads_check", "before_unload_panic", "panic_in_interface_module",
    "multiple_modules", "code_change", "code_change,code_change_before_unload",
    "code_change,code_change_before_unload,code_change_leak",
    "code_change,code_change_before_unload,code_change_leak,code_change_backtrace_unloading",
    "panic_in_interface_host", "dealloc_validation",
)


class KitUnavailable(RuntimeError):
    """The relib kit or cargo is not on this machine."""


class KitBuildFailed(RuntimeError):
    """cargo rejected a kit build."""


@dataclass(frozen=True)
class KitBuild:
    """One built scenario: upstream's module and host, in upstream's layout."""

    features: str
    profile: str
    folder: Path
    #: ``<folder>/target/<profile>/libtest_module.so``
    module: Path
    #: upstream's ``test_host`` for the same features (run it with cwd=folder)
    host: Path
    #: seconds cargo took (0.0 when the cache had it)
    seconds: float


def kit_root() -> Path:
    env = os.environ.get("RELIB_PURE_RELIB_KIT")
    if env:
        return Path(env)
    # the checkout's sibling ``shared/``; a git worktree may sit a level deeper, and a
    # checkout made elsewhere (a CI clone in a temporary folder) finds the workplace's
    for parent in (*REPO.parents, Path("/work")):
        candidate = parent / "shared" / "relib-kit"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "relib-kit"


def source_root() -> Path:
    return kit_root() / "relib-0.7.0"


def available() -> str | None:
    """``None`` when kit builds can run here, else the reason they cannot."""
    root = source_root()
    if not (root / "Cargo.toml").is_file():
        return f"relib kit not found at {root} (set RELIB_PURE_RELIB_KIT)"
    if shutil.which("cargo") is None:
        return "cargo is not installed"
    return None


@lru_cache(maxsize=None)
def kit_key() -> str:
    """A hash of the kit's content and the toolchain, cheap enough to compute per session.

    The relib sources are hashed byte by byte; each vendored crate by its
    ``.cargo-checksum.json``, which cargo itself verifies against the crate.
    """
    h = hashlib.sha256(KIT_BUILDER_VERSION.encode())
    root = source_root()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "target" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    vendor = kit_root() / "vendor"
    for checksum in sorted(vendor.glob("*/.cargo-checksum.json")):
        h.update(checksum.parent.name.encode())
        h.update(checksum.read_bytes())
    for tool in ("cargo", "rustc"):
        out = subprocess.run([tool, "-vV"], capture_output=True, text=True, timeout=120)
        h.update(out.stdout.encode())
    return h.hexdigest()[:16]


def _normalise(features: str) -> str:
    parts = [f.strip() for f in features.split(",") if f.strip()]
    if not parts:
        raise ValueError("a scenario needs at least one feature")
    return ",".join(parts)


def build(features: str, *, profile: str = "release", host: bool = True) -> KitBuild:
    """Build (or reuse) upstream's module (and host) for ``features``.

    Raises :class:`KitUnavailable` when the kit or cargo is missing and
    :class:`KitBuildFailed` with cargo's output when the build fails.
    """
    reason = available()
    if reason:
        raise KitUnavailable(reason)
    if profile not in ("release", "debug"):
        raise ValueError(f"profile must be 'release' or 'debug', not {profile!r}")
    features = _normalise(features)
    base = cache_dir() / "relib-kit"
    name = f"{profile}-{features.replace(',', '+')}"
    folder = base / kit_key() / name
    module = folder / "target" / profile / "libtest_module.so"
    host_bin = folder / "test_host"
    if module.exists() and (host_bin.exists() or not host):
        return KitBuild(features, profile, folder, module, host_bin, 0.0)
    base.mkdir(parents=True, exist_ok=True)
    # one build at a time across processes: the copy below must be of *our* build
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if module.exists() and (host_bin.exists() or not host):
            return KitBuild(features, profile, folder, module, host_bin, 0.0)
        target = base / "target"
        packages = ["-p", "test_module"] + (["-p", "test_host"] if host else [])
        cmd = ["cargo", "build", "--offline", "--locked", *packages, "--features", features]
        if profile == "release":
            cmd.append("--release")
        started = time.monotonic()
        r = subprocess.run(cmd, cwd=source_root(), capture_output=True, text=True,
                           env={**os.environ, "CARGO_TARGET_DIR": str(target)})
        seconds = time.monotonic() - started
        if r.returncode != 0:
            raise KitBuildFailed(f"{' '.join(cmd)} (in {source_root()}) failed:\n"
                                 f"{r.stderr[-4000:]}")
        built = target / profile
        staging = Path(tempfile.mkdtemp(prefix=".stage-", dir=base))
        try:
            (staging / "target" / profile).mkdir(parents=True)
            shutil.copy2(built / "libtest_module.so", staging / "target" / profile)
            if host:
                shutil.copy2(built / "test_host", staging / "test_host")
            if folder.exists():
                shutil.rmtree(folder)
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return KitBuild(features, profile, folder, module, host_bin, seconds)


def module_copies(kit: KitBuild, count: int) -> list[Path]:
    """``test_module_<i>`` copies beside the module, as upstream's multiple_modules runner makes."""
    paths = []
    for i in range(count):
        path = kit.module.with_name(f"libtest_module_{i}.so")
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            shutil.copy2(kit.module, tmp)
            os.replace(tmp, path)
        paths.append(path)
    return paths


def run_upstream_host(kit: KitBuild, timeout: float = 300.0,
                      stdin: str = "end\n") -> subprocess.CompletedProcess[str]:
    """Run upstream's own ``test_host`` on this build, as upstream's runner does.

    ``stdin`` answers code_change's prompt ("end" stops it after one module).
    """
    if "multiple_modules" in kit.features.split(","):
        module_copies(kit, 10)
    return subprocess.run([str(kit.host)], cwd=kit.folder, capture_output=True, text=True,
                          timeout=timeout, input=stdin)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", nargs="*", help="feature sets, e.g. unloading exportify,panic_main")
    ap.add_argument("--debug", action="store_true", help="debug profile (default release)")
    ap.add_argument("--list", action="store_true", help="the scenarios upstream's runner builds")
    ap.add_argument("--run-host", action="store_true", help="also run upstream's test_host")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(RUNNER_SCENARIOS))
        return 0
    try:
        for features in args.features or RUNNER_SCENARIOS:
            kit = build(features, profile="debug" if args.debug else "release")
            print(f"{features}\t{kit.module}\t{kit.seconds:.1f}s")
            if args.run_host:
                r = run_upstream_host(kit)
                print(f"  upstream test_host exit {r.returncode}")
    except (KitUnavailable, KitBuildFailed) as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
