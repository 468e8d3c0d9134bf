#!/usr/bin/env python3
"""Concurrent load/unload cycles of clean libraries: count the false leaks.

Worker threads each reload their own copy of a clean fixture (``rt_basic``,
``c_plain``), with ``owner="thread"`` or ``"caller"`` drawn per cycle, while
one more thread inspects a big library (mapped, hashed on a helper thread) and
validates fresh copies of it. A clean library leaves nothing behind, so every
report that lists a thread, descriptor or mapping is a false leak: the host
blamed a module for its own activity or another module's.

Usage::

    python3 tools/stress_unload.py                       # 8 threads, 10,000 cycles in all
    python3 tools/stress_unload.py --threads 50 --cycles 200

Exit status: 0 no false leak and no error, 1 otherwise (each printed), 2 a
fixture could not be built.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

__all__ = ["Result", "run", "main"]

#: (symbol, argument) each fixture's cycle calls: int f(int, int)
CALLS = {"librt_basic.so": "rt_add", "libc_plain.so": "plain_add"}


@dataclass
class Result:
    """What a run saw: cycles done, inspections made, false leaks and errors (as text)."""

    cycles: int = 0
    inspections: int = 0
    false_leaks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _symbol(lib: Path, source_names: dict[Path, str]) -> str:
    return CALLS[source_names[lib]]


def run(libs: list[Path], *, cycles: int, inspect_path: Path | None, scratch: Path,
        seed: int = 0, source_names: dict[Path, str] | None = None) -> Result:
    """``cycles`` load/call/unload cycles on each of ``libs`` (one thread each),
    with an inspecting thread on ``inspect_path`` meanwhile."""
    import ctypes

    import relib_pure
    from relib_pure.runtime import validate
    from relib_pure.runtime.validate import clear_caches

    names = source_names or {lib: _source_name(lib) for lib in libs}
    result = Result()
    lock = threading.Lock()
    done = threading.Event()
    scratch.mkdir(parents=True, exist_ok=True)

    def worker(index: int, lib: Path) -> None:
        rng = random.Random(f"{seed}/{index}")
        symbol = _symbol(lib, names)
        for n in range(cycles):
            owner = rng.choice(("thread", "caller"))
            try:
                module = relib_pure.load(lib, owner=owner)
                add = module.function(symbol, ctypes.c_int, (ctypes.c_int, ctypes.c_int))
                if add(n, 1) != n + 1:
                    raise AssertionError(f"{symbol}({n}, 1) != {n + 1}")
                report = module.unload()
            except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
                with lock:
                    result.errors.append(f"{lib.name} cycle {n} ({owner}): "
                                         f"{type(e).__name__}: {e}")
                continue
            with lock:
                result.cycles += 1
                if not report.clean:
                    result.false_leaks.append(f"{lib.name} cycle {n} ({owner}): "
                                              + report.summary())

    # copies made before any module loads: the copying would be this process's
    # own descriptors, charged to whatever module is loaded meanwhile
    copies = []
    for k in range(4 if inspect_path is not None else 0):
        copy = scratch / f"inspected{k}.so"
        shutil.copy(inspect_path, copy)  # type: ignore[arg-type]
        copies.append(copy)

    def inspector() -> None:
        k = 0
        while not done.is_set() and inspect_path is not None:
            try:
                relib_pure.inspect(inspect_path)
                clear_caches()  # so that validation inspects the file again
                validate(copies[k % len(copies)], check=False)
            except Exception as e:  # noqa: BLE001
                with lock:
                    result.errors.append(f"inspector: {type(e).__name__}: {e}")
            k += 1
            with lock:
                result.inspections += 1

    # one round of everything first: the first call of some paths imports
    # modules (the import system's descriptors are the process's, not a module's)
    for lib in libs:
        with relib_pure.load(lib) as module:
            module.function(_symbol(lib, names), ctypes.c_int, (ctypes.c_int, ctypes.c_int))
    if copies:
        relib_pure.inspect(inspect_path)  # type: ignore[arg-type]
        clear_caches()
        validate(copies[0], check=False)
    started = time.monotonic()
    helper = threading.Thread(target=inspector, name="stress-inspector")
    helper.start()
    workers = [threading.Thread(target=worker, args=(i, lib), name=f"stress-{i}")
               for i, lib in enumerate(libs)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    helper.join()
    result.seconds = time.monotonic() - started
    return result


def _source_name(lib: Path) -> str:
    for name in CALLS:
        if lib.name == name:
            return name
    raise ValueError(f"{lib}: not a copy made by this tool")


def main(argv: list[str] | None = None) -> int:
    """Build the fixtures, copy them per thread, run, print the verdict."""
    import build_fixtures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    ap.add_argument("--cycles", type=int, default=1250,
                    help="cycles per worker thread (default 1250: 10,000 in all with 8)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        sources = [build_fixtures.build("rt_basic"), build_fixtures.build("c_plain")]
        inspected = build_fixtures.build("rust_plain")
    except build_fixtures.FixtureUnavailable as e:
        print(f"stress_unload: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="relib-stress-") as tmp:
        libs, names = [], {}
        for i in range(args.threads):
            source = sources[i % len(sources)]
            folder = Path(tmp) / f"t{i}"
            folder.mkdir()
            lib = folder / source.name
            shutil.copy(source, lib)
            libs.append(lib)
            names[lib] = source.name
        result = run(libs, cycles=args.cycles, inspect_path=inspected,
                     scratch=Path(tmp) / "scratch", seed=args.seed, source_names=names)
    print(f"stress_unload: {args.threads} threads, {result.cycles} cycles, "
          f"{result.inspections} inspections meanwhile, {result.seconds:.1f} s")
    print(f"false leaks: {len(result.false_leaks)}, errors: {len(result.errors)}")
    for line in result.false_leaks[:20] + result.errors[:20]:
        print("  " + line.replace("\n", "\n    "))
    return 0 if not result.false_leaks and not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
