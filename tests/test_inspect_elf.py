"""ELF inspection checked against binutils' readelf on real, freshly built libraries.

Each ELF fixture declared in ``fixtures/**/fixture.json`` (plus the toolchain's
own ``librustc_driver``) is inspected and compared field by field with what
``readelf --dyn-syms -d -W``, ``readelf -V``, ``readelf -n``,
``readelf -p .comment``, ``readelf -l`` and ``readelf -r`` print.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import build_fixtures
from relib_pure import abi
from relib_pure.errors import InspectionError
from relib_pure.inspection import inspect, inspect_bytes
from relib_pure.model import LibraryInfo

# Skipped only off CI: there a missing readelf must fail, not hide ~100 comparisons.
pytestmark = pytest.mark.skipif(shutil.which("readelf") is None and not os.environ.get("CI"),
                                reason="binutils readelf missing")

ELF_LANGS = {"c", "cxx", "rust", "cross-c"}
#: relib fixtures covering every protocol generation, the unloading flag, the
#: compilation-info field values and the three linker layouts (lld RELA with a
#: zero field, GNU ld RELA with the addend in place, RELR).
RELIB_FIXTURES = {
    "relib_0_1_8": ("0.1.8", None), "relib_0_2": ("0.2.0", True),
    "relib_0_2_3": ("0.2.3", True), "relib_0_3": ("0.3.0", True),
    "relib_0_4_0": ("0.4.0", True), "relib_0_4_1": ("0.4.1", True),
    "relib_0_7": ("0.7.0", True), "relib_0_7_bfd": ("0.7.0", True),
    "relib_0_7_relr": ("0.7.0", True), "relib_0_2_nounload": ("0.2.0", False),
    "relib_0_7_nounload": ("0.7.0", False), "relib_0_7_oldrustc": ("0.7.0", True),
}


def _elf_fixtures() -> list[str]:
    names = []
    for name, variant in sorted(build_fixtures.variants().items()):
        if variant.lang not in ELF_LANGS:
            continue
        if name.startswith("relib_") and name not in RELIB_FIXTURES:
            continue  # scenario variants share the layout of relib_0_7
        names.append(name)
    return names


ELF_FIXTURES = _elf_fixtures()
RELIB_PRESENT = list(RELIB_FIXTURES)


def readelf(*args: str | Path) -> str:
    result = subprocess.run(["readelf", *map(str, args)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- readelf output parsers -------------------------------------------------------------

# readelf names type 10 (IFUNC) and binding 10 (UNIQUE) only in ELFOSABI_GNU
# files, else prints "<OS specific>: 10"; glibc honours both either way.
_OS10 = "<OS specific>: 10"
_SYM_LINE = re.compile(r"^\s*(\d+): ([0-9a-f]+)\s+(0x[0-9a-f]+|\d+) (\w+|<OS specific>: 10)\s+"
                       r"(\w+|<OS specific>: 10)\s+(\w+)\s+"
                       r"(bad section index\[\s*\d+\]|\w+) (.*)$")
_KIND = {"FUNC": "func", "OBJECT": "object", "TLS": "tls", "IFUNC": "ifunc",
         "COMMON": "common", "NOTYPE": "notype", _OS10: "ifunc"}
_BIND = {"GLOBAL": "global", "WEAK": "weak", "UNIQUE": "gnu_unique",
         _OS10: "gnu_unique"}


def readelf_symbols(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(exports, imports) as readelf --dyn-syms -W shows them, in table order:
    exports (name, kind, binding, visibility, size, value, version, default),
    imports (name, kind, weak, version, version index)."""
    exports: list[tuple] = []
    imports: list[tuple] = []
    for line in readelf("--dyn-syms", "-W", path).splitlines():
        m = _SYM_LINE.match(line)
        if not m:
            continue
        _num, value, size, kind, bind, vis, ndx, name = m.groups()
        if bind == "LOCAL":
            continue
        index = re.search(r" \((\d+)\)$", name)
        name = re.sub(r" \(\d+\)$", "", name)
        version, default = None, True
        if "@@" in name:
            name, version = name.split("@@", 1)
        elif "@" in name:
            name, version = name.split("@", 1)
            default = ndx == "UND"
        if ndx == "UND":
            imports.append((name, _KIND[kind], bind == "WEAK", version,
                            int(index.group(1)) if index else None))
        elif vis in ("DEFAULT", "PROTECTED"):
            exports.append((name, _KIND[kind], _BIND[bind], vis.lower(), int(size, 0),
                            int(value, 16), version, default))
    return exports, imports


