#!/usr/bin/env python3
"""Build the native test libraries in ``fixtures/`` into a cache keyed by source hash.

Each ``fixtures/**/fixture.json`` declares variants::

    {"variants": [
        {"name": "c_plain", "lang": "c", "sources": ["plain.c"], "args": ["-O1"]},
        {"name": "relib_07", "lang": "rust", "sources": ["relib_module.rs"],
         "args": ["--cfg", "relib_07"]}
    ]}

``lang`` is one of ``c`` (gcc), ``cxx`` (g++), ``rust`` (rustc --crate-type cdylib),
``mingw-c`` (x86_64-w64-mingw32-gcc, a PE DLL) or ``cross-c`` (the first available of
the variant's ``compilers`` list, e.g. ``aarch64-linux-gnu-gcc`` then ``gcc -m32``).
Sources are relative to the fixture.json folder; the first one is the crate root for Rust.
``output`` overrides the file name (default ``lib<name>.so`` / ``<name>.dll``).
``env`` adds environment variables to the compiler's environment.
``{python_include}`` in ``args`` and ``{python_ext_suffix}`` in ``output`` are the
building interpreter's C header directory and extension-module suffix
(``.cpython-311-x86_64-linux-gnu.so``): a Python extension built against the
installed headers.

The cache key covers the builder version, the compiler's version text, the
variant's JSON and every source file's bytes, so an edited source rebuilds and
an unchanged one is reused. Binaries never go into git.

Usage::

    python tools/build_fixtures.py            # build everything, print name -> path
    python tools/build_fixtures.py --list     # list variant names
    python tools/build_fixtures.py NAME...    # build some

The cache lives in ``$RELIB_PURE_FIXTURE_CACHE`` or ``<repo>/.fixture-cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

BUILDER_VERSION = "1"
REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


class FixtureUnavailable(RuntimeError):
    """A fixture's toolchain is missing on this machine."""


class FixtureBuildFailed(RuntimeError):
    """The compiler rejected a fixture."""


@dataclass(frozen=True)
class Variant:
    name: str
    lang: str
    folder: Path
    sources: tuple[str, ...]
    args: tuple[str, ...] = ()
    output: str | None = None
    compilers: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    spec: str = field(default="", compare=False)

    @property
    def filename(self) -> str:
        if self.output:
            return self.output
        return f"{self.name}.dll" if self.lang == "mingw-c" else f"lib{self.name}.so"


def cache_dir() -> Path:
    env = os.environ.get("RELIB_PURE_FIXTURE_CACHE")
    return Path(env) if env else REPO / ".fixture-cache"


@lru_cache(maxsize=None)
def variants() -> dict[str, Variant]:
    found: dict[str, Variant] = {}
    for spec_file in sorted(FIXTURES.rglob("fixture.json")):
        data = json.loads(spec_file.read_text())
        for v in data["variants"]:
            variant = Variant(
                name=v["name"], lang=v["lang"], folder=spec_file.parent,
                sources=tuple(v["sources"]), args=tuple(v.get("args", ())),
                output=v.get("output"), compilers=tuple(v.get("compilers", ())),
                env=tuple(sorted(v.get("env", {}).items())),
                spec=json.dumps(v, sort_keys=True),
            )
            if variant.name in found:
                raise ValueError(f"duplicate fixture name {variant.name!r} in {spec_file}")
            found[variant.name] = variant
    return found


