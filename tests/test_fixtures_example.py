"""The example module: shipped as source only, built on first use, relib-shaped, and its
Rust and C sources in step.

Checked with readelf and raw bytes (not relib_pure's inspector, which it is
there to demonstrate) and by driving it through ctypes in a child interpreter
the way a relib host would.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import make_example  # tools/ is put on sys.path by tests/conftest.py
from relib_pure.errors import ExampleError
from relib_pure.examples import build_example, example_path, pick_language, source_path

needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None and not os.environ.get("CI"),
                                   reason="binutils readelf is not installed")
COMPILERS = {"rust": "rustc", "c": "cc"}
LANGS = [pytest.param(lang, marks=pytest.mark.skipif(
    shutil.which(tool) is None and not os.environ.get("CI"), reason=f"{tool} is not installed"))
    for lang, tool in COMPILERS.items()]

INTERNAL_EXPORTS = ("init", "exit", "take_cached_allocs_before_exit", "lock_module_allocator",
                    "spawned_threads_count", "run_thread_local_dtors", "misc_cleanup")
INTERNAL_IMPORTS = ("on_alloc", "on_cached_allocs", "unrecoverable", "eprintln",
                    "is_ptr_allocated")
RELIB_SYMBOLS = {
    # name: (type, size or None when it is code)
    "__RELIB__CRATE_COMPILATION_INFO__": ("OBJECT", 16),
    "__relib__Imports_log": ("OBJECT", 8),
    "__relib__main": ("FUNC", None),
    "__relib__Exports_add": ("FUNC", None),
    **{f"__relib_____Internal___Exports____{n}": ("FUNC", None) for n in INTERNAL_EXPORTS},
    **{f"__relib_____Internal___Imports____{n}": ("OBJECT", 8) for n in INTERNAL_IMPORTS},
}


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds go to a cache of this module's own (and so do the child processes')."""
    cache = tmp_path_factory.mktemp("example-cache")
    old = os.environ.get("RELIB_PURE_CACHE")
    os.environ["RELIB_PURE_CACHE"] = str(cache)
    yield cache
    if old is None:
        del os.environ["RELIB_PURE_CACHE"]
    else:
        os.environ["RELIB_PURE_CACHE"] = old


def readelf(path: Path, *options: str) -> str:
    return subprocess.run(["readelf", "-W", *options, str(path)], capture_output=True,
                          text=True, check=True, env={**os.environ, "LC_ALL": "C"}).stdout


def rustc_facts() -> dict[str, str]:
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(": ", 1) if ": " in line else ("rustc", line[len("rustc "):])
                for line in out.splitlines() if line)


def test_the_package_ships_sources_and_no_binary(repo_root: Path) -> None:
    folder = source_path("c").parent
    assert source_path("rust").parent == folder and folder.name == "examples"
    assert not [p for p in folder.iterdir() if p.suffix in (".so", ".dll", ".o")]
    if shutil.which("git") is not None and (repo_root / ".git").exists():
        tracked = subprocess.run(["git", "ls-files", "relib_pure"], cwd=repo_root,
                                 capture_output=True, text=True, check=True).stdout.split()
        assert tracked and not [t for t in tracked if t.endswith((".so", ".dll", ".o"))]


@pytest.mark.parametrize("lang", LANGS)
def test_the_example_is_built_into_the_cache(lang: str, private_cache: Path) -> None:
    built = build_example(lang)
    assert built.lang == lang and built.path.is_relative_to(private_cache)
    assert built.path.read_bytes()[:4] == b"\x7fELF"
    stamp = built.path.stat().st_mtime_ns
    assert build_example(lang).path == built.path  # reused, not rebuilt
    assert built.path.stat().st_mtime_ns == stamp
    if lang == "c":
        assert built.path.stat().st_size < 16 * 1024