def readelf_dynamic(path: Path) -> list[tuple[str, str]]:
    """(TAG, value text) rows of readelf -d -W."""
    rows = []
    for line in readelf("-d", "-W", path).splitlines():
        m = re.match(r"^\s*0x[0-9a-f]+ \((\w+)\)\s+(.*)$", line)
        if m:
            rows.append((m.group(1), m.group(2).strip()))
    return rows


def readelf_need_files(path: Path) -> dict[int, str]:
    """version index -> file that must provide it, from readelf -V."""
    files: dict[int, str] = {}
    current = None
    for line in readelf("-V", "-W", path).splitlines():
        m = re.search(r"File: (\S+)\s+Cnt:", line)
        if m:
            current = m.group(1)
        m = re.search(r"Name: \S+\s+Flags: .*Version: (\d+)", line)
        if m and current:
            files[int(m.group(1))] = current
    return files


def _bracketed(text: str) -> str:
    return text[text.index("[") + 1:text.rindex("]")]


# -- field-by-field comparisons --------------------------------------------------------


def _check_symbols(info: LibraryInfo, path: Path) -> None:
    exports, imports = readelf_symbols(path)
    ours = [(s.name, s.kind, s.binding, s.visibility, s.size, s.value, s.version,
             s.default_version) for s in info.exports]
    # readelf omits the version of the absolute symbol a version definition
    # creates (VERS_1 in VERS_1); the table does carry it.
    theirs = [(e[0], *e[1:6], e[0], True) if e[6] is None and e[0] in info.version_definitions
              else e for e in exports]
    assert ours == theirs
    assert [(s.name, s.kind, s.weak, s.version) for s in info.imports] == [
        i[:4] for i in imports]
    assert info.hazards.thread_atexit == any(
        i[0] in ("__cxa_thread_atexit_impl", "__cxa_thread_atexit") for i in imports)
    files = readelf_need_files(path)
    assert [s.version_file for s in info.imports] == [
        files[i[4]] if i[4] is not None else None for i in imports]