@lru_cache(maxsize=None)
def _tool_version(tool: str) -> str | None:
    exe = tool.split()[0]
    if shutil.which(exe) is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _command(v: Variant, out: Path) -> list[str]:
    srcs = [str(v.folder / s) for s in v.sources]
    if v.lang == "c":
        return ["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), *srcs, *v.args]
    if v.lang == "cxx":
        return ["g++", "-shared", "-fPIC", "-O1", "-o", str(out), *srcs, *v.args]
    if v.lang == "rust":
        return ["rustc", "--edition", "2021", "--crate-type", "cdylib", "-C", "opt-level=1",
                "--crate-name", v.name, "-o", str(out), srcs[0], *v.args]
    if v.lang == "mingw-c":
        return ["x86_64-w64-mingw32-gcc", "-shared", "-O1", "-o", str(out), *srcs, *v.args]
    if v.lang == "cross-c":
        for compiler in v.compilers:
            parts = compiler.split()
            if _tool_version(parts[0]) is None:
                continue
            if len(parts) > 1 and not _cross_works(compiler):
                continue
            return [*parts, "-shared", "-fPIC", "-O1", "-o", str(out), *srcs, *v.args]
        raise FixtureUnavailable(f"{v.name}: none of {list(v.compilers)} is installed")
    raise ValueError(f"{v.name}: unknown lang {v.lang!r}")


@lru_cache(maxsize=None)
def _cross_works(compiler: str) -> bool:
    """``gcc -m32`` exists everywhere gcc does but needs multilib headers: try it."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "t.c")
        src.write_text("int f(void){return 1;}\n")
        r = subprocess.run([*compiler.split(), "-shared", "-fPIC", "-o", str(Path(tmp, "t.so")),
                            str(src)], capture_output=True)
        return r.returncode == 0


@lru_cache(maxsize=None)
def _rustc_facts() -> dict[str, str]:
    """``{rustc_version}``, ``{rustc_host}``, ``{llvm_version}`` from ``rustc -vV`` (parsed once)."""
    try:
        out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    facts: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("rustc "):
            facts["rustc_version"] = line[len("rustc "):]
        elif line.startswith("host: "):
            facts["rustc_host"] = line[len("host: "):]
        elif line.startswith("LLVM version: "):
            facts["llvm_version"] = line[len("LLVM version: "):]
    return facts


def _expanded_env(v: Variant) -> dict[str, str]:
    """The variant's ``env`` with the rustc placeholders filled in (relib compilation info)."""
    env: dict[str, str] = {}
    for key, value in v.env:
        if "{" in value:
            for fact, real in _rustc_facts().items():
                value = value.replace("{" + fact + "}", real)
        env[key] = value
    return env


def _key(v: Variant, cmd: list[str]) -> str:
    h = hashlib.sha256()
    h.update(BUILDER_VERSION.encode())
    h.update(v.spec.encode())
    # the expanded values, not only the placeholders, must key the cache
    h.update(json.dumps(_expanded_env(v), sort_keys=True).encode())
    h.update((_tool_version(cmd[0]) or "").encode())
    for s in v.sources:
        h.update(s.encode())
        h.update((v.folder / s).read_bytes())
    # Rust modules may `include!` siblings: hash every file in the folder.
    for extra in sorted(v.folder.iterdir()):
        if extra.is_file() and extra.name not in v.sources:
            h.update(extra.name.encode())
            h.update(extra.read_bytes())
    return h.hexdigest()[:16]


def _with_fixture_args(v: Variant) -> Variant:
    """Replace ``{fixture:NAME}`` in ``args`` by the built path of fixture NAME
    (a library linked against another fixture). The path holds NAME's cache
    key, so a changed dependency also rebuilds the dependent."""
    if not any("{fixture:" in a for a in v.args):
        return v
    import dataclasses

    args = []
    for a in v.args:
        while "{fixture:" in a:
            start = a.index("{fixture:")
            end = a.index("}", start)
            a = a[:start] + str(build(a[start + len("{fixture:"):end])) + a[end + 1:]
        args.append(a)
    return dataclasses.replace(v, args=tuple(args), spec=v.spec + json.dumps(args))


def _with_python_facts(v: Variant) -> Variant:
    """Fill ``{python_include}`` / ``{python_ext_suffix}`` from this interpreter
    (the expanded values key the cache: another Python builds another file)."""
    if not any("{python_" in a for a in (*v.args, v.output or "")):
        return v
    import dataclasses
    import sysconfig

    facts = {"{python_include}": sysconfig.get_paths()["include"],
             "{python_ext_suffix}": sysconfig.get_config_var("EXT_SUFFIX") or ".so"}

    def fill(text: str) -> str:
        for key, value in facts.items():
            text = text.replace(key, value)
        return text

    args = tuple(fill(a) for a in v.args)
    output = fill(v.output) if v.output else None
    return dataclasses.replace(v, args=args, output=output,
                               spec=v.spec + json.dumps([args, output]))


def build(name: str) -> Path:
    """Build (or reuse) fixture ``name`` and return the path of the library."""
    try:
        v = variants()[name]
    except KeyError:
        raise KeyError(f"no fixture named {name!r}; known: {sorted(variants())}") from None
    v = _with_python_facts(_with_fixture_args(v))
    placeholder = Path("OUT")
    cmd = _command(v, placeholder)
    if _tool_version(cmd[0]) is None:
        raise FixtureUnavailable(f"{name}: compiler {cmd[0]!r} is not installed")
    folder = cache_dir() / f"{name}-{_key(v, cmd)}"
    target = folder / v.filename
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    try:
        tmp_out = tmp_dir / v.filename
        cmd = [str(tmp_out) if c == str(placeholder) else c for c in _command(v, tmp_out)]
        env = {**os.environ, **_expanded_env(v)}
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_dir, env=env)
        if r.returncode != 0 or not tmp_out.exists():
            raise FixtureBuildFailed(f"{name}: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
        # rename is atomic, so parallel test processes never see half a file
        os.replace(tmp_out, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def build_all(names: list[str] | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """Build ``names`` (default: all). Returns (built, unavailable-with-reason)."""
    built: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name in names or sorted(variants()):
        try:
            built[name] = build(name)
        except FixtureUnavailable as e:
            missing[name] = str(e)
    return built, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--list", action="store_true", help="list the fixture names")
    args = ap.parse_args(argv)
    if args.list:
        for name, v in sorted(variants().items()):
            print(f"{name:32} {v.lang:8} {v.folder.relative_to(REPO)}")
        return 0
    try:
        built, missing = build_all(args.names or None)
    except FixtureBuildFailed as e:
        print(f"build failed: {e}", file=sys.stderr)
        return 1
    for name, path in built.items():
        print(f"{name:32} {path}")
    for name, why in missing.items():
        print(f"{name:32} UNAVAILABLE: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
