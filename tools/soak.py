#!/usr/bin/env python3
"""Soak: N load -> call -> unload -> verify cycles, then compare the process before and after.

Prints RSS, descriptor, thread and mapping counts after a warm-up and at the
end. Targets: RSS growth < 2 MB, the other counts unchanged; the exit status
is 0 when they are met, 1 otherwise. ``--json`` prints the figures as one
JSON object.

    python tools/soak.py [--cycles 5000] [--library rust_tls] [--owner thread]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import build_fixtures  # noqa: E402

from relib_pure.runtime import load, procfs  # noqa: E402

RSS_LIMIT_KB = 2048
WARMUP = 50
#: what each cycle calls: (symbol, restype, argtypes, args)
CALLS = {
    "rust_tls": ("rust_tls_touch", ctypes.c_size_t, (ctypes.c_uint8,), (1,)),
    "rust_plain": ("rust_plain_add", ctypes.c_int32, (ctypes.c_int32, ctypes.c_int32), (1, 2)),
    "c_plain": ("plain_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int), (1, 2)),
    "rt_basic": ("rt_thread_joined", ctypes.c_long, (ctypes.c_long,), (10,)),
}


def counts() -> dict[str, int]:
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return {"rss_kb": rss, "fds": len(os.listdir("/proc/self/fd")),
            "threads": len(procfs.task_ids()),
            "mappings": procfs.read_maps().count(b"\n")}


def cycle(lib: Path, name: str, owner: str) -> None:
    symbol, restype, argtypes, args = CALLS[name]
    module = load(lib, owner=owner)  # type: ignore[arg-type]
    module.function(symbol, restype, argtypes)(*args)
    report = module.unload()
    if not report.clean:
        raise SystemExit(f"cycle not clean:\n{report.summary()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5000)
    ap.add_argument("--library", choices=sorted(CALLS), default="rust_tls")
    ap.add_argument("--owner", choices=("thread", "caller"), default="thread")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    lib = build_fixtures.build(args.library)
    for _ in range(WARMUP):
        cycle(lib, args.library, args.owner)
    start = counts()
    t0 = time.perf_counter()
    for _ in range(args.cycles):
        cycle(lib, args.library, args.owner)
    elapsed = time.perf_counter() - t0
    end = counts()
    growth = end["rss_kb"] - start["rss_kb"]
    ok = (growth < RSS_LIMIT_KB and all(end[k] == start[k]
                                        for k in ("fds", "threads", "mappings")))
    result = {"library": args.library, "owner": args.owner, "cycles": args.cycles,
              "seconds": round(elapsed, 2), "start": start, "end": end,
              "rss_growth_kb": growth, "ok": ok}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.cycles} cycles of {args.library} (owner={args.owner}) in {elapsed:.1f} s "
              f"({elapsed / args.cycles * 1e6:.0f} us per cycle)")
        for key in ("rss_kb", "fds", "threads", "mappings"):
            print(f"  {key:9} start {start[key]:8}  end {end[key]:8}  "
                  f"delta {end[key] - start[key]:+d}")
        print(f"  targets (RSS growth < {RSS_LIMIT_KB} KB, rest unchanged): "
              + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