def _check_dynamic(info: LibraryInfo, path: Path) -> None:
    rows = readelf_dynamic(path)
    tags = {tag for tag, _ in rows}
    assert list(info.needed) == [_bracketed(v) for t, v in rows if t == "NEEDED"]
    soname = [_bracketed(v) for t, v in rows if t == "SONAME"]
    assert info.soname == (soname[0] if soname else None)
    for tag, field in (("RPATH", info.rpath), ("RUNPATH", info.runpath)):
        expected = [p for t, v in rows if t == tag for p in _bracketed(v).split(":") if p]
        assert list(field) == expected
    flags = [v.split() for t, v in rows if t == "FLAGS"]
    assert list(info.dynamic_flags) == (flags[0] if flags else [])
    flags_1 = [v.removeprefix("Flags:").split() for t, v in rows if t == "FLAGS_1"]
    assert list(info.dynamic_flags_1) == (flags_1[0] if flags_1 else [])
    word = info.bits // 8
    for tag, count in (("INIT_ARRAYSZ", info.hazards.init_array),
                       ("FINI_ARRAYSZ", info.hazards.fini_array)):
        sizes = [int(v.split()[0]) for t, v in rows if t == tag]
        assert count == (sizes[0] // word if sizes else 0)
    assert info.hazards.has_init == ("INIT" in tags)
    assert info.hazards.has_fini == ("FINI" in tags)
    assert info.hazards.nodelete == ("NODELETE" in info.dynamic_flags_1)
    assert info.hazards.textrel == ("TEXTREL" in tags or "TEXTREL" in info.dynamic_flags)


def _check_versions(info: LibraryInfo, path: Path) -> None:
    text = readelf("-V", "-W", path)
    defs = re.findall(r"Flags: (\S+)\s+Index: \d+\s+Cnt: \d+\s+Name: (\S+)", text)
    assert list(info.version_definitions) == [n for flags, n in defs if flags != "BASE"]
    needs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.search(r"File: (\S+)\s+Cnt:", line)
        if m:
            needs.append((m.group(1), []))
            continue
        m = re.search(r"^\s+0x[0-9a-f]+:\s+Name: (\S+)\s+Flags:", line)
        if m and needs:
            needs[-1][1].append(m.group(1))
    assert [(n.file, list(n.versions)) for n in info.version_needs] == needs


def _check_notes_and_comments(info: LibraryInfo, path: Path) -> None:
    ids = re.findall(r"Build ID: ([0-9a-f]+)", readelf("-n", path))
    assert info.build_id == (ids[0] if ids else None)
    result = subprocess.run(["readelf", "-p", ".comment", str(path)], capture_output=True,
                            text=True, timeout=60)
    comments = re.findall(r"^\s+\[\s*[0-9a-f]+\]\s+(.*)$", result.stdout, re.M)
    assert list(info.comments) == comments


def _check_segments(info: LibraryInfo, path: Path) -> None:
    text = readelf("-l", "-W", path)
    tls = re.findall(r"^\s+TLS\s+\S+\s+\S+\s+\S+\s+\S+\s+(0x[0-9a-f]+)", text, re.M)
    assert info.hazards.tls_size == sum(int(t, 16) for t in tls)
    stacks = re.findall(r"^\s+(\w+)\s.*?([R ][W ][E ])\s+0x[0-9a-f]+$", text, re.M)
    executable = [i for i, (kind, flags) in enumerate(stacks)
                  if kind == "GNU_STACK" and flags.endswith("E")]
    assert info.hazards.exec_stack == (executable[0] if executable else None)
    interp = re.findall(r"Requesting program interpreter: ([^\]]+)\]", text)
    assert info.interpreter == (interp[0] if interp else None)
    machine = re.search(r"Machine:\s+(.*)", readelf("-h", path)).group(1)
    expected = {"Advanced Micro Devices X86-64": "x86_64", "AArch64": "aarch64",
                "Intel 80386": "i386", "ARM": "arm"}[machine]
    assert info.machine == expected


def _check_static_tls(info: LibraryInfo, path: Path) -> None:
    relocs = readelf("-r", "-W", path)
    initial_exec = re.search(r"R_X86_64_TPOFF(64|32)|R_AARCH64_TLS_TPREL|R_386_TLS_TPOFF",
                             relocs) is not None
    assert info.hazards.static_tls == (initial_exec or "STATIC_TLS" in info.dynamic_flags)


@pytest.mark.parametrize("name", ELF_FIXTURES)
def test_fixture_matches_readelf(native, name: str) -> None:
    path = native(name)
    info = inspect(path)
    assert info.format == "elf" and info.elf_type == "DYN"
    assert info.path == str(path)
    assert info.file_size == path.stat().st_size
    _check_symbols(info, path)
    _check_dynamic(info, path)
    _check_versions(info, path)
    _check_notes_and_comments(info, path)
    _check_segments(info, path)
    _check_static_tls(info, path)


#: System libraries with layouts the fixtures lack: libc's IFUNCs and hidden
#: versions, libstdc++'s size, libcc1's GNU-unique symbols in a SYSV-ABI file.
SYSTEM_LIBRARIES = ["libc.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1",
                    "libcc1.so.0", "libpython3.11.so.1.0"]


def _system_library(name: str) -> Path | None:
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                   "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        candidate = Path(folder, name)
        if candidate.is_file():
            return candidate.resolve()
    return None


@pytest.mark.parametrize("name", SYSTEM_LIBRARIES)
def test_system_library_matches_readelf(name: str) -> None:
    path = _system_library(name)
    if path is None:
        pytest.skip(f"{name} is not installed here")
    info = inspect(path)
    _check_symbols(info, path)
    _check_dynamic(info, path)
    _check_versions(info, path)
    _check_notes_and_comments(info, path)
    _check_segments(info, path)
    _check_static_tls(info, path)


# -- hazards on the fixtures built to show them -------------------------------------------


def test_plain_c_library(native) -> None:
    info = inspect(native("c_plain"))
    assert info.soname == "libc_plain.so"
    names = {s.name for s in info.exports}
    assert {"plain_add", "plain_mul", "plain_counter", "plain_name", "plain_weak"} <= names
    assert "plain_hidden" not in names and "helper" not in names
    assert info.find_export("plain_weak").binding == "weak"
    assert info.find_export("plain_counter").kind == "object"
    assert info.relib is None
    assert not info.hazards.blocks_unload and not info.hazards.static_tls


def test_nodelete_blocks_unload(native) -> None:
    info = inspect(native("c_nodelete"))
    assert info.hazards.nodelete and info.hazards.blocks_unload
    assert "NODELETE" in info.dynamic_flags_1


def test_gnu_unique_symbol(native) -> None:
    info = inspect(native("cxx_unique"))
    unique = [s for s in info.exports if s.binding == "gnu_unique"]
    assert unique, "the C++ inline function's local static must be STB_GNU_UNIQUE"
    assert info.hazards.gnu_unique == tuple(s.name for s in unique)
    assert info.hazards.blocks_unload and not info.hazards.nodelete


def test_static_tls(native) -> None:
    info = inspect(native("c_static_tls"))
    assert info.hazards.static_tls
    assert info.hazards.tls_size > 0
    assert any(s.kind == "tls" for s in info.exports)


def test_rust_thread_locals(native) -> None:
    info = inspect(native("rust_tls"))
    assert info.hazards.thread_atexit
    assert info.hazards.tls_size > 0
    assert "libgcc_s.so.1" in info.needed
    assert any(c.startswith("rustc version") for c in info.comments)
    assert "NOW" in info.dynamic_flags_1


def test_thread_atexit_reference_versus_relib_hook(native) -> None:
    """std references __cxa_thread_atexit_impl (weakly) in every Rust cdylib; a
    relib module defines its own hook instead, so glibc's never pins it."""
    assert inspect(native("rust_plain")).hazards.thread_atexit
    assert not inspect(native("c_plain")).hazards.thread_atexit
    relib = inspect(native("relib_0_7"))
    assert not relib.hazards.thread_atexit
    assert "__cxa_thread_atexit_impl" in relib.relib.hooks


def test_versioned_symbols(native) -> None:
    info = inspect(native("c_versioned"))
    assert info.version_definitions == ("VERS_1", "VERS_2")
    versions = {(s.name, s.version, s.default_version) for s in info.exports}
    assert ("vers_get", "VERS_1", False) in versions
    assert ("vers_get", "VERS_2", True) in versions


def test_foreign_architecture(native) -> None:
    info = inspect(native("cross_foreign"))
    assert info.machine in ("aarch64", "i386")
    assert info.machine != "x86_64"
    assert info.bits == (64 if info.machine == "aarch64" else 32)


def test_elf32_with_rel_relocations(native) -> None:
    info = inspect(native("inspect_elf32"))
    assert (info.bits, info.machine, info.endianness) == (32, "i386", "little")
    assert info.find_export("tiny_protected").visibility == "protected"
    assert info.find_export("tiny_tls").kind == "tls"
    assert info.hazards.static_tls and info.hazards.tls_size == 4
    assert "R_386_TLS_TPOFF" in readelf("-r", "-W", native("inspect_elf32"))


def test_big_endian(native) -> None:
    path = native("inspect_be64")
    info = inspect(path)
    assert (info.bits, info.machine, info.endianness) == (64, "aarch64", "big")
    assert info.find_export("tiny_add").kind == "func"
    assert info.find_export("tiny_counter").size == 4
    # no DF_STATIC_TLS here: only the TPREL64 relocation shows the static TLS
    assert info.hazards.static_tls and "STATIC_TLS" not in info.dynamic_flags
    assert "R_AARCH64_TLS_TPREL" in readelf("-r", "-W", path)


# -- the relib part -----------------------------------------------------------------------


def _rustc_facts() -> tuple[str, str, str]:
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, timeout=60).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines()[1:] if ": " in line)
    return out.splitlines()[0].removeprefix("rustc "), lines["host"], lines["LLVM version"]


