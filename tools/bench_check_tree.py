#!/usr/bin/env python3
"""Benchmark ``relib-pure check -r`` over a whole library directory against ``ldd -r``.

The directory (default ``/usr/lib/x86_64-linux-gnu``) is expanded once, as
``check -r`` expands it (every real file with a library name, linker scripts
left out); ``ldd -r`` then runs once per file with as many files at a time
as ``check`` uses cores (``--jobs``), so both get the same machine. Both run
in the same session, alternating, best of ``--runs``; the script prints the
wall times, the ratio relib-pure / ldd, and how often the two agree on
"some undefined symbol" per file.

Usage::

    python tools/bench_check_tree.py [--runs N] [--jobs N] [DIRECTORY]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_ldd(files: list[str], jobs: int, env: dict[str, str]) -> tuple[float, set[str]]:
    """Wall time of ``ldd -r`` over ``files`` (``jobs`` at a time); files it
    reports an undefined symbol for."""
    def one(path: str) -> tuple[str, bool]:
        proc = subprocess.run(["ldd", "-r", path], capture_output=True, text=True, env=env,
                              check=False)
        return path, "undefined symbol" in proc.stdout + proc.stderr

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, files))
    return time.perf_counter() - start, {p for p, undefined in results if undefined}


def run_ours(directory: str, jobs: int, env: dict[str, str]) -> tuple[float, set[str], int]:
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "relib_pure", "check", "-r", directory,
                        "--json", "--jobs", str(jobs)], stdout=out, env=env, check=False)
        elapsed = time.perf_counter() - start
        out.seek(0)
        doc = json.load(out)
    undefined = {r["path"] for r in doc["reports"]
                 if any(f["code"] == "resolve.undefined-symbol" for f in r["findings"])}
    return elapsed, undefined, len(doc["reports"])


def main(argv: list[str] | None = None) -> int:
    from relib_pure.cli.parallel import default_jobs
    from relib_pure.inspection.targets import collect

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", nargs="?", default="/usr/lib/x86_64-linux-gnu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=default_jobs())
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LD_LIBRARY_PATH", None)
    with collect([args.directory], recursive=True) as found:
        files = [t.path for t in found.targets]
        skipped = len(found.skipped)
    print(f"{args.directory}: {len(files)} libraries ({skipped} files skipped), "
          f"{args.jobs} at a time, best of {args.runs}")
    ours_times, ldd_times = [], []
    ours_undef: set[str] = set()
    ldd_undef: set[str] = set()
    checked = 0
    for _ in range(args.runs):
        t, ours_undef, checked = run_ours(args.directory, args.jobs, env)
        ours_times.append(t)
        t, ldd_undef = run_ldd(files, args.jobs, env)
        ldd_times.append(t)
    ours, theirs = min(ours_times), min(ldd_times)
    print(f"relib-pure check -r --json: {ours:8.2f} s  ({checked} reports)")
    print(f"ldd -r per file:            {theirs:8.2f} s")
    print(f"ratio relib-pure / ldd:     {ours / theirs:8.2f}")
    agree = len(files) - len(ours_undef ^ ldd_undef)
    print(f"agree on 'undefined symbol': {agree}/{len(files)} files "
          f"(only ldd: {len(ldd_undef - ours_undef)}, only relib-pure: "
          f"{len(ours_undef - ldd_undef)})")
    for path in sorted(ours_undef ^ ldd_undef)[:10]:
        print(f"  differs: {path} ({'ldd' if path in ldd_undef else 'relib-pure'} says undefined)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
