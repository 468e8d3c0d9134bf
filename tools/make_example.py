#!/usr/bin/env python3
"""Build the example module the way the package does, and keep its two sources in step.

The package ships the example as source only: ``relib_pure/examples/example_relib.rs``
(built with rustc when it is installed) and ``example_relib.c`` (built with cc
otherwise); :mod:`relib_pure.examples.build` builds it on first use into a cache
directory. The two sources are one module and must export the same dynamic
symbols; ``--check`` builds both and compares them.

Usage::

    python3 tools/make_example.py                 # build (rust if rustc is there), print the path
    python3 tools/make_example.py --lang c -o OUT.so
    python3 tools/make_example.py --check         # build both, compare dynamic symbols
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from relib_pure.errors import ExampleError  # noqa: E402
from relib_pure.examples.build import build_example, source_path  # noqa: E402

logger = logging.getLogger(__name__)


class ExampleBuildFailed(RuntimeError):
    """The compiler is missing or rejected an example source."""


def build(lang: str | None = None, out: Path | None = None, source: Path | None = None,
          cache: Path | None = None) -> Path:
    """Build the example (``lang`` as the package picks it); copy it to ``out`` if given."""
    try:
        built = build_example(lang, source=source, cache=cache)
    except ExampleError as e:
        raise ExampleBuildFailed(str(e)) from None
    if out is None:
        return built.path
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built.path, out)
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


def defined_relib_symbols(lib: Path) -> set[tuple[str, str]]:
    """``(name, type)`` of the relib symbols ``lib`` defines (what both sources share;
    their undefined libc/libgcc imports differ by language)."""
    return {(name, typ) for name, typ, _bind, defined in dynamic_symbols(lib)
            if defined and name.lower().startswith("__relib")}


def check(c_source: Path | None = None, rust_source: Path | None = None) -> list[str]:
    """Build both sources in a temp cache; describe how their relib symbols differ."""
    with tempfile.TemporaryDirectory() as tmp:
        rust = defined_relib_symbols(build("rust", source=rust_source or source_path("rust"),
                                           cache=Path(tmp)))
        c = defined_relib_symbols(build("c", source=c_source or source_path("c"),
                                        cache=Path(tmp)))
    problems = [f"only in the Rust example: {s}" for s in sorted(rust - c)]
    problems += [f"only in the C example: {s}" for s in sorted(c - rust)]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", choices=("rust", "c"))
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--check", action="store_true",
                    help="build both sources and compare their relib symbols")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.check:
            problems = check()
            for p in problems:
                print(p, file=sys.stderr)
            print("the C and Rust examples differ" if problems else
                  "the C and Rust examples export the same relib symbols")
            return 1 if problems else 0
        out = build(args.lang, args.output)
    except ExampleBuildFailed as e:
        print(f"build failed: {e}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