def _expected_info(name: str) -> str:
    rustc, host, llvm = _rustc_facts()
    env = dict(build_fixtures.variants()[name].env)
    rustc = env.get("RELIB_RUSTC_VERSION", rustc).replace("{rustc_version}", rustc)
    version, unloading = RELIB_FIXTURES[name]
    fields = [rustc, host, llvm, version]
    if unloading is not None:
        fields.append("1" if unloading else "0")
    return "|".join(fields)


@pytest.mark.parametrize("name", RELIB_PRESENT)
def test_relib_compilation_info(native, name: str) -> None:
    info = inspect(native(name))
    assert info.relib is not None
    ci = info.relib.compilation_info
    assert info.relib.compilation_info_error is None
    assert ci is not None
    assert ci.raw == _expected_info(name)
    version, unloading = RELIB_FIXTURES[name]
    assert ci.relib_version == version and ci.unloading == unloading
    assert ci.generation == abi.generation_for(version).name
    # rust-lld leaves the field 0 and GNU ld writes the addend too, but both
    # carry a RELA entry; packed relocations (RELR) only keep the value in place.
    assert ci.source == ("in-place" if name.endswith("_relr") else "rela")


def _pointer_field(path: Path, info: LibraryInfo) -> int:
    """The 8 bytes at the compilation-info symbol, mapped through PT_LOAD by readelf."""
    sym = info.find_export(abi.COMPILATION_INFO_SYMBOL)
    loads = re.findall(r"^\s+LOAD\s+(0x[0-9a-f]+) (0x[0-9a-f]+) \S+ (0x[0-9a-f]+)",
                       readelf("-l", "-W", path), re.M)
    for off, vaddr, filesz in loads:
        off, vaddr, filesz = int(off, 16), int(vaddr, 16), int(filesz, 16)
        if vaddr <= sym.value < vaddr + filesz:
            with open(path, "rb") as f:
                f.seek(off + sym.value - vaddr)
                return struct.unpack("<Q", f.read(8))[0]
    raise AssertionError("symbol not in a PT_LOAD")


