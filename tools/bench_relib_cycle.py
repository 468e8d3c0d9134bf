#!/usr/bin/env python3
"""Benchmark: a verified relib cycle in relib_pure against relib's own Rust host.

Three loops over the *same* file, measured in this run, in alternating rounds
so that a busy machine slows all of them alike:

- **relib (Rust)**: a tiny Rust program built here with ``relib_host`` 0.7.0
  from ``../shared/relib-kit`` (offline, the kit's vendored crates), looping
  ``load_module -> call_main -> unload`` with relib's own checks;
- **C dlopen**: a C program doing ``dlopen(RTLD_DEEPBIND)`` / ``dlclose`` of the
  same module (no relib protocol: the floor);
- **ctypes dlopen**: the same bare ``dlopen``/``dlclose`` through ctypes in this
  process (CPython maps far more objects than the small Rust host);
- **relib_pure**: ``load_module(path) -> call_main() -> unload()`` with the
  verified unload, in ``owner="caller"`` and ``owner="thread"`` modes.

It also prints what each probe of the verification costs per call here, and the
floor they set with the bare ctypes cycle: a verified cycle cannot cost less.

The module is an empty relib 0.7 module (``#[relib_module::export] fn main()
{}``, unloading on) built in the same generated workspace. ``libgcc_s.so.1`` is
loaded for the whole run on every side (a Rust host links it; relib_pure keeps
it resident). Goals (issue "one Host"): caller mode <= 1.0x relib's Rust host,
owner-thread mode <= 2x. Ratios are printed; nothing is asserted.

Usage: python tools/bench_relib_cycle.py [--cycles 300] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))

import relib_kit  # noqa: E402
from build_fixtures import cache_dir  # noqa: E402

HOST_RS = r"""
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let cycles: usize = args[2].parse().unwrap();
    let mut total = std::time::Duration::ZERO;
    for _ in 0..cycles {
        let t = Instant::now();
        let module = unsafe { relib_host::load_module::<()>(path, ()) }.unwrap();
        let ret: Option<()> = unsafe { module.call_main::<()>() };
        assert!(ret.is_some());
        module.unload().unwrap();
        total += t.elapsed();
    }
    println!("{}", total.as_nanos() as f64 / cycles as f64 / 1000.0);
}
"""

MODULE_RS = """
#[relib_module::export]
pub fn main() {}
"""

C_LOOP = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
    int n = atoi(argv[2]);
    if (!dlopen("libgcc_s.so.1", RTLD_NOW)) return 2;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        dlclose(h);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n / 1000.0);
    return 0;
}
"""


def _workspace() -> Path:
    """Generate (once per kit content) a cargo workspace with the bench host and module."""
    kit = relib_kit.kit_root()
    src = relib_kit.source_root()
    key = hashlib.sha256((relib_kit.kit_key() + HOST_RS + MODULE_RS).encode()).hexdigest()[:12]
    ws = cache_dir() / "relib-kit" / f"bench-cycle-{key}"
    if (ws / "Cargo.toml").exists():
        return ws
    tmp = ws.with_name(ws.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "host" / "src").mkdir(parents=True)
    (tmp / "module" / "src").mkdir(parents=True)
    (tmp / ".cargo").mkdir()
    (tmp / "Cargo.toml").write_text('[workspace]\nresolver = "3"\nmembers = ["host", "module"]\n'
                                    '\n[profile.release]\ndebug = false\n')
    (tmp / "host" / "Cargo.toml").write_text(
        '[package]\nname = "bench_host"\nversion = "0.0.0"\nedition = "2024"\n\n'
        f'[dependencies.relib_host]\npath = "{src / "host"}"\nfeatures = ["unloading"]\n')
    (tmp / "host" / "src" / "main.rs").write_text(HOST_RS)
    (tmp / "module" / "Cargo.toml").write_text(
        '[package]\nname = "bench_module"\nversion = "0.0.0"\nedition = "2024"\n\n'
        '[lib]\ncrate-type = ["cdylib"]\n\n'
        f'[dependencies.relib_module]\npath = "{src / "module"}"\nfeatures = ["unloading"]\n')
    (tmp / "module" / "src" / "lib.rs").write_text(MODULE_RS)
    (tmp / ".cargo" / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "vendored"\n\n'
        f'[source.vendored]\ndirectory = "{kit / "vendor"}"\n\n[net]\noffline = true\n')
    # the kit's lock file pins the vendored versions; cargo prunes what is unused
    shutil.copy2(src / "Cargo.lock", tmp / "Cargo.lock")
    os.replace(tmp, ws)
    return ws