def test_rust_is_preferred_when_rustc_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELIB_PURE_EXAMPLE_LANG", raising=False)
    assert pick_language() == ("rust" if shutil.which("rustc") else "c")
    monkeypatch.setenv("RELIB_PURE_EXAMPLE_LANG", "c")
    assert pick_language() == "c"
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("RUSTC", raising=False)
    if shutil.which("cc") or shutil.which("rustc"):
        pytest.skip("a compiler sits next to the interpreter")
    with pytest.raises(ExampleError) as info:
        pick_language()
    assert info.value.code == "example.no-compiler"


@needs_readelf
@pytest.mark.parametrize("lang", LANGS)
def test_example_is_a_stripped_x86_64_shared_object(lang: str) -> None:
    lib = example_path(lang)
    head = readelf(lib, "-h")
    assert re.search(r"Machine:\s+Advanced Micro Devices X86-64", head)
    assert re.search(r"Type:\s+DYN", head)
    sections = readelf(lib, "-S")
    assert ".dynsym" in sections and ".symtab" not in sections


@needs_readelf
@pytest.mark.parametrize("lang", LANGS)
def test_example_exports_exactly_the_relib_symbols(lang: str) -> None:
    lib = example_path(lang)
    syms = make_example.dynamic_symbols(lib)
    defined = {name: (typ, bind) for name, typ, bind, is_defined in syms
               if is_defined and name.lower().startswith("__relib")}
    assert set(defined) == set(RELIB_SYMBOLS)
    for name, (typ, _size) in RELIB_SYMBOLS.items():
        assert defined[name] == (typ, "GLOBAL"), name
    sizes = {m[2]: int(m[1]) for m in re.finditer(r"^\s*\d+:\s+[0-9a-f]+\s+(\d+)\s+\S+\s+\S+\s+"
                                                     r"\S+\s+\S+\s+(\S+)",
                                                     readelf(lib, "--dyn-syms"), re.M)}
    for name, (_typ, size) in RELIB_SYMBOLS.items():
        if size is not None:
            assert sizes[name] == size, name


def _compilation_info_from_bytes(lib: Path) -> str:
    """Decode the Str the way shared/relib-abi.md §2.3 says, with readelf for the tables."""
    data = lib.read_bytes()
    loads = [(int(m[2], 16), int(m[1], 16), int(m[3], 16))  # (vaddr, offset, filesz)
             for m in re.finditer(r"^\s+LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+"
                                  r"(0x[0-9a-f]+)", readelf(lib, "-l"), re.M)]

    def offset(vaddr: int) -> int:
        for start, off, size in loads:
            if start <= vaddr < start + size:
                return vaddr - start + off
        raise AssertionError(f"{vaddr:#x} is in no PT_LOAD")

    m = re.search(r"^\s*\d+:\s+([0-9a-f]+)\s+16\s+OBJECT\s+GLOBAL\s+DEFAULT\s+\d+\s+"
                  r"__RELIB__CRATE_COMPILATION_INFO__$", readelf(lib, "--dyn-syms"), re.M)
    assert m, "compilation info symbol not found"
    vaddr = int(m[1], 16)
    relocs = {int(r[1], 16): int(r[2], 16) for r in re.finditer(
        r"^([0-9a-f]+)\s+[0-9a-f]+\s+R_X86_64_RELATIVE\s+([0-9a-f]+)", readelf(lib, "-r"), re.M)}
    assert vaddr in relocs, "the Str pointer must be filled by a RELATIVE relocation"
    (length,) = struct.unpack_from("<Q", data, offset(vaddr + 8))
    return data[offset(relocs[vaddr]):offset(relocs[vaddr]) + length].decode()


@needs_readelf
@pytest.mark.parametrize("lang", LANGS)
def test_example_compilation_info_is_true(lang: str) -> None:
    built = build_example(lang)
    text = _compilation_info_from_bytes(built.path)
    assert text == built.compilation_info
    fields = text.split("|")
    assert len(fields) == 5 and fields[3:] == ["0.7.0", "1"]
    if lang == "rust":
        # the rustc that built it, as `check --rustc-from-path` will compare it
        facts = rustc_facts()
        assert fields[:3] == [facts["rustc"], facts["host"], facts["LLVM version"]]
    else:
        assert fields[0].startswith("none (C example built by ") and fields[2] == "none"
        assert not re.match(r"^\d+\.\d+\.\d+", fields[0])  # claims no rustc version