@pytest.mark.parametrize("name, zero_field, in_rela", [("relib_0_7", True, True),
                                                     ("relib_0_7_bfd", False, True),
                                                     ("relib_0_7_relr", False, False)])
def test_linker_layouts_really_differ(native, name: str, zero_field: bool,
                                      in_rela: bool) -> None:
    """The three layouts the reader must handle are what the fixtures produce:
    lld leaves the field 0 with a RELA entry, GNU ld writes the address too,
    RELR keeps only the address in place and packs the relocation."""
    path = native(name)
    info = inspect(path)
    assert (_pointer_field(path, info) == 0) == zero_field
    value = info.find_export(abi.COMPILATION_INFO_SYMBOL).value
    relocs = readelf("-r", "-W", path)
    relative_at_symbol = re.search(rf"^0*{value:x}\s+\S+\s+R_X86_64_RELATIVE\s", relocs, re.M)
    assert (relative_at_symbol is not None) == in_rela
    assert (".relr.dyn" in relocs) == (not in_rela)
    assert info.relib.compilation_info.source == ("rela" if in_rela else "in-place")


@pytest.mark.parametrize("name", RELIB_PRESENT)
def test_relib_symbols_follow_generation(native, name: str) -> None:
    info = inspect(native(name))
    relib = info.relib
    ci = relib.compilation_info
    gen = abi.generation_for(ci.relib_version)
    assert relib.has_main
    defined = {s.name for s in info.exports}
    if ci.unloading_enabled:
        assert {abi.internal_export(s) for s in gen.internal_exports} <= set(
            relib.internal_exports)
        assert set(relib.internal_imports) == {abi.internal_import(s)
                                               for s in gen.internal_imports}
    else:
        assert relib.internal_exports == () and relib.internal_imports == ()
    assert set(relib.internal_exports) == {n for n in defined
                                           if n.startswith(abi.INTERNAL_EXPORT_PREFIX)}
    # every public export is code, every import slot an 8-byte object
    for f in relib.exports:
        assert info.find_export(f.symbol).kind == "func"
    for f in relib.imports:
        sym = info.find_export(f.symbol)
        assert sym.kind == "object" and sym.size == 8
        assert f.trait is not None
    boxed = [f for f in (*relib.exports, *relib.imports) if f.boxed]
    if gen.export_convention == "B":
        assert boxed, "convention B modules box non-primitive returns"
        assert all(f.post_symbol == abi.post_symbol(f.symbol) and f.post_symbol in defined
                   for f in boxed)
    else:
        assert not boxed
    version = abi.parse_relib_version(ci.relib_version)
    if ci.unloading_enabled:
        expected_hooks = {h for h, first in abi.HOOK_SYMBOLS.items() if first <= version}
        assert set(relib.hooks) == expected_hooks
    assert relib.exports_by_trait.get(None, ()) == tuple(
        f for f in relib.exports if f.trait is None)


@pytest.mark.parametrize("name, machine, source", [
    ("inspect_relib_aarch64", "aarch64", "rela"),   # R_AARCH64_RELATIVE addend
    ("inspect_relib_i386", "i386", "in-place"),     # REL: the addend is the field
])
def test_relib_compilation_info_other_machines(native, name: str, machine: str,
                                               source: str) -> None:
    info = inspect(native(name))
    assert info.machine == machine
    ci = info.relib.compilation_info
    assert info.relib.compilation_info_error is None
    assert ci.raw == ("1.95.0 (59807616e 2026-04-14)|x86_64-unknown-linux-gnu|22.1.2|"
                      "0.7.0|1")
    assert ci.source == source and ci.generation == "0.7"
    assert info.find_export(abi.COMPILATION_INFO_SYMBOL).size == 2 * info.bits // 8