def build() -> tuple[Path, Path]:
    """Build the bench host and module; returns their paths."""
    ws = _workspace()
    target = cache_dir() / "relib-kit" / "target"
    r = subprocess.run(["cargo", "build", "--release", "--offline"], cwd=ws,
                       capture_output=True, text=True,
                       env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    if r.returncode != 0:
        raise SystemExit(f"cargo build of the bench workspace failed:\n{r.stderr[-3000:]}")
    out = ws / "out"
    out.mkdir(exist_ok=True)
    host = out / "bench_host"
    module = out / "libbench_module.so"
    shutil.copy2(target / "release" / "bench_host", host)
    shutil.copy2(target / "release" / "libbench_module.so", module)
    return host, module


def build_c_loop(ws: Path) -> Path:
    exe = ws / "out" / "c_loop"
    src = ws / "out" / "c_loop.c"
    src.write_text(C_LOOP)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-ldl"], check=True)
    return exe


def _native_us(cmd: list[str]) -> float:
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def _relib_pure_us(path: Path, cycles: int, owner: str) -> float:
    from relib_pure.relib import load_module

    total = 0.0
    for _ in range(cycles):
        t = time.perf_counter()
        m = load_module(path, owner=owner)
        m.call_main()
        report = m.unload()
        total += time.perf_counter() - t
        if not report.clean:
            raise SystemExit(f"not clean: {report.summary()}")
    return total / cycles * 1e6


def _ctypes_floor_us(path: Path, cycles: int) -> float:
    """Bare ``dlopen(RTLD_NOW|RTLD_LOCAL|RTLD_DEEPBIND)`` + ``dlclose`` through ctypes
    in this process: what any ctypes host pays before it checks or calls anything."""
    libc = ctypes.CDLL(None)
    dlopen, dlclose = libc.dlopen, libc.dlclose
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, (ctypes.c_char_p, ctypes.c_int)
    dlclose.argtypes = (ctypes.c_void_p,)
    raw, flags = os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL | os.RTLD_DEEPBIND
    t = time.perf_counter()
    for _ in range(cycles):
        dlclose(dlopen(raw, flags))
    return (time.perf_counter() - t) / cycles * 1e6


def _check_primitives_us(path: Path, n: int = 2000) -> dict[str, float]:
    """The per-call cost, in this process, of each probe a verified cycle makes
    before and after (threads, descriptors, VmSize, the loader, the mapping)."""
    from relib_pure.runtime import dl, procfs

    probes = {
        "task list": procfs.task_ids,
        "descriptors (fstat each)": procfs.fd_identities,
        "VmSize (statm)": procfs.vm_pages,
        "loader probe (RTLD_NOLOAD)": lambda: dl.is_loaded(str(path)),
        "one mapping (PROCMAP_QUERY)": lambda: procfs.query_mapping(id(n)),
    }
    out = {}
    for name, probe in probes.items():
        probe()
        t = time.perf_counter()
        for _ in range(n):
            probe()
        out[name] = (time.perf_counter() - t) / n * 1e6
    return out


def _thread_costs_us(n: int = 500) -> dict[str, float]:
    """What an owner thread adds per cycle, measured bare: one thread started and
    awaited until the kernel lists it no more, and one job hand-off (a lock
    ping-pong between two Python threads, the waker's wake-up latency included)."""
    import _thread

    from relib_pure.runtime import procfs

    def start_and_exit() -> None:
        ready = _thread.allocate_lock()
        ready.acquire()
        ids: list[int] = []

        def run() -> None:
            ids.append(threading.get_native_id())
            ready.release()
        _thread.start_new_thread(run, ())
        ready.acquire()
        procfs.wait_task_gone(ids[0], 5.0)

    ping, pong = _thread.allocate_lock(), _thread.allocate_lock()
    ping.acquire()
    pong.acquire()
    stop = [False]

    def echo() -> None:
        while True:
            ping.acquire()
            if stop[0]:
                return
            pong.release()
    _thread.start_new_thread(echo, ())

    def hand_off() -> None:
        ping.release()
        pong.acquire()

    out = {}
    for name, f in (("thread start + gone", start_and_exit), ("job hand-off", hand_off)):
        f()
        t = time.perf_counter()
        for _ in range(n):
            f()
        out[name] = (time.perf_counter() - t) / n * 1e6
    stop[0] = True
    ping.release()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    reason = relib_kit.available()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    host, module = build()
    c_loop = build_c_loop(host.parent.parent)
    # a private copy per side: relib's already-loaded check is by path
    py_module = module.with_name("libbench_module_py.so")
    shutil.copy2(module, py_module)
    ctypes.CDLL("libgcc_s.so.1")  # as the Rust and C sides have it
    _relib_pure_us(py_module, 20, "caller")  # warm: inspection cache, imports
    rows: dict[str, list[float]] = {"relib (Rust)": [], "C dlopen": [], "ctypes dlopen": [],
                                     "relib_pure caller": [], "relib_pure thread": []}
    for _ in range(args.rounds):
        rows["relib (Rust)"].append(_native_us([str(host), str(module), str(args.cycles)]))
        rows["C dlopen"].append(_native_us([str(c_loop), str(module), str(args.cycles)]))
        rows["ctypes dlopen"].append(_ctypes_floor_us(py_module, args.cycles))
        rows["relib_pure caller"].append(_relib_pure_us(py_module, args.cycles, "caller"))
        rows["relib_pure thread"].append(_relib_pure_us(py_module, args.cycles, "thread"))
    med = {k: statistics.median(v) for k, v in rows.items()}
    base = med["relib (Rust)"]
    probes = _check_primitives_us(py_module)
    # the least a verified cycle can cost here: the bare ctypes dlopen/dlclose
    # plus each probe once before and once after (no protocol call, no Python logic)
    floor = med["ctypes dlopen"] + 2 * sum(probes.values())
    threads = _thread_costs_us()
    # the owner thread's own share: started, three jobs (open, main, close), gone
    thread_floor = floor + threads["thread start + gone"] + 3 * threads["job hand-off"]
    if args.json:
        print(json.dumps({"version": 1, "cycles": args.cycles, "rounds": args.rounds,
                          "median_us": med, "ratio_to_relib": {k: v / base
                                                               for k, v in med.items()},
                          "probe_us": probes, "verified_floor_us": floor,
                          "verified_floor_ratio": floor / base, "thread_us": threads,
                          "thread_floor_us": thread_floor,
                          "thread_floor_ratio": thread_floor / base}))
    else:
        print(f"load -> main -> unload, {args.cycles} cycles x {args.rounds} rounds, medians")
        for k, v in med.items():
            print(f"  {k:<20} {v:8.1f} us   {v / base:5.2f}x relib")
        print("probes of the verification, per call in this process:")
        for k, v in probes.items():
            print(f"  {k:<28} {v:6.2f} us")
        print(f"floor of a verified cycle through ctypes (bare dlopen/dlclose + every probe "
              f"before and after): {floor:.1f} us = {floor / base:.2f}x relib")
        for k, v in threads.items():
            print(f"  {k:<28} {v:6.2f} us")
        print(f"floor with an owner thread (+ start/gone + 3 hand-offs): {thread_floor:.1f} us "
              f"= {thread_floor / base:.2f}x relib")
        print("goals: relib_pure caller <= 1.0x, thread <= 2.0x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
