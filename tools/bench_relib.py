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

C_HOST = r"""/* Baseline for tools/bench_relib.py: relib's host side with the allocation
 * tracker's callbacks written in C (an open-addressing ptr -> layout map),
 * driving the same module through the same protocol steps as relib_pure
 * (relib 0.7 generation: init with the tracker flag, misc_cleanup).
 *
 * usage: bench_relib_host MODULE.so N KEEP_EVERY [EXPORT]
 * prints one JSON object: work_s, unload_s, live_before_exit, freed_bytes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { size_t size, align; } Layout;
typedef struct { void *ptr; size_t len; } Slice;
typedef struct { uint32_t tag; uint32_t pad; uintptr_t ptr; Layout layout; } Op;
typedef struct { uintptr_t ptr; Layout layout; } Alloc;

/* linear probing, backward-shift deletion; key 0 = empty */
static Alloc *table;
static size_t mask, live;

static size_t slot_of(uintptr_t p) {
    uint64_t h = (uint64_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

static void put(uintptr_t p, Layout l) {
    size_t i = slot_of(p);
    while (table[i].ptr && table[i].ptr != p) i = (i + 1) & mask;
    if (!table[i].ptr) live++;
    table[i].ptr = p;
    table[i].layout = l;
}

static void del(uintptr_t p) {
    size_t i = slot_of(p);
    while (table[i].ptr && table[i].ptr != p) i = (i + 1) & mask;
    if (!table[i].ptr) return; /* unknown dealloc: ignored, as relib does */
    live--;
    size_t j = i;
    for (;;) {
        table[i].ptr = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!table[j].ptr) return;
            size_t k = slot_of(table[j].ptr);
            /* move j back to i unless its home k lies cyclically in (i, j] */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;
            break;
        }
        table[i] = table[j];
        i = j;
    }
}

static void on_alloc(uint64_t id, void *p, Layout l) { (void)id; put((uintptr_t)p, l); }

static void on_cached_allocs(uint64_t id, Slice ops) {
    (void)id;
    const Op *op = ops.ptr;
    for (size_t i = 0; i < ops.len; i++) {
        if (op[i].tag == 0) put(op[i].ptr, op[i].layout);
        else del(op[i].ptr);
    }
}

static void unrecoverable(uint64_t id, Slice msg) {
    fprintf(stderr, "[module id: %llu] something unrecoverable happened: %.*s\naborting\n",
            (unsigned long long)id, (int)msg.len, (const char *)msg.ptr);
    abort();
}

static bool is_ptr_allocated(uint64_t id, void *p) {
    (void)id;
    size_t i = slot_of((uintptr_t)p);
    while (table[i].ptr && table[i].ptr != (uintptr_t)p) i = (i + 1) & mask;
    return table[i].ptr != 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define INT "__relib_____Internal___Imports____"
#define EXP "__relib_____Internal___Exports____"

static void *need(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) { fprintf(stderr, "missing %s\n", name); exit(2); }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s MODULE N KEEP_EVERY [EXPORT]\n", argv[0]); return 2; }
    const char *export_name = argc > 4 ? argv[4] : "__relib__Exports_bench_allocs";
    uint64_t n = strtoull(argv[2], 0, 10), keep = strtoull(argv[3], 0, 10);
    mask = (1u << 22) - 1;
    table = calloc(mask + 1, sizeof(Alloc));
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    *(void **)need(h, INT "on_alloc") = (void *)on_alloc;
    *(void **)need(h, INT "on_cached_allocs") = (void *)on_cached_allocs;
    *(void **)need(h, INT "unrecoverable") = (void *)unrecoverable;
    *(void **)need(h, INT "is_ptr_allocated") = (void *)is_ptr_allocated;
    ((void (*)(size_t, uint64_t, bool))need(h, EXP "init"))((size_t)pthread_self(), 1, true);

    uint64_t (*bench)(bool *, uint64_t, uint64_t) = need(h, export_name);
    bool ok = false;
    double t0 = now();
    uint64_t kept = bench(&ok, n, keep);
    double t1 = now();
    if (!ok) { fprintf(stderr, "bench_allocs panicked\n"); return 1; }

    ((void (*)(void))need(h, EXP "lock_module_allocator"))();
    ((void (*)(void))need(h, EXP "run_thread_local_dtors"))();
    ((void (*)(void))need(h, EXP "misc_cleanup"))();
    ((void (*)(void))need(h, EXP "take_cached_allocs_before_exit"))();
    Alloc *list = malloc((live ? live : 1) * sizeof(Alloc));
    size_t count = 0, bytes = 0;
    for (size_t i = 0; i <= mask; i++)
        if (table[i].ptr) { list[count++] = table[i]; bytes += table[i].layout.size; }
    Slice s = { count ? (void *)list : (void *)8, count };
    ((void (*)(Slice))need(h, EXP "exit"))(s);
    dlclose(h);
    double t2 = now();
    printf("{\"work_s\": %.6f, \"unload_s\": %.6f, \"kept\": %llu, \"freed_allocations\": %zu, "
           "\"freed_bytes\": %zu}\n", t1 - t0, t2 - t1, (unsigned long long)kept, count, bytes);
    return 0;
}
"""


def build_c_host() -> Path:
    """Compile the C host once per source version into the fixture cache."""
    import build_fixtures

    digest = hashlib.sha256(C_HOST.encode()).hexdigest()[:16]
    folder = build_fixtures.cache_dir() / f"bench_relib_host-{digest}"
    exe = folder / "bench_relib_host"
    if exe.exists():
        return exe
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "bench_relib_host.c"
    src.write_text(C_HOST)
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


def run_c(exe: Path, path: Path, n: int, keep_every: int, export: str) -> dict[str, float]:
    out = subprocess.run([str(exe), str(path), str(n), str(keep_every), f"__relib__Exports_{export}"],
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
