#!/usr/bin/env python3
"""Benchmark ``relib-pure inspect --json`` against ``readelf --dyn-syms -d -W``.

Both run as subprocesses in the same session, alternating, on the largest Rust
library of the toolchain (``$(rustc --print sysroot)/lib/librustc_driver-*.so``,
~150 MB, ~20k dynamic symbols) and on a small fixture (``c_plain``). Prints
best and median wall time of each and the ratio relib-pure / readelf
(target on the big library: <= 1.0), plus each one's CPU time (all threads):
relib-pure hashes the file on a second thread, so on a busy machine (see the
printed load average) its wall time suffers more than readelf's.

relib-pure's run is the full report: every field of ``LibraryInfo`` including
the sha256 of the whole file, serialised as JSON. Both tools write to
``/dev/null``; relib-pure's output is checked to be valid JSON once, untimed.

Usage::

    python tools/bench_inspect.py [--runs N] [--library PATH]

Bytecode is compiled first (``compileall``, as ``pip install`` does), since
an environment with ``PYTHONDONTWRITEBYTECODE`` would otherwise recompile
relib_pure's sources in every run.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))


def rustc_driver() -> Path | None:
    """The toolchain's librustc_driver, or None."""
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = sorted(glob.glob(os.path.join(sysroot, "lib", "librustc_driver-*.so")))
    return Path(found[0]) if found else None


def relib_pure_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "relib_pure", "inspect", "--json", str(path)]


def readelf_command(path: Path) -> list[str]:
    return ["readelf", "--dyn-syms", "-d", "-W", str(path)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: niceness increment for the measured commands (negative = higher priority; set by main)
NICE = 0


def _raise_priority() -> None:
    if NICE:
        os.nice(NICE)


def time_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all its threads) of one run."""
    cpu = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            timeout=120, preexec_fn=_raise_priority)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {result.stderr.decode(errors='replace')}")
    return elapsed, _children_cpu() - cpu


def compare(label: str, path: Path, runs: int, env: dict[str, str]) -> float:
    """Time both tools on ``path``; print and return the ratio of medians."""
    ours_cmd, theirs_cmd = relib_pure_command(path), readelf_command(path)
    check = subprocess.run(ours_cmd, capture_output=True, env=env, timeout=120)
    document = json.loads(check.stdout)
    symbols = len(document["libraries"][0]["exports"]) + len(document["libraries"][0]["imports"])
    # warm-up: page cache and interpreter files
    time_once(theirs_cmd, env)
    time_once(ours_cmd, env)
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for _ in range(runs):
        theirs.append(time_once(theirs_cmd, env))
        ours.append(time_once(ours_cmd, env))
    walls = [w for w, _ in ours], [w for w, _ in theirs]
    cpus = [c for _, c in ours], [c for _, c in theirs]
    ratio = statistics.median(walls[0]) / statistics.median(walls[1])
    size_mb = path.stat().st_size / 1e6
    print(f"{label}: {path} ({size_mb:.1f} MB, {symbols} dynamic symbols), {runs} runs each, "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, wall, cpu in (("relib-pure inspect --json", walls[0], cpus[0]),
                            ("readelf --dyn-syms -d -W ", walls[1], cpus[1])):
        print(f"  {name}: wall best {min(wall) * 1000:7.1f} ms  median "
              f"{statistics.median(wall) * 1000:7.1f} ms   cpu median "
              f"{statistics.median(cpu) * 1000:7.1f} ms")
    print(f"  ratio relib-pure/readelf  : wall median {ratio:.2f}  best "
          f"{min(walls[0]) / min(walls[1]):.2f}   cpu median "
          f"{statistics.median(cpus[0]) / statistics.median(cpus[1]):.2f}")
    return ratio


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per tool (default 7)")
    ap.add_argument("--library", type=Path, help="big library (default: librustc_driver)")
    ap.add_argument("--nice", type=int, default=-10,
                    help="niceness increment for both measured commands, so other load on a "
                         "shared machine disturbs them less (default -10; needs root, else 0)")
    args = ap.parse_args(argv)
    global NICE
    NICE = args.nice if args.nice >= 0 or os.geteuid() == 0 else 0
    compileall.compile_dir(str(REPO / "relib_pure"), quiet=1)
    env = _env()
    import build_fixtures

    small = build_fixtures.build("c_plain")
    big = args.library or rustc_driver()
    print(f"python {sys.version.split()[0]} ({sys.executable}), measured commands at nice "
          f"{os.nice(0) + NICE}")
    # The interpreter's own start (site, .pth files of this environment) is part
    # of every relib-pure run; shown so the ratio can be read against it.
    startup = [time_once([sys.executable, "-c", "pass"], env)[0] for _ in range(args.runs)]
    print(f"interpreter startup alone (python -c pass): median "
          f"{statistics.median(startup) * 1000:.1f} ms")
    compare("small", small, args.runs, env)
    if big is None:
        print("big: no librustc_driver found (pass --library)")
        return 0
    ratio = compare("big", big, args.runs, env)
    print(f"target ratio <= 1.0 on the big library: {'met' if ratio <= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
