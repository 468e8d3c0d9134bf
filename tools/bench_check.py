#!/usr/bin/env python3
"""Benchmark the resolvability check against ``ldd -r``.

Both answer "are all NEEDED libraries found and every undefined symbol
defined?"; ``ldd -r`` runs the real loader in a fresh process (maps every
dependency and relocates), ``relib-pure check --json`` reads the files.
Both run as subprocesses, alternating, in the same session; the script
prints best and median wall time and the ratio relib-pure / ldd.

It also times the in-process call a host makes before each load
(``check(info, Policy())`` with the dependencies already cached), which is
what a reload loop pays per cycle when resolvability is on.

Usage::

    python tools/bench_check.py [--runs N] [LIBRARY...]

Default libraries: the relib_0_7 fixture, libstdc++ and libLLVM (when installed).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))


def default_libraries() -> list[str]:
    import build_fixtures

    from relib_pure.loader import ldcache

    libs = [str(build_fixtures.build("relib_0_7"))]
    cache = ldcache.load_cache()
    for soname in ("libstdc++.so.6", "libLLVM-14.so.1"):
        path = cache.lookup(soname, ldcache.abi_flags("x86_64", 64)) if cache else None
        if path:
            libs.append(path)
    return libs


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("libraries", nargs="*")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    compileall.compile_dir(str(REPO / "relib_pure"), quiet=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LD_LIBRARY_PATH", None)
    libs = args.libraries or default_libraries()
    print(f"{'library':40} {'relib-pure check':>18} {'ldd -r':>12} {'ratio':>7} {'in-process':>11}")
    for lib in libs:
        ours_cmd = [sys.executable, "-m", "relib_pure", "check", "--json", lib]
        ldd_cmd = ["ldd", "-r", lib]
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(ours_cmd, env))
            theirs.append(timed(ldd_cmd, env))
        in_process = _in_process(lib, args.runs)
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"{os.path.basename(lib)[:40]:40} {statistics.median(ours) * 1e3:15.1f} ms "
              f"{statistics.median(theirs) * 1e3:9.1f} ms {ratio:7.2f} {in_process * 1e3:8.2f} ms")
    print("(medians of", args.runs, "runs; in-process: check() with dependencies cached)")
    return 0


def _in_process(lib: str, runs: int) -> float:
    from relib_pure.compat import Policy, check
    from relib_pure.inspection import inspect

    info = inspect(lib)
    check(info, Policy())  # warm the dependency cache
    samples = []
    for _ in range(max(runs, 20)):
        start = time.perf_counter()
        check(info, Policy())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


if __name__ == "__main__":
    sys.exit(main())
