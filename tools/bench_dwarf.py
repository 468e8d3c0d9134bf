#!/usr/bin/env python3
"""Benchmark the DWARF signature read against ``readelf --debug-dump=info``.

On upstream relib 0.7's test module built in debug (13 MB, 4.4 MB of
``.debug_info``; built and cached by ``tools/relib_kit.py``, or ``--library``),
it times in one run:

- ``read_debug_info``: the signatures of every relib export, import slot,
  main/before_unload and exported function, in this process (the library is
  inspected once beforehand: the symbol table is not part of the figure);
- ``readelf --debug-dump=info`` (output to /dev/null): the baseline, a C tool
  decoding the whole ``.debug_info``;

and prints best and median wall times, the ratio of medians, and whether the
signature read meets the target of 0.5 s.

Usage::

    python tools/bench_dwarf.py [--runs N] [--library PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

#: seconds the signature read may take on the debug module
TARGET = 0.5


def time_readelf(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["readelf", "--debug-dump=info", str(path)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=600)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    ap.add_argument("--library", type=Path,
                    help="library with DWARF (default: relib's test module, debug build)")
    args = ap.parse_args(argv)

    from relib_pure.inspection import inspect
    from relib_pure.inspection.dwarf import read_debug_info

    if args.library is not None:
        path = args.library
    else:
        import relib_kit

        try:
            path = relib_kit.build("unloading", profile="debug", host=False).module
        except (relib_kit.KitUnavailable, relib_kit.KitBuildFailed) as e:
            print(f"bench_dwarf: {e}", file=sys.stderr)
            return 2
    info = inspect(path)
    debug = read_debug_info(info)  # warm-up: page cache, imports
    if debug.status != "ok":
        print(f"bench_dwarf: {path}: {debug.message}", file=sys.stderr)
        return 2
    time_readelf(path)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.runs):
        start = time.perf_counter()
        read_debug_info(info)
        ours.append(time.perf_counter() - start)
        theirs.append(time_readelf(path))
    median = statistics.median(ours)
    ratio = median / statistics.median(theirs)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB): {len(debug.signatures)} signatures "
          f"from {debug.units_read} of {debug.units_total} compile units, {args.runs} runs each")
    for name, times in (("signature read (relib-pure)", ours),
                        ("readelf --debug-dump=info  ", theirs)):
        print(f"  {name}: wall best {min(times) * 1000:7.1f} ms  median "
              f"{statistics.median(times) * 1000:7.1f} ms")
    print(f"  ratio relib-pure/readelf   : median {ratio:.2f}  best "
          f"{min(ours) / min(theirs):.2f}")
    print(f"  target <= {TARGET} s: {'met' if median <= TARGET else 'MISSED'} "
          f"(median {median:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