def test_relib_without_compilation_info(native) -> None:
    relib = inspect(native("inspect_relib_no_info")).relib
    assert relib is not None and relib.compilation_info is None
    assert relib.compilation_info_error == f"{abi.COMPILATION_INFO_SYMBOL} is not defined"
    assert relib.has_main
    assert [f.symbol for f in relib.exports] == ["__relib__Exports_add", "__relib__main"]
    assert [f.symbol for f in relib.imports] == ["__relib__Imports_log"]


def test_relib_with_undecodable_compilation_info(native) -> None:
    relib = inspect(native("inspect_relib_bad_info")).relib
    assert relib.compilation_info is None
    assert "3 '|'-separated fields" in relib.compilation_info_error
    assert "1.95.0|x86_64|22" in relib.compilation_info_error


def test_relib_compilation_info_length_checked(native, tmp_path: Path) -> None:
    path = native("inspect_relib_bad_info")
    info = inspect(path)
    sym = info.find_export(abi.COMPILATION_INFO_SYMBOL)
    data = bytearray(path.read_bytes())
    loads = re.findall(r"^\s+LOAD\s+(0x[0-9a-f]+) (0x[0-9a-f]+)", readelf("-l", "-W", path),
                       re.M)
    offset = next(int(o, 16) + sym.value - int(v, 16) for o, v in reversed(loads)
                  if int(v, 16) <= sym.value)
    struct.pack_into("<Q", data, offset + 8, 1 << 40)
    patched = tmp_path / "long.so"
    patched.write_bytes(bytes(data))
    relib = inspect(patched).relib
    assert relib.compilation_info is None
    assert "implausible" in relib.compilation_info_error


# -- file-level errors and the two entry points -------------------------------------------


def _error(path: str | Path) -> InspectionError:
    with pytest.raises(InspectionError) as info:
        inspect(path)
    assert info.value.path == str(path)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.so").code == "inspect.not-found"


def test_directory(tmp_path: Path) -> None:
    assert _error(tmp_path).code == "inspect.not-a-file"


def test_fifo_and_device_do_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.so"
    os.mkfifo(fifo)
    assert _error(fifo).code == "inspect.not-a-file"
    assert _error("/dev/null").code == "inspect.not-a-file"


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")
    assert _error(empty).code == "inspect.empty"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(native, tmp_path: Path) -> None:
    copy = tmp_path / "locked.so"
    copy.write_bytes(native("c_plain").read_bytes())
    copy.chmod(0)
    assert _error(copy).code == "inspect.permission"


@pytest.mark.parametrize("head, words", [
    (b"\xcf\xfa\xed\xfe" + bytes(60), "Mach-O"),
    (b"!<arch>\n" + bytes(60), "archive"),
    (b"/* GNU ld script */\nGROUP ( libc.so.6 )\n", "linker script"),
    (b"/* We use a linker script rather than a symlink to work around\n   an ldconfig "
     b"bug. */\nGROUP( libtinfo.so )\n", "linker script"),
    (b"INPUT(libncurses.so.6 -ltinfo)\n", "linker script"),
    (os.urandom(0) + b"\x00\x01random bytes here", "not an ELF or PE"),
])
def test_unknown_formats(tmp_path: Path, head: bytes, words: str) -> None:
    f = tmp_path / "lib.so"
    f.write_bytes(head)
    err = _error(f)
    assert err.code == "inspect.unknown-format"
    assert words in err.message


def _patched(native, tmp_path: Path, offset: int, value: bytes) -> Path:
    data = bytearray(native("c_plain").read_bytes())
    data[offset:offset + len(value)] = value
    out = tmp_path / "patched.so"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("e_type, words", [(1, "relocatable"), (2, "executable"),
                                           (4, "core")])
def test_non_library_elf_types(native, tmp_path: Path, e_type: int, words: str) -> None:
    err = _error(_patched(native, tmp_path, 16, struct.pack("<H", e_type)))
    assert err.code == "inspect.not-a-library"
    assert words in err.message


def test_pie_executable_is_accepted(tmp_path: Path) -> None:
    """PIE executables are ET_DYN: inspected, with their interpreter and PIE flag."""
    true = Path(shutil.which("true") or "/bin/true").resolve()
    if "PIE" not in readelf("-d", true):
        pytest.skip(f"{true} is not a PIE")
    info = inspect(true)
    assert info.interpreter and "PIE" in info.dynamic_flags_1


