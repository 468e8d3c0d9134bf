"""Building the example module from the sources that ship in the package.

The package ships source only (a binary has no place in a ``py3-none-any``
wheel). The example is built on first use into a cache directory keyed by
the source bytes, the language, the compiler's version text and the flags:
with ``rustc`` when it is on ``PATH`` (so the compilation info names the rustc
that really built it), otherwise with ``cc`` from the C source, whose
compilation info says that no rustc built it.

The cache is ``$RELIB_PURE_CACHE``, else ``$XDG_CACHE_HOME/relib-pure``, else
``~/.cache/relib-pure``. ``$RELIB_PURE_EXAMPLE_LANG`` (``rust`` or ``c``)
forces the language.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from relib_pure.errors import ExampleError

logger = logging.getLogger(__name__)

__all__ = ["BuiltExample", "EXAMPLE_LIBRARY", "SOURCES", "LANGUAGES", "build_example",
           "cache_root", "pick_language", "source_path", "compiler_facts"]

#: file name of the built library
EXAMPLE_LIBRARY = "libexample_relib.so"
#: the source of each language, next to this module
SOURCES = {"rust": "example_relib.rs", "c": "example_relib.c"}
LANGUAGES = ("rust", "c")
_BUILDER_VERSION = "1"

_C_FLAGS = ("-shared", "-fPIC", "-Os", "-s", "-fvisibility=hidden",
            f"-Wl,-soname,{EXAMPLE_LIBRARY}",
            # rustc links cdylibs with -z now; the example mirrors that
            "-Wl,-z,now")
_RUST_FLAGS = ("--edition", "2021", "--crate-type", "cdylib", "--crate-name", "example_relib",
               "-C", "opt-level=1", "-C", "strip=symbols", "-C", "panic=abort")


@dataclass(frozen=True)
class BuiltExample:
    """A built example: its ``path``, ``lang`` (``rust``/``c``), the ``compiler``
    command and the ``compilation_info`` text compiled into it."""

    path: Path
    lang: str
    compiler: str
    compilation_info: str


def cache_root() -> Path:
    """Where built examples are kept."""
    env = os.environ.get("RELIB_PURE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "relib-pure"


def source_path(lang: str) -> Path:
    """The shipped source of the example in ``lang``."""
    path = Path(__file__).resolve().parent / SOURCES[lang]
    if not path.is_file():
        raise ExampleError(f"the example source {SOURCES[lang]} is missing from the installed "
                           "package (reinstall relib-pure)", path=str(path),
                           code="example.no-source")
    return path


def _compiler(lang: str) -> str | None:
    if lang == "rust":
        # rustc links a cdylib with cc: without one it cannot build anything
        rustc = shutil.which(os.environ.get("RUSTC", "rustc"))
        return rustc if rustc is not None and _compiler("c") is not None else None
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def pick_language(lang: str | None = None) -> str:
    """``lang``, ``$RELIB_PURE_EXAMPLE_LANG``, else ``rust`` when rustc is installed,
    else ``c`` when a C compiler is; :class:`~relib_pure.errors.ExampleError`
    (``example.no-compiler``) when there is neither."""
    wanted = lang or os.environ.get("RELIB_PURE_EXAMPLE_LANG") or None
    if wanted is not None:
        if wanted not in SOURCES:
            raise ValueError(f"lang must be one of {LANGUAGES}, not {wanted!r}")
        if _compiler(wanted) is None:
            raise ExampleError(f"building the {wanted} example needs "
                               f"{'rustc and cc (its linker)' if wanted == 'rust' else 'a C compiler (cc)'}"
                               ", which is not on PATH", code="example.no-compiler")
        return wanted
    for candidate in LANGUAGES:
        if _compiler(candidate) is not None:
            return candidate
    raise ExampleError("the example is built on first use and needs rustc or a C compiler "
                       "(cc); neither is on PATH (e.g. apt install gcc)",
                       code="example.no-compiler")


@lru_cache(maxsize=None)
def compiler_facts(compiler: str, lang: str) -> tuple[str, dict[str, str]]:
    """(version text, facts) of a compiler; for rustc the facts are the three
    compilation-info fields from ``rustc -vV``."""
    args = ["-vV"] if lang == "rust" else ["--version"]
    try:
        r = subprocess.run([compiler, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ExampleError(f"cannot run {compiler}: {e}", code="example.build-failed") from None
    text = r.stdout
    facts: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("rustc "):
            facts["RELIB_EXAMPLE_RUSTC_VERSION"] = line[len("rustc "):]
        elif line.startswith("host: "):
            facts["RELIB_EXAMPLE_RUSTC_HOST"] = line[len("host: "):]
        elif line.startswith("LLVM version: "):
            facts["RELIB_EXAMPLE_LLVM_VERSION"] = line[len("LLVM version: "):]
    if lang == "rust" and len(facts) != 3:
        raise ExampleError(f"{compiler} -vV did not print the rustc, host and LLVM versions: "
                           f"{(r.stdout + r.stderr).strip() or 'no output'}",
                           code="example.build-failed")
    return text, facts


def _c_compilation_info(version_text: str) -> str:
    first = version_text.splitlines()[0] if version_text else "cc"
    # no rustc built it: the first field says so instead of naming a rustc
    rustc = f"none (C example built by {first.replace('|', '/')})"
    return f"{rustc}|{platform.machine()}-unknown-linux-gnu|none|0.7.0|1"


def build_example(lang: str | None = None, *, source: Path | None = None,
                  cache: Path | None = None) -> BuiltExample:
    """Build (or reuse from the cache) the example in ``lang`` (see :func:`pick_language`).

    ``source`` replaces the shipped source (the demo builds edited copies).
    Raises :class:`~relib_pure.errors.ExampleError` (``example.no-compiler``,
    ``example.build-failed`` with the compiler's output).
    """
    lang = pick_language(lang)
    compiler = _compiler(lang)
    assert compiler is not None  # pick_language checked
    src = source if source is not None else source_path(lang)
    version_text, facts = compiler_facts(compiler, lang)
    if lang == "rust":
        info = (f"{facts['RELIB_EXAMPLE_RUSTC_VERSION']}|{facts['RELIB_EXAMPLE_RUSTC_HOST']}|"
                f"{facts['RELIB_EXAMPLE_LLVM_VERSION']}|0.7.0|1")
        cmd_flags: tuple[str, ...] = _RUST_FLAGS
    else:
        info = _c_compilation_info(version_text)
        cmd_flags = (*_C_FLAGS, f'-DEXAMPLE_COMPILATION_INFO="{info}"')
    digest = hashlib.sha256()
    for part in (_BUILDER_VERSION, lang, version_text, "\0".join(cmd_flags)):
        digest.update(part.encode() + b"\0")
    digest.update(src.read_bytes())
    folder = (cache if cache is not None else cache_root()) / f"example-{lang}-{digest.hexdigest()[:16]}"
    out = folder / EXAMPLE_LIBRARY
    if out.is_file():
        return BuiltExample(out, lang, compiler, info)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=folder) as tmp:
        tmp_out = Path(tmp) / EXAMPLE_LIBRARY
        cmd = [compiler, *cmd_flags, "-o", str(tmp_out), str(src)]
        # the Rust source reads its compilation info fields from the environment
        env = {**os.environ, **facts}
        logger.info("building the example: %s", " ".join(cmd))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                               cwd=tmp)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ExampleError(f"cannot run {compiler}: {e}", path=str(src),
                               code="example.build-failed") from None
        if r.returncode != 0 or not tmp_out.is_file():
            raise ExampleError(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}", path=str(src),
                               code="example.build-failed")
        os.replace(tmp_out, out)  # atomic: a racing build finds a whole file or none
    return BuiltExample(out, lang, compiler, info)


def main(argv: list[str] | None = None) -> int:
    """``python -m relib_pure.examples.build [--lang L] [--source F] -o OUT``: build the
    example and put it at ``OUT`` by rename (the build command of ``relib-pure demo``)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m relib_pure.examples.build",
                                 description=main.__doc__.splitlines()[0] if main.__doc__ else None)
    ap.add_argument("--lang", choices=LANGUAGES)
    ap.add_argument("--source", type=Path, help="build this file instead of the shipped source")
    ap.add_argument("--cache", type=Path, help="cache directory (default: cache_root())")
    ap.add_argument("-o", "--output", type=Path, help="copy the library here (atomically)")
    args = ap.parse_args(argv)
    try:
        built = build_example(args.lang, source=args.source, cache=args.cache)
    except ExampleError as e:
        print(e, file=sys.stderr)
        return 1
    if args.output is None:
        print(built.path)
        return 0
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    shutil.copyfile(built.path, tmp)
    os.replace(tmp, args.output)
    print(f"{args.output} ({built.lang}, {args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
