#!/usr/bin/env python3
"""Benchmark: relib's allocation tracker hosted by relib_pure against a C host.

A relib 0.7 module (fixture ``relib_bench_0_7``: the fixture module with
``--cfg scenario_bench``, built without ``dealloc_validation``) makes
1,000,000 small allocations, keeps every 10th (100,000 leaked) and frees the
rest, so the host receives ~95 full batches (1.9 M ops); unloading then frees
the 100,000 leaked blocks through ``exit``. The same module is driven by a tiny
C host (built here with gcc) whose tracker callbacks are C code: an
open-addressing ``ptr -> layout`` map, the same protocol steps. Each run is a
fresh process; the medians of both are measured in this run and compared.

Prints allocations/s tracked (module work including the host's callbacks and
folding), unload time for the leaked set, the share of time spent in Python
(callbacks + background folding), and the ratio Python/C of the total
(target: within 2x).

Usage: python tools/bench_relib.py [--runs 5] [--n 1000000] [--keep-every 10] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))

#: the C baseline host (same protocol steps, tracker callbacks in C)
C_HOST_SOURCE = REPO / "tools" / "bench_relib_host.c"


def build_c_host() -> Path:
    """Compile the C host once per source version into the fixture cache."""
    import build_fixtures

    source = C_HOST_SOURCE.read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = build_fixtures.cache_dir() / f"bench_relib_host-{digest}"
    exe = folder / "bench_relib_host"
    if exe.exists():
        return exe
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "bench_relib_host.c"
    src.write_text(source)
    tmp = folder / f".build-{os.getpid()}"
    subprocess.run(["gcc", "-O2", "-o", str(tmp), str(src), "-ldl", "-lpthread"], check=True)
    os.replace(tmp, exe)
    return exe


#: workload name -> the module export that runs it (both ``fn(u64, u64) -> u64``)
PATTERNS = {
    # 1 M blocks allocated, then 90 % freed: every op reaches the host (worst case)
    "bulk": "bench_allocs",
    # rounds of 10,000 blocks freed right away: malloc reuses addresses, so the
    # module's cache collapses most ops before they reach the host
    "churn": "alloc_churn",
}


def python_child(path: str, n: int, keep_every: int, export: str) -> dict[str, float]:
    """One measured run under relib_pure (in this process)."""
    import ctypes

    from relib_pure.relib import load_module

    m = load_module(path, exports={export: (ctypes.c_uint64, [ctypes.c_uint64, ctypes.c_uint64])},
                    owner="caller")
    store = m.driver.store
    t0 = time.perf_counter()
    kept = m.exports[export](n, keep_every)
    t1 = time.perf_counter()
    report = m.unload()
    t2 = time.perf_counter()
    assert report.unloaded, report
    return {"work_s": t1 - t0, "unload_s": t2 - t1, "kept": kept,
            "freed_allocations": report.extra["freed_allocations"],
            "freed_bytes": report.extra["freed_bytes"], "ops": store.ops,
            "batches": store.batches, "callback_s": store.callback_seconds,
            "fold_s": store.fold_seconds}


def run_python(path: Path, n: int, keep_every: int, export: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(path), str(n), str(keep_every),
                          export], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_live(export: str, n: int, keep_every: int) -> int:
    """Most blocks live at once in a workload: the C host sizes its table for it."""
    if export == "alloc_churn":  # rounds of 10,000 plus what was leaked so far
        return 10_000 + (n // keep_every if keep_every else 0)
    return n  # bench_allocs: all n blocks are live before the frees start


def run_c(exe: Path, path: Path, n: int, keep_every: int, export: str) -> dict[str, float]:
    out = subprocess.run([str(exe), str(path), str(n), str(keep_every), f"__relib__Exports_{export}",
                          str(peak_live(export, n, keep_every))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--keep-every", type=int, default=10)
    ap.add_argument("--pattern", choices=sorted(PATTERNS), default="bulk",
                    help="allocation pattern (default: bulk, the worst case for the host)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        path, n, keep, export = args.child
        print(json.dumps(python_child(path, int(n), int(keep), export)))
        return 0
    export = PATTERNS[args.pattern]
    import build_fixtures

    module = build_fixtures.build("relib_bench_0_7")
    exe = build_c_host()
    py_runs, c_runs = [], []
    for _ in range(args.runs):  # interleaved, so machine noise hits both alike
        c_runs.append(run_c(exe, module, args.n, args.keep_every, export))
        py_runs.append(run_python(module, args.n, args.keep_every, export))
    assert len({r["kept"] for r in (*py_runs, *c_runs)}) == 1, "hosts disagree on the work done"
    assert all(r["kept"] > 0 for r in py_runs)

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)
    py_work, py_unload = med(py_runs, "work_s"), med(py_runs, "unload_s")
    c_work, c_unload = med(c_runs, "work_s"), med(c_runs, "unload_s")
    py_total = statistics.median(r["work_s"] + r["unload_s"] for r in py_runs)
    c_total = statistics.median(r["work_s"] + r["unload_s"] for r in c_runs)
    python_share = statistics.median((r["callback_s"] + r["fold_s"]) / (r["work_s"] + r["unload_s"])
                                     for r in py_runs)
    callback_share = statistics.median(r["callback_s"] / (r["work_s"] + r["unload_s"])
                                       for r in py_runs)
    figures = {
        "version": 1,
        "pattern": args.pattern, "n": args.n, "keep_every": args.keep_every, "runs": args.runs,
        "ops_per_run": py_runs[0]["ops"], "batches_per_run": py_runs[0]["batches"],
        "leaked": py_runs[0]["kept"],
        "python": {"allocs_per_s": args.n / py_work, "work_s": py_work, "unload_s": py_unload,
                   "total_s": py_total, "python_share": python_share,
                   "callback_share": callback_share,
                   "freed_allocations": py_runs[0]["freed_allocations"]},
        "c": {"allocs_per_s": args.n / c_work, "work_s": c_work, "unload_s": c_unload,
              "total_s": c_total, "freed_allocations": c_runs[0]["freed_allocations"]},
        "ratio_total": py_total / c_total,
        "ratio_work": py_work / c_work,
        "ratio_unload": py_unload / c_unload,
        "target_ratio": 2.0,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    p, c = figures["python"], figures["c"]
    print(f"relib tracker benchmark ({args.pattern}): {args.n:,} allocations, "
          f"every {args.keep_every}th kept "
          f"({figures['leaked']:,} leaked), {figures['ops_per_run']:,} ops in "
          f"{figures['batches_per_run']} batches; median of {args.runs} runs each")
    print(f"  relib_pure : {p['allocs_per_s']:>12,.0f} allocs/s tracked, work {p['work_s']:.3f} s, "
          f"unload (free {figures['leaked']:,}) {p['unload_s']:.3f} s, total {p['total_s']:.3f} s")
    print(f"               time in Python: {p['python_share']:.0%} (callbacks alone "
          f"{p['callback_share']:.1%}, the rest background folding)")
    print(f"  C host     : {c['allocs_per_s']:>12,.0f} allocs/s tracked, work {c['work_s']:.3f} s, "
          f"unload {c['unload_s']:.3f} s, total {c['total_s']:.3f} s")
    verdict = "within" if figures["ratio_total"] <= 2.0 else "OUTSIDE"
    print(f"  ratio relib_pure / C: total {figures['ratio_total']:.2f}x ({verdict} the 2x target), "
          f"work {figures['ratio_work']:.2f}x, unload {figures['ratio_unload']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
