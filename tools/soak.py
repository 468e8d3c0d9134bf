#!/usr/bin/env python3
"""Soak: N load -> call -> unload -> verify cycles, then compare the process before and after.

Prints RSS, address space, descriptor, thread and mapping counts after a
warm-up and at the end, with the growth per resource. Targets: every unload
clean, RSS growth < 2 MB, the other counts unchanged (judged as
``relib_pure.runtime.cycles`` judges growth: from the warm-up to the last
cycle, still rising over the second half); the exit status is 0 when they are
met, 1 otherwise. ``--json`` prints the figures as one JSON object.

    python tools/soak.py [--cycles 5000] [--library rust_tls] [--owner thread]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

import build_fixtures  # noqa: E402

from relib_pure.runtime.cycles import LibraryCycle, run_cycles  # noqa: E402

RSS_LIMIT_KB = 2047  # growth must stay below 2 MB
WARMUP = 50
#: what each cycle calls: (symbol, restype, argtypes, args)
CALLS = {
    "rust_tls": ("rust_tls_touch", ctypes.c_size_t, (ctypes.c_uint8,), (1,)),
    "rust_plain": ("rust_plain_add", ctypes.c_int32, (ctypes.c_int32, ctypes.c_int32), (1, 2)),
    "c_plain": ("plain_add", ctypes.c_int, (ctypes.c_int, ctypes.c_int), (1, 2)),
    "rt_basic": ("rt_thread_joined", ctypes.c_long, (ctypes.c_long,), (10,)),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5000)
    ap.add_argument("--library", choices=sorted(CALLS), default="rust_tls")
    ap.add_argument("--owner", choices=("thread", "caller"), default="thread")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    lib = build_fixtures.build(args.library)
    symbol, restype, argtypes, call_args = CALLS[args.library]
    # the cycle code of relib_pure.testing and `relib-pure run --cycles`
    cycle = LibraryCycle(lib, owner=args.owner,
                         call=lambda m: m.function(symbol, restype, argtypes)(*call_args))
    run = run_cycles(cycle, path=str(lib), cycles=WARMUP + args.cycles, warmup=WARMUP,
                     tolerance={"rss_kb": RSS_LIMIT_KB})
    start, end = run.baseline.to_dict(), run.records[-1].figures.to_dict()
    measured = run.records[WARMUP:]
    elapsed = sum(r.seconds for r in measured)
    ok = run.clean
    result = {"library": args.library, "owner": args.owner, "cycles": len(measured),
              "seconds": round(elapsed, 2), "start": start, "end": end,
              "rss_growth_kb": end["rss_kb"] - start["rss_kb"],
              "growth": [g.to_dict() for g in run.growth()], "ok": ok}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{len(measured)} cycles of {args.library} (owner={args.owner}) in {elapsed:.1f} s "
              f"({elapsed / max(len(measured), 1) * 1e6:.0f} us per cycle)")
        print(run.describe(with_path=False))
        print(f"  targets (RSS growth < {RSS_LIMIT_KB + 1} KB, rest unchanged): "
              + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