@pytest.mark.parametrize("cut", [10, 40, 63, 1000])
def test_truncated_elf(native, tmp_path: Path, cut: int) -> None:
    short = tmp_path / "short.so"
    short.write_bytes(native("c_plain").read_bytes()[:cut])
    err = _error(short)
    assert err.code == "inspect.truncated", err


def test_bad_identification(native, tmp_path: Path) -> None:
    err = _error(_patched(native, tmp_path, 4, b"\x07"))
    assert err.code == "inspect.malformed" and "class" in err.message


def test_section_table_beyond_file(native, tmp_path: Path) -> None:
    err = _error(_patched(native, tmp_path, 0x28, struct.pack("<Q", 1 << 40)))
    assert err.code == "inspect.truncated"


def test_inspect_bytes_matches_inspect(native) -> None:
    for name in ("c_plain", "rust_tls"):  # below and above the mmap threshold
        path = native(name)
        from_file = inspect(path)
        from_bytes = inspect_bytes(path.read_bytes(), path=str(path))
        assert from_bytes == from_file
        import hashlib
        assert from_file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_inspect_bytes_default_path_and_errors() -> None:
    with pytest.raises(InspectionError) as e:
        inspect_bytes(b"")
    assert e.value.code == "inspect.empty" and e.value.path == "<bytes>"
    with pytest.raises(InspectionError) as e:
        inspect_bytes(b"\x7fELF\x02\x01\x01" + bytes(9))
    assert e.value.code == "inspect.truncated"


def test_top_level_lazy_export(native) -> None:
    import relib_pure
    assert relib_pure.inspect(native("c_plain")).soname == "libc_plain.so"


# -- the big toolchain library -------------------------------------------------------------


def _rustc_driver() -> Path | None:
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = glob.glob(os.path.join(sysroot, "lib", "librustc_driver-*.so"))
    return Path(found[0]) if found else None


def test_librustc_driver_matches_readelf() -> None:
    path = _rustc_driver()
    if path is None:
        pytest.skip("no librustc_driver in the rust sysroot")
    info = inspect(path)
    assert len(info.exports) > 10_000
    _check_symbols(info, path)
    _check_dynamic(info, path)
    _check_versions(info, path)
    _check_notes_and_comments(info, path)
    _check_segments(info, path)
    _check_static_tls(info, path)
    assert info.relib is None


# -- layouts the fixtures do not show directly ---------------------------------------------


@pytest.mark.parametrize("name, hash_tag", [("c_versioned", "GNU_HASH"),
                                            ("rust_tls", "GNU_HASH"),
                                            ("inspect_elf32", "HASH")])
def test_without_section_headers(native, tmp_path: Path, name: str, hash_tag: str) -> None:
    """sstrip-style files: symbols are found through the dynamic section and
    counted from the (GNU or SysV) hash table, exactly as with section headers."""
    path = native(name)
    original = inspect(path)
    data = bytearray(path.read_bytes())
    if original.bits == 64:
        data[0x28:0x30] = bytes(8)         # e_shoff
        data[0x3C:0x40] = bytes(4)         # e_shnum, e_shstrndx
    else:
        data[0x20:0x24] = bytes(4)
        data[0x30:0x34] = bytes(4)
    stripped = tmp_path / path.name
    stripped.write_bytes(bytes(data))
    info = inspect(stripped)
    tags = {t for t, _ in readelf_dynamic(path)}
    assert hash_tag in tags and (hash_tag == "GNU_HASH" or "GNU_HASH" not in tags)
    assert info.exports == original.exports and info.imports == original.imports
    assert info.version_needs == original.version_needs
    assert info.comments == ()  # .comment is only reachable through section headers


def test_relative_addend_lookup_outside_sorted_block() -> None:
    """Unsorted RELA (no usable DT_RELACOUNT): the aligned search finds the
    entry and ignores a decoy whose bytes match at a misaligned position."""
    from relib_pure.inspection._image import Image
    from relib_pure.inspection.elf_relocs import find_relative_addend, make_table

    target = 0x5000
    decoy = struct.pack("<QQq", 0x100, 8, target)        # addend bytes equal the offset
    entries = [struct.pack("<QQq", 0x9000, 8, 0x10), decoy,
               struct.pack("<QQq", target, 8, 0x1234), struct.pack("<QQq", 0x10, 8, 0x20)]
    blob = b"".join(entries)
    image = Image("synthetic", blob)
    table = make_table(image, 0, len(blob), 64, "<", with_addend=True, entry_size=24,
                       relative_count=0)
    assert find_relative_addend(image, table, target, 64, 8) == 0x1234
    assert find_relative_addend(image, table, 0x7777, 64, 8) is None
    sorted_table = make_table(image, 0, len(blob), 64, "<", with_addend=True,
                              entry_size=24, relative_count=1)
    assert find_relative_addend(image, sorted_table, 0x9000, 64, 8) == 0x10
    with pytest.raises(InspectionError):
        find_relative_addend(image, table, 0x10, 64, 1027)  # not RELATIVE for aarch64


