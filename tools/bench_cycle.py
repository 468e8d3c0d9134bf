#!/usr/bin/env python3
"""Benchmark: relib_pure's load -> call -> unload -> verify cycle against raw C.

The baseline is a C program (built here with gcc) doing ``dlopen`` /
``dlsym`` / call / ``dlclose`` on the same library in the same run; the ratio
is what matters (target: <= 3x). Also the per-call overhead of an export
called through the owner thread, in ``owner="caller"`` mode and as a bare
ctypes call.

    python tools/bench_cycle.py [--cycles 300] [--calls 20000]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import build_fixtures  # noqa: E402

from relib_pure.runtime import load  # noqa: E402
from relib_pure.runtime import dl  # noqa: E402

C_SOURCE = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y);
}
int main(int argc, char **argv) {
    int n = atoi(argv[3]);
    double *t = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        long (*f)(void) = (long (*)(void))dlsym(h, argv[2]);
        if (!f) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        volatile long r = f(); (void)r;
        dlclose(h);
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
    }
    qsort(t, n, sizeof(double), cmp);
    printf("%.2f\n", t[n / 2]);
    return 0;
}
"""

CASES = (("c_plain", "plain_bump"), ("rust_plain", "rust_plain_calls"))


def build_c(tmp: Path) -> Path:
    src = tmp / "cycle.c"
    src.write_text(C_SOURCE)
    exe = tmp / "cycle"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-ldl"], check=True)
    return exe


def c_cycle_us(exe: Path, lib: Path, symbol: str, cycles: int) -> float:
    out = subprocess.run([str(exe), str(lib), symbol, str(cycles)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout)


def py_cycles(lib: Path, symbol: str, cycles: int, owner: str,
              parts: dict[str, list[float]]) -> list[float]:
    times = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        module = load(lib, owner=owner)  # type: ignore[arg-type]
        module.function(symbol, ctypes.c_long)()
        report = module.unload()
        times.append((time.perf_counter() - t0) * 1e6)
        assert report.unloaded
        for k, v in report.timings_us.items():
            parts.setdefault(k, []).append(v)
    return times


def compare(exe: Path, lib: Path, symbol: str, cycles: int, owner: str,
            rounds: int) -> tuple[float, float, dict[str, float]]:
    """Medians of C and Python cycles, measured in alternating rounds so that a
    busy machine slows both sides alike."""
    py_cycles(lib, symbol, 20, owner, {})  # warm-up: inspection cache, stack/arena caches
    c_medians: list[float] = []
    py_times: list[float] = []
    parts: dict[str, list[float]] = {}
    per_round = max(1, cycles // rounds)
    for _ in range(rounds):
        c_medians.append(c_cycle_us(exe, lib, symbol, per_round))
        py_times += py_cycles(lib, symbol, per_round, owner, parts)
    return (statistics.median(c_medians), statistics.median(py_times),
            {k: statistics.median(v) for k, v in parts.items()})


def per_call_ns(calls: int) -> dict[str, float]:
    lib = build_fixtures.build("c_plain")
    out = {}
    for owner in ("thread", "caller"):
        with load(lib, owner=owner) as module:  # type: ignore[arg-type]
            add = module.function("plain_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int))
            add(1, 2)
            t0 = time.perf_counter()
            for _ in range(calls):
                add(1, 2)
            out[f"owner={owner}"] = (time.perf_counter() - t0) / calls * 1e9
    handle = dl.dlopen(str(lib), dl.RTLD_NOW | dl.RTLD_LOCAL)
    try:
        raw = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(dl.dlsym(handle,
                                                                                "plain_add"))
        t0 = time.perf_counter()
        for _ in range(calls):
            raw(1, 2)
        out["bare ctypes"] = (time.perf_counter() - t0) / calls * 1e9
    finally:
        dl.dlclose(handle)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternate C and Python this many times (default 5)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_c(Path(tmp))
        print(f"{'library':12} {'C cycle us':>10} {'owner':>7} {'py cycle us':>11} {'ratio':>6}  "
              "median parts (us)")
        for name, symbol in CASES:
            lib = build_fixtures.build(name)
            for owner in ("thread", "caller"):
                base, cyc, parts = compare(exe, lib, symbol, args.cycles, owner, args.rounds)
                shown = " ".join(f"{k}={v:.0f}" for k, v in parts.items())
                print(f"{name:12} {base:10.1f} {owner:>7} {cyc:11.1f} {cyc / base:5.1f}x  {shown}")
    calls = per_call_ns(args.calls)
    bare = calls["bare ctypes"]
    print("\nper call of plain_add(1, 2):")
    for k, v in calls.items():
        print(f"  {k:14} {v / 1000:8.2f} us  ({v / bare:5.1f}x bare ctypes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