@pytest.mark.parametrize("lang", LANGS)
def test_example_behaves_like_a_relib_module_under_ctypes(lang: str) -> None:
    script = textwrap.dedent("""
        import ctypes, json, sys
        class Str(ctypes.Structure):
            _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]
        lib = ctypes.CDLL(sys.argv[1])
        internal = "__relib_____Internal___Exports____"
        init = getattr(lib, internal + "init")
        init.argtypes = [ctypes.c_size_t, ctypes.c_uint64, ctypes.c_bool]
        init.restype = None
        init(1, 7, False)
        count = getattr(lib, internal + "spawned_threads_count")
        count.restype = ctypes.c_uint64
        info = Str.in_dll(lib, "__RELIB__CRATE_COMPILATION_INFO__")
        logged = []
        LOG = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_bool), Str)
        def log(success, message):
            logged.append(ctypes.string_at(message.ptr, message.len).decode())
            success[0] = True
        keep = LOG(log)
        slot = ctypes.c_void_p.in_dll(lib, "__relib__Imports_log")
        slot.value = ctypes.cast(keep, ctypes.c_void_p).value
        ok = ctypes.c_bool(False)
        lib.__relib__main.restype = None
        lib.__relib__main(ctypes.byref(ok))
        main_ok = ok.value
        add = lib.__relib__Exports_add
        add.restype = ctypes.c_int32
        add.argtypes = [ctypes.POINTER(ctypes.c_bool), ctypes.c_int32, ctypes.c_int32]
        ok.value = False
        sums = [add(ctypes.byref(ok), 2, 40), add(ctypes.byref(ok), 2**31 - 1, 1)]
        print(json.dumps({"info": ctypes.string_at(info.ptr, info.len).decode(),
                          "main_ok": main_ok, "logged": logged, "sums": sums,
                          "add_ok": ok.value, "threads": count()}))
    """)
    built = build_example(lang)
    r = subprocess.run([sys.executable, "-c", script, str(built.path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"info": built.compilation_info, "main_ok": True,
                   "logged": ["hello from the example module"], "sums": [42, -2**31],
                   "add_ok": True, "threads": 0}


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.mark.parametrize("lang", LANGS)
def test_example_import_slot_placeholder_aborts_when_unset(lang: str, tmp_path: Path) -> None:
    script = ("import ctypes, sys\nlib = ctypes.CDLL(sys.argv[1])\n"
              "ok = ctypes.c_bool(False)\nlib.__relib__main(ctypes.byref(ok))\n")
    r = subprocess.run([sys.executable, "-c", script, str(example_path(lang))],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       preexec_fn=_no_core_dump)
    assert r.returncode < 0  # SIGABRT
    assert "before the host set it" in r.stderr


@needs_readelf
@pytest.mark.parametrize("lang", LANGS)
def test_the_relib_host_loads_calls_and_unloads_it_clean(lang: str) -> None:
    import ctypes

    import relib_pure
    from relib_pure.relib import RStr

    logged: list[str] = []
    m = relib_pure.load_module(
        example_path(lang), exports={"add": (ctypes.c_int32, [ctypes.c_int32] * 2)},
        imports={"log": (None, [RStr], lambda s: logged.append(
            ctypes.string_at(s.ptr, s.len).decode()))}, enable_alloc_tracker=False)
    m.call_main()
    assert m.exports.add(2, 40) == 42 and logged == ["hello from the example module"]
    report = m.unload()
    assert report.clean, report.summary()


@needs_readelf
@pytest.mark.skipif((shutil.which("rustc") is None or shutil.which("cc") is None)
                    and not os.environ.get("CI"), reason="needs both rustc and cc")
def test_the_rust_and_c_sources_export_the_same_symbols(tmp_path: Path) -> None:
    assert make_example.check() == []
    # and the check notices a source that drifts
    drifted = tmp_path / "example_relib.c"
    drifted.write_text(source_path("c").read_text().replace("__relib__Exports_add",
                                                             "__relib__Exports_sum"))
    problems = make_example.check(c_source=drifted)
    assert "only in the Rust example: ('__relib__Exports_add', 'FUNC')" in problems
    assert "only in the C example: ('__relib__Exports_sum', 'FUNC')" in problems


def test_a_built_wheel_ships_the_sources_and_no_binary(tmp_path: Path, repo_root: Path) -> None:
    # build from a copy: an in-tree build would drop build/ and *.egg-info into
    # the shared working tree
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (repo_root / name).exists():
            shutil.copy2(repo_root / name, src / name)
    shutil.copytree(repo_root / "relib_pure", src / "relib_pure",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("relib_pure-*-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"relib_pure/examples/__init__.py", "relib_pure/examples/build.py",
            "relib_pure/examples/example_relib.rs", "relib_pure/examples/example_relib.c"} <= names
    assert not [n for n in names if n.endswith((".so", ".dll", ".o"))]
    assert zipfile.ZipFile(wheel).read("relib_pure/examples/example_relib.rs") == \
        source_path("rust").read_bytes()


def _inspect_example(tmp_path: Path, repo_root: Path, path_dirs: list[str]
                     ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.pathsep.join(path_dirs), "HOME": str(tmp_path),
           "PYTHONPATH": str(repo_root), "LC_ALL": "C",
           "RELIB_PURE_CACHE": str(tmp_path / "cache"),
           # a rustup proxy finds its toolchains through these, not through PATH
           "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
           "CARGO_HOME": os.environ.get("CARGO_HOME", str(Path.home() / ".cargo"))}
    return subprocess.run([sys.executable, "-m", "relib_pure", "inspect", "--example", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


def test_inspect_example_without_a_compiler_says_what_is_missing(tmp_path: Path,
                                                                   repo_root: Path) -> None:
    here = str(Path(sys.executable).parent)
    if shutil.which("cc", path=here) or shutil.which("rustc", path=here):
        pytest.skip("a compiler sits next to the interpreter")
    r = _inspect_example(tmp_path, repo_root, [here])
    assert r.returncode == 2, r.stderr
    report = json.loads(r.stdout)
    assert report["version"] == 1
    (error,) = report["errors"]
    assert error["code"] == "example.no-compiler" and "rustc or a C compiler" in error["message"]


@pytest.mark.parametrize("lang", LANGS)
def test_inspect_example_builds_it_with_the_compiler_it_finds(lang: str, tmp_path: Path,
                                                              repo_root: Path) -> None:
    # PATH: the interpreter's folder, the system's (cc, as, ld: rustc links with cc
    # too) and for Rust rustc's; so the C build runs exactly when rustc is missing
    dirs = [str(Path(sys.executable).parent), "/usr/bin", "/bin"]
    if shutil.which("rustc", path=os.pathsep.join(dirs)):
        pytest.skip("rustc is installed in a system folder")
    if lang == "rust":
        dirs.append(str(Path(shutil.which("rustc") or "rustc").parent))
    r = _inspect_example(tmp_path, repo_root, dirs)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    (lib,) = report["libraries"]
    assert Path(lib["path"]).is_relative_to(tmp_path / "cache")
    assert lib["machine"] == "x86_64"
    relib = lib["relib"]
    assert relib["compilation_info"]["raw"] == build_example(lang).compilation_info
    assert relib["compilation_info"]["unloading"] is True
    assert relib["has_main"] is True
    assert [e["symbol"] for e in relib["exports"] if e["trait"] == "Exports"] == \
        ["__relib__Exports_add"]
    assert [i["symbol"] for i in relib["imports"]] == ["__relib__Imports_log"]