def test_uncommon_machine_is_named(native, tmp_path: Path) -> None:
    info = inspect(_patched(native, tmp_path, 18, struct.pack("<H", 4)))  # EM_68K
    assert info.machine == "68k"


def test_program_header_count_in_section_zero(native, tmp_path: Path) -> None:
    """PN_XNUM: e_phnum 0xffff defers the count to section 0's sh_info."""
    path = native("c_plain")
    data = bytearray(path.read_bytes())
    phnum = struct.unpack_from("<H", data, 0x38)[0]
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<H", data, 0x38, 0xFFFF)
    struct.pack_into("<I", data, shoff + 0x2C, phnum)   # section 0 sh_info
    patched = tmp_path / "xnum.so"
    patched.write_bytes(bytes(data))
    original = inspect(path)
    info = inspect(patched)
    assert info.exports == original.exports and info.build_id == original.build_id


def test_begin_inspect_hashes_in_the_background(native) -> None:
    import hashlib

    from relib_pure.inspection import begin_inspect

    path = native("rust_tls")  # mapped, hashed on the helper thread
    with begin_inspect(path) as pending:
        assert pending.info.sha256 == ""
        assert pending.info.exports  # every other fact is there already
        digest = pending.sha256()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pending.result() == inspect(path)
    with pytest.raises(InspectionError) as e:
        begin_inspect(path.parent / "nope.so")
    assert e.value.code == "inspect.not-found"


def test_symbols_built_without_the_constructor_are_the_same_objects(native, monkeypatch) -> None:
    """The bulk reader fills symbol instances directly (the frozen constructor
    is the hot spot on big libraries); the result must not differ in any way."""
    import dataclasses

    from relib_pure.inspection import elf_symbols
    from relib_pure.model import ImportedSymbol, Symbol

    assert elf_symbols._FAST, "model fields changed: update elf_symbols._FAST's field lists"
    path = native("relib_0_7")
    fast = inspect(path)
    monkeypatch.setattr(elf_symbols, "_FAST", False)
    slow = inspect(path)
    assert fast == slow and hash(fast.exports) == hash(slow.exports)
    for sym in fast.exports:
        assert type(sym) is Symbol and sym == Symbol(**dataclasses.asdict(sym))
        with pytest.raises(dataclasses.FrozenInstanceError):
            sym.name = "x"  # type: ignore[misc]
    for imp in fast.imports:
        assert type(imp) is ImportedSymbol and imp == ImportedSymbol(**dataclasses.asdict(imp))
    assert fast.to_dict() == slow.to_dict()


def test_background_hash_in_chunks_and_abandoned_on_close(native, monkeypatch) -> None:
    import hashlib

    from relib_pure import inspection
    from relib_pure.inspection import begin_inspect

    path = native("rust_tls")
    monkeypatch.setattr(inspection._Hasher, "CHUNK", 4096)   # many chunks, a partial last one
    with begin_inspect(path) as pending:
        assert pending.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    pending = begin_inspect(path)
    pending.close()   # nothing asked for the hash: it is abandoned, the mapping released
    try:
        digest = pending.sha256()   # unless it happened to finish first
    except InspectionError as e:
        assert e.code == "inspect.io" and e.path == str(path)
    else:
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_huge_sparse_file_fails_at_once(native, tmp_path: Path) -> None:
    """The error is known after a few header reads; hashing 64 GB of holes
    first (minutes) would look like a hang."""
    import signal

    sparse = tmp_path / "libsparse.so"
    with open(sparse, "wb") as f:
        f.write(native("c_plain").read_bytes()[:64])   # an ELF header, nothing it points to
        f.truncate(64 << 30)

    def too_slow(signum: int, frame: object) -> None:
        raise TimeoutError("inspect waited for the hash of a file it had already refused")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, 15)
    try:
        with pytest.raises(InspectionError) as e:
            inspect(sparse)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert e.value.path == str(sparse) and e.value.code == "inspect.not-a-library"
