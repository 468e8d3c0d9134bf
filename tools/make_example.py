#!/usr/bin/env python3
"""Regenerate the bundled example library ``relib_pure/examples/libexample_relib.so``.

The example is the one binary the repository ships (package data), so that
``relib-pure inspect --example`` works on a machine without a compiler. It is
built from ``relib_pure/examples/example_relib.c`` with the flags below: every
symbol hidden except the relib ones, stripped, and packed into two segments so
the file stays a few KB.

Usage::

    python3 tools/make_example.py                 # rewrite the shipped library
    python3 tools/make_example.py -o OUT.so       # build somewhere else
    python3 tools/make_example.py --check         # rebuild in a temp dir and
                                                  # compare dynamic symbols

After rewriting, commit it with ``git add -f`` (``.gitignore`` excludes ``*.so``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "relib_pure" / "examples"
SOURCE = EXAMPLES / "example_relib.c"
OUTPUT = EXAMPLES / "libexample_relib.so"

#: The compiler driver; the example must be an x86_64 Linux ELF whatever the
#: host, so a cross gcc can be named through $RELIB_PURE_EXAMPLE_CC.
DEFAULT_CC = "gcc"

FLAGS: tuple[str, ...] = (
    "-shared", "-fPIC", "-Os", "-s",
    "-fvisibility=hidden",
    "-Wl,-soname,libexample_relib.so",
    # rustc links cdylibs with -z now; the example mirrors that.
    "-Wl,-z,now",
    # one RX and one RW segment instead of four page-aligned ones: ~6 KB, not ~14 KB
    "-Wl,-z,noseparate-code",
    "-Wl,--hash-style=gnu",
)


class ExampleBuildFailed(RuntimeError):
    """The compiler is missing or rejected the example source."""


def build_example(out: Path = OUTPUT, source: Path = SOURCE, cc: str | None = None) -> Path:
    """Compile ``source`` into ``out`` (atomically replaced) and return ``out``."""
    compiler = cc or os.environ.get("RELIB_PURE_EXAMPLE_CC", DEFAULT_CC)
    if shutil.which(compiler) is None:
        raise ExampleBuildFailed(f"compiler {compiler!r} is not installed")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".example-", dir=out.parent) as tmp:
        tmp_out = Path(tmp) / out.name
        cmd = [compiler, *FLAGS, "-o", str(tmp_out), str(source)]
        logger.info("running %s", " ".join(cmd))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not tmp_out.exists():
            raise ExampleBuildFailed(f"{' '.join(cmd)}\n{r.stdout}{r.stderr}")
        os.replace(tmp_out, out)
    return out


_DYNSYM_LINE = re.compile(
    r"^\s*\d+:\s+[0-9a-f]+\s+\d+\s+(?P<type>\S+)\s+(?P<bind>\S+)\s+(?P<vis>\S+)\s+"
    r"(?P<ndx>\S+)\s+(?P<name>\S+)"
)


def dynamic_symbols(lib: Path) -> set[tuple[str, str, str, bool]]:
    """``(name, type, binding, defined)`` of every named ``.dynsym`` entry, via readelf.

    Addresses and sizes are left out on purpose: they move with the compiler
    version, while the names are the example's contract.
    """
    r = subprocess.run(["readelf", "--dyn-syms", "-W", str(lib)],
                       capture_output=True, text=True, check=True)
    found: set[tuple[str, str, str, bool]] = set()
    for line in r.stdout.splitlines():
        m = _DYNSYM_LINE.match(line)
        if m:
            # the " (N)" version index readelf prints after a name is a separate field
            found.add((m["name"], m["type"], m["bind"], m["ndx"] != "UND"))
    return found


def check(shipped: Path = OUTPUT, source: Path = SOURCE) -> list[str]:
    """Rebuild from ``source`` in a temp dir; describe how its dynsym differs from ``shipped``."""
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = build_example(Path(tmp) / OUTPUT.name, source)
        old, new = dynamic_symbols(shipped), dynamic_symbols(rebuilt)
    problems = [f"only in the shipped library: {s}" for s in sorted(old - new)]
    problems += [f"only in a fresh build: {s}" for s in sorted(new - old)]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=OUTPUT)
    ap.add_argument("--check", action="store_true",
                    help="rebuild in a temp dir and compare dynamic symbols with the shipped file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.check:
            problems = check(args.output)
            for p in problems:
                print(p, file=sys.stderr)
            print("example is stale" if problems else "example matches its source")
            return 1 if problems else 0
        out = build_example(args.output)
    except ExampleBuildFailed as e:
        print(f"build failed: {e}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
