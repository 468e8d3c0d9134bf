"""The bundled example library: shipped, small, relib-shaped, and in sync with its source.

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
from relib_pure.examples import example_path, example_source_path

needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None and not os.environ.get("CI"),
                                   reason="binutils readelf is not installed")

RELIB_SYMBOLS = {
    # name: (type, size or None when it is code)
    "__RELIB__CRATE_COMPILATION_INFO__": ("OBJECT", 16),
    "__relib__Imports_log": ("OBJECT", 8),
    "__relib__main": ("FUNC", None),
    "__relib__Exports_add": ("FUNC", None),
}


def readelf(path: Path, *options: str) -> str:
    return subprocess.run(["readelf", "-W", *options, str(path)], capture_output=True,
                          text=True, check=True, env={**os.environ, "LC_ALL": "C"}).stdout


def source_compilation_info() -> str:
    m = re.search(r'#define COMPILATION_INFO \\\s*"([^"]+)"', example_source_path().read_text())
    assert m, "COMPILATION_INFO macro not found in example_relib.c"
    return m[1]


def test_example_ships_inside_the_package() -> None:
    lib, src = example_path(), example_source_path()
    assert lib.is_file() and src.is_file()
    assert lib.parent == src.parent and lib.parent.name == "examples"
    assert lib.read_bytes()[:4] == b"\x7fELF"
    assert lib.stat().st_size < 16 * 1024


def test_example_binary_is_tracked_by_git(repo_root: Path) -> None:
    # .gitignore excludes *.so, so forgetting `git add -f` would ship nothing
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "ls-files", "--error-unmatch",
                        "relib_pure/examples/libexample_relib.so"],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@needs_readelf
def test_example_is_a_stripped_x86_64_shared_object() -> None:
    lib = example_path()
    head = readelf(lib, "-h")
    assert re.search(r"Machine:\s+Advanced Micro Devices X86-64", head)
    assert re.search(r"Type:\s+DYN", head)
    sections = readelf(lib, "-S")
    assert ".dynsym" in sections and ".symtab" not in sections


@needs_readelf
def test_example_exports_exactly_the_relib_symbols() -> None:
    syms = make_example.dynamic_symbols(example_path())
    defined = {name: (typ, bind) for name, typ, bind, is_defined in syms if is_defined}
    assert set(defined) == set(RELIB_SYMBOLS)
    for name, (typ, _size) in RELIB_SYMBOLS.items():
        assert defined[name] == (typ, "GLOBAL"), name
    sizes = {m[2]: int(m[1]) for m in re.finditer(r"^\s*\d+:\s+[0-9a-f]+\s+(\d+)\s+\S+\s+\S+\s+"
                                                     r"\S+\s+\S+\s+(\S+)",
                                                     readelf(example_path(), "--dyn-syms"),
                                                     re.M)}
    for name, (_typ, size) in RELIB_SYMBOLS.items():
        if size is not None:
            assert sizes[name] == size, name


@needs_readelf
def test_example_compilation_info_decodes_statically_from_its_relocation() -> None:
    """Decode the Str the way shared/relib-abi.md §2.3 says, with readelf for the tables."""
    lib = example_path()
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
    text = data[offset(relocs[vaddr]):offset(relocs[vaddr]) + length].decode()
    assert text == source_compilation_info()
    fields = text.split("|")
    assert len(fields) == 5 and fields[3] == "0.7.0" and fields[4] in {"0", "1"}


def test_example_behaves_like_a_relib_module_under_ctypes() -> None:
    script = textwrap.dedent("""
        import ctypes, json, sys
        class Str(ctypes.Structure):
            _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]
        lib = ctypes.CDLL(sys.argv[1])
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
                          "add_ok": ok.value}))
    """)
    r = subprocess.run([sys.executable, "-c", script, str(example_path())],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"info": source_compilation_info(), "main_ok": True,
                   "logged": ["hello from the example module"], "sums": [42, -2**31],
                   "add_ok": True}


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def test_example_import_slot_placeholder_aborts_when_unset(tmp_path: Path) -> None:
    script = ("import ctypes, sys\nlib = ctypes.CDLL(sys.argv[1])\n"
              "ok = ctypes.c_bool(False)\nlib.__relib__main(ctypes.byref(ok))\n")
    r = subprocess.run([sys.executable, "-c", script, str(example_path())],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       preexec_fn=_no_core_dump)
    assert r.returncode < 0  # SIGABRT
    assert "before the host set it" in r.stderr


@needs_readelf
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_rebuilding_from_source_gives_the_same_dynamic_symbols(tmp_path: Path) -> None:
    rebuilt = make_example.build_example(tmp_path / "libexample_relib.so")
    assert make_example.dynamic_symbols(rebuilt) == make_example.dynamic_symbols(example_path())
    assert make_example.check() == []


@needs_readelf
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_check_reports_a_stale_example(tmp_path: Path) -> None:
    source = tmp_path / "example_relib.c"
    source.write_text(example_source_path().read_text().replace(
        "__relib__Exports_add", "__relib__Exports_sum"))
    problems = make_example.check(source=source)
    assert any("only in the shipped library: ('__relib__Exports_add'" in p for p in problems)
    assert any("only in a fresh build: ('__relib__Exports_sum'" in p for p in problems)


def test_a_built_wheel_contains_the_example(tmp_path: Path, repo_root: Path) -> None:
    # build from a copy: an in-tree build would drop build/ and *.egg-info into
    # the shared working tree
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (repo_root / name).exists():
            shutil.copy2(repo_root / name, src / name)
    shutil.copytree(repo_root / "relib_pure", src / "relib_pure",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("relib_pure-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"relib_pure/examples/__init__.py", "relib_pure/examples/libexample_relib.so",
            "relib_pure/examples/example_relib.c"} <= names
    shipped = zipfile.ZipFile(wheel).read("relib_pure/examples/libexample_relib.so")
    assert shipped == example_path().read_bytes()


def test_readme_first_command_inspects_the_example_without_a_compiler(tmp_path: Path,
                                                                      repo_root: Path) -> None:
    # PATH holds only the interpreter's folder: no gcc, no readelf
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
           "PYTHONPATH": str(repo_root), "LC_ALL": "C"}
    r = subprocess.run([sys.executable, "-m", "relib_pure", "inspect", "--example", "--json"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["version"] == 1
    (lib,) = report["libraries"]
    assert Path(lib["path"]) == example_path()
    assert lib["machine"] == "x86_64"
    relib = lib["relib"]
    assert relib["compilation_info"]["raw"] == source_compilation_info()
    assert relib["has_main"] is True
    assert [e["symbol"] for e in relib["exports"] if e["trait"] == "Exports"] == \
        ["__relib__Exports_add"]
    assert [i["symbol"] for i in relib["imports"]] == ["__relib__Imports_log"]
