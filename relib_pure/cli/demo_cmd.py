"""``relib-pure demo``: build the example module, inspect, load, call, edit, rebuild, reload.

Everything happens in a temporary directory: the shipped example source is
copied there and built (Rust with rustc if it is installed, else C with cc),
inspected and checked, loaded under a Reloader that watches the source, and
called; then the source is edited, the watcher rebuilds, the new version is
swapped in and called, and the unload reports show that each version really
left the process.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["configure_parser", "execute", "EDITS"]

EPILOG = ("exit status: 0 the new code ran and every version unloaded clean, 1 a step "
          "failed, 2 no compiler to build the example")

#: what the demo changes in each source: Exports::add starts multiplying
EDITS = {"rust": ("a.wrapping_add(b)", "a.wrapping_mul(b)"),
         "c": ("(uint32_t)a + (uint32_t)b", "(uint32_t)a * (uint32_t)b")}
#: how long the demo waits for the rebuild and reload
RELOAD_TIMEOUT = 300.0


def configure_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="build, load, change and hot-reload the example module",
        description=__doc__.splitlines()[0], epilog=EPILOG)
    parser.add_argument("--lang", choices=("rust", "c"),
                        help="build the Rust or the C example (default: rust if rustc is "
                             "installed)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory and print where it is")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from relib_pure.errors import RelibError

    tmp = Path(tempfile.mkdtemp(prefix="relib-pure-demo-"))
    try:
        return _demo(args, tmp)
    except RelibError as e:
        print(f"relib-pure demo: {e}", file=sys.stderr)
        return 2 if e.code == "example.no-compiler" else 1
    finally:
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _demo(args: argparse.Namespace, tmp: Path) -> int:
    import relib_pure
    from relib_pure.examples import build_example, pick_language, source_path
    from relib_pure.relib import RStr

    lang = pick_language(args.lang)
    src_dir, out_dir = tmp / "src", tmp / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    source = src_dir / source_path(lang).name
    shutil.copyfile(source_path(lang), source)
    lib = out_dir / "libexample_relib.so"

    _say(f"1. build the {lang} example from {source.name}")
    t0 = time.perf_counter()
    built = build_example(lang, source=source, cache=tmp / "cache")
    shutil.copyfile(built.path, lib)
    _say(f"   {built.compiler} -> {lib} ({lib.stat().st_size} bytes, "
         f"{time.perf_counter() - t0:.1f} s)")

    _say("2. inspect it without loading it")
    info = relib_pure.inspect(lib)
    relib = info.relib
    assert relib is not None and relib.compilation_info is not None
    ci = relib.compilation_info
    _say(f"   {info.machine} {info.elf_type}, needs {', '.join(info.needed) or 'nothing'}")
    _say(f"   relib {ci.relib_version} (protocol {ci.generation}), unloading "
         f"{'on' if ci.unloading else 'off'}, rustc field: {ci.rustc_version}")
    _say("   exports: " + ", ".join(f.symbol for f in relib.exports)
         + "; imports: " + ", ".join(f.symbol for f in relib.imports))
    report = relib_pure.check(info)
    _say(f"   check: {'ok' if report.ok else 'FAILED'} "
         f"({', '.join(f'{f.severity} {f.code}' for f in report.findings) or 'no findings'})")

    said: list[str] = []

    def log(message: Any) -> None:
        text = ctypes.string_at(message.ptr, message.len).decode()
        said.append(text)
        _say(f"   module says: {text!r}")

    build = [sys.executable, "-m", "relib_pure.examples.build", "--lang", lang,
             "--source", str(source), "--cache", str(tmp / "cache"), "-o", str(lib)]
    _say("3. load it under a Reloader watching the source, run main, call add")
    with relib_pure.Reloader(lib, exports={"add": (ctypes.c_int32, [ctypes.c_int32] * 2)},
                             imports={"log": (None, [RStr], log)}, enable_alloc_tracker=False,
                             build=build, src=src_dir) as reloader:
        first = reloader.next_event(0)
        assert first is not None
        _say(f"   {first.summary()}")
        before = reloader.exports.add(2, 40)
        _say(f"   add(2, 40) = {before}")

        old, new = EDITS[lang]
        _say(f"4. edit the source: {old!r} -> {new!r}; the watcher rebuilds and reloads")
        text = source.read_text()
        assert old in text, f"the demo's edit point is missing from {source.name}"
        source.write_text(text.replace(old, new))
        event = None
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            event = reloader.next_event(1.0)
            if event is not None and event.outcome != "unchanged":
                break
        if event is None:
            _say("   no reload happened")
            return 1
        _say(f"   {event.summary()}")
        if event.build is not None:
            _say(f"   build took {event.build.seconds:.1f} s")
        after = reloader.exports.add(2, 40)
        _say(f"   add(2, 40) = {after} (new code)")
        replaced = event.unload
    final = reloader.close()
    _say("5. unload reports")
    for name, rep in (("version 1", replaced), (f"version {event.version}", final)):
        if rep is not None:
            _say(f"   {name}: {rep.summary().splitlines()[0].split(': ', 1)[1]}")
            _say("     timings (us): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                  rep.timings_us.items()))
    ok = (event.outcome == "loaded" and before == 42 and after == 80 and replaced is not None
          and replaced.clean and final is not None and final.clean)
    _say("demo " + ("done: the new code ran and every version left the process" if ok
                    else "FAILED"))
    return 0 if ok else 1
