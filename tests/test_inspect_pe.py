"""PE reader against ``x86_64-w64-mingw32-objdump -p`` on the MinGW fixture DLL.

Every expected value comes from objdump (or from the fixture's source for the
compilation-info text), never from the reader under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import relib_pure
from relib_pure.errors import InspectionError
from relib_pure.inspection.pe import read_pe

OBJDUMP = "x86_64-w64-mingw32-objdump"
REPO = Path(__file__).resolve().parent.parent
INFO_TEXT = "1.95.0 (59807616e 2026-04-14)|x86_64-pc-windows-gnu|22.1.2|0.7.0|1"

# Skipped only off CI (.ci/run installs MinGW): there the comparisons must run.
pytestmark = pytest.mark.skipif(shutil.which(OBJDUMP) is None and not os.environ.get("CI"),
                                reason=f"{OBJDUMP} missing")


@dataclass
class Section:
    name: str
    vma: int
    size: int
    file_offset: int


@dataclass
class ObjdumpPE:
    """What ``objdump -p -h`` says about a PE file."""

    characteristics: int = 0
    dll_characteristics: int = 0
    image_base: int = 0
    subsystem: int = 0
    magic: int = 0
    exports: dict[int, tuple[str | None, int, str | None]] = field(default_factory=dict)
    imports: dict[str, list[tuple[str | None, int | None]]] = field(default_factory=dict)
    # dll -> (hint table rva, first thunk rva)
    thunks: dict[str, tuple[int, int]] = field(default_factory=dict)
    dll_name: str | None = None
    sections: list[Section] = field(default_factory=list)

    def offset_of(self, rva: int) -> int:
        for s in self.sections:
            start = s.vma - self.image_base
            if start <= rva < start + s.size:
                return s.file_offset + rva - start
        raise AssertionError(f"rva 0x{rva:x} in no section")


def objdump(path: Path) -> ObjdumpPE:
    text = subprocess.run([OBJDUMP, "-p", "-h", str(path)], capture_output=True, text=True,
                          check=True).stdout
    out = ObjdumpPE()
    out.characteristics = int(re.search(r"^Characteristics 0x([0-9a-f]+)", text, re.M)[1], 16)
    out.dll_characteristics = int(re.search(r"^DllCharacteristics\s+([0-9a-f]+)", text,
                                            re.M)[1], 16)
    out.image_base = int(re.search(r"^ImageBase\s+([0-9a-f]+)", text, re.M)[1], 16)
    out.subsystem = int(re.search(r"^Subsystem\s+([0-9a-f]+)", text, re.M)[1], 16)
    out.magic = int(re.search(r"^Magic\s+([0-9a-f]+)", text, re.M)[1], 16)
    name = re.search(r"^Name\s+[0-9a-f]+ (\S+)", text, re.M)
    out.dll_name = name[1] if name else None
    base = int(re.search(r"Export Address Table -- Ordinal Base (\d+)", text)[1])
    index_to_ordinal: dict[int, int] = {}
    for m in re.finditer(r"^\t\[\s*(\d+)\] \+base\[\s*(\d+)\] ([0-9a-f]+) (Export|Forwarder)"
                         r" RVA(?: -- (\S+))?", text, re.M):
        ordinal = int(m[2])
        index_to_ordinal[int(m[1])] = ordinal
        out.exports[ordinal] = (None, int(m[3], 16), m[5])
    table = text.split("[Ordinal/Name Pointer] Table", 1)[1]
    for m in re.finditer(r"^\t\[\s*(\d+)\] (\S+)$", table, re.M):
        ordinal = index_to_ordinal.get(int(m[1]), int(m[1]) + base)
        if ordinal not in out.exports:
            continue  # objdump lists no address-table row for an address of 0
        _, rva, fwd = out.exports[ordinal]
        out.exports[ordinal] = (m[2], rva, fwd)
    imports = text.split("The Import Tables", 1)[1].split("There is an export table", 1)[0]
    pending: tuple[int, int] | None = None
    current: str | None = None
    for line in imports.splitlines():
        row = re.match(r"^ [0-9a-f]{8}\t([0-9a-f]{8}) [0-9a-f]{8} [0-9a-f]{8} [0-9a-f]{8} "
                       r"([0-9a-f]{8})", line)
        if row:
            pending = (int(row[1], 16), int(row[2], 16))
            continue
        dll = re.match(r"^\tDLL Name: (\S+)", line)
        if dll:
            current = dll[1]
            out.imports[current] = []
            assert pending is not None
            out.thunks[current] = pending
            continue
        member = re.match(r"^\t([0-9a-f]+)\t\s*(\d+)\s+(\S+)", line)
        if member and current:
            if member[3] == "<none>":
                out.imports[current].append((None, int(member[2])))
            else:
                out.imports[current].append((member[3], None))
    for m in re.finditer(r"^\s+\d+ (\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)",
                         text, re.M):
        out.sections.append(Section(m[1], int(m[3], 16), int(m[2], 16), int(m[4], 16)))
    return out


@pytest.fixture(scope="module")
def dll(native) -> Path:
    return native("pe_dll")


@pytest.fixture(scope="module")
def dumped(dll: Path) -> ObjdumpPE:
    return objdump(dll)


def read(path: Path) -> relib_pure.LibraryInfo:
    return read_pe(str(path), path.read_bytes())


def test_headers_match_objdump(dll: Path, dumped: ObjdumpPE) -> None:
    info = read(dll)
    assert (info.format, info.machine, info.os, info.endianness) == (
        "pe", "x86_64", "windows", "little")
    assert info.bits == (64 if dumped.magic == 0x20B else 32)
    assert info.pe is not None
    assert info.pe.image_base == dumped.image_base
    assert info.pe.dll_name == dumped.dll_name == "pe_dll.dll"
    assert info.soname == "pe_dll.dll"
    # objdump prints the raw subsystem number: 3 is the console subsystem
    assert dumped.subsystem == 3 and info.pe.subsystem == "WINDOWS_CUI"
    assert "DLL" in info.pe.characteristics and dumped.characteristics & 0x2000
    assert ("LARGE_ADDRESS_AWARE" in info.pe.characteristics) == bool(
        dumped.characteristics & 0x20)
    for bit, name in ((0x20, "HIGH_ENTROPY_VA"), (0x40, "DYNAMIC_BASE"), (0x100, "NX_COMPAT")):
        assert (name in info.pe.dll_characteristics) == bool(dumped.dll_characteristics & bit)
    assert info.file_size == dll.stat().st_size


def test_exports_match_objdump(dll: Path, dumped: ObjdumpPE) -> None:
    info = read(dll)
    assert info.pe is not None
    got = {e.ordinal: (e.name, e.rva, e.forwarder) for e in info.pe.exports}
    assert got == dumped.exports
    by_name = {e.name: e for e in info.pe.exports}
    assert by_name["pe_add"].ordinal == 1
    assert by_name["pe_forwarded_sleep"].forwarder == "kernel32.Sleep"
    assert "pe_café" in by_name  # a UTF-8 name
    ordinal_only = sorted(e.ordinal for e in info.pe.exports if e.name is None)
    assert ordinal_only == [20, 21]
    assert info.export_names() == {n for n, _, _ in dumped.exports.values() if n}


def test_imports_match_objdump(dll: Path, dumped: ObjdumpPE) -> None:
    info = read(dll)
    assert info.pe is not None
    got: dict[str, list[tuple[str | None, int | None]]] = {}
    for imp in info.pe.imports:
        got.setdefault(imp.dll, []).append((imp.name, imp.ordinal))
    assert got == dumped.imports
    assert info.needed == tuple(dumped.imports)
    assert {d.lower() for d in info.needed} >= {"kernel32.dll", "msvcrt.dll", "ws2_32.dll",
                                                 "user32.dll"}


def test_import_by_ordinal(dll: Path, dumped: ObjdumpPE, tmp_path: Path) -> None:
    """Rewrite WS2_32's thunk to an ordinal import (as ws2_32.lib does for old
    entry points) and compare with objdump again."""
    data = bytearray(dll.read_bytes())
    hint_table, first_thunk = dumped.thunks["WS2_32.dll"]
    for rva in (hint_table, first_thunk):
        struct.pack_into("<Q", data, dumped.offset_of(rva), (1 << 63) | 9)
    patched = tmp_path / "ordinal_import.dll"
    patched.write_bytes(bytes(data))
    info = read(patched)
    assert info.pe is not None
    ws2 = [(i.name, i.ordinal) for i in info.pe.imports if i.dll == "WS2_32.dll"]
    assert ws2 == objdump(patched).imports["WS2_32.dll"] == [(None, 9)]


def test_compilation_info_from_base_relocation(dll: Path) -> None:
    info = read(dll)
    assert info.relib is not None
    ci = info.relib.compilation_info
    assert info.relib.compilation_info_error is None
    assert ci is not None
    assert ci.raw == INFO_TEXT
    assert (ci.rustc_version, ci.host_triple, ci.llvm_version, ci.relib_version) == (
        "1.95.0 (59807616e 2026-04-14)", "x86_64-pc-windows-gnu", "22.1.2", "0.7.0")
    assert ci.unloading is True
    assert ci.generation == "0.7"
    assert ci.source == "pe-basereloc"


def _info_export_rva(dll: Path) -> int:
    info = read(dll)
    assert info.pe is not None
    return next(e.rva for e in info.pe.exports
                if e.name == "__RELIB__CRATE_COMPILATION_INFO__")


def test_compilation_info_without_relocation(dll: Path, dumped: ObjdumpPE,
                                             tmp_path: Path) -> None:
    """A DLL linked without relocations keeps the preferred-base pointer: still
    decoded, but reported as an in-place value."""
    data = bytearray(dll.read_bytes())
    rva = _info_export_rva(dll)
    reloc_rva = next(s.vma - dumped.image_base for s in dumped.sections if s.name == ".reloc")
    pos = dumped.offset_of(reloc_rva)
    found = False
    while True:
        page, size = struct.unpack_from("<II", data, pos)
        if size == 0:
            break
        for i in range((size - 8) // 2):
            entry_at = pos + 8 + 2 * i
            (entry,) = struct.unpack_from("<H", data, entry_at)
            if entry >> 12 == 10 and page + (entry & 0xFFF) == rva:
                struct.pack_into("<H", data, entry_at, 0)  # IMAGE_REL_BASED_ABSOLUTE: padding
                found = True
        pos += size
    assert found, "fixture has no DIR64 relocation on the compilation info"
    patched = tmp_path / "noreloc.dll"
    patched.write_bytes(bytes(data))
    ci = read(patched).relib.compilation_info  # type: ignore[union-attr]
    assert ci is not None and ci.raw == INFO_TEXT and ci.source == "in-place"


def test_compilation_info_bad_pointer_is_reported_not_raised(dll: Path, dumped: ObjdumpPE,
                                                             tmp_path: Path) -> None:
    data = bytearray(dll.read_bytes())
    struct.pack_into("<Q", data, dumped.offset_of(_info_export_rva(dll)), 0x10)
    patched = tmp_path / "badptr.dll"
    patched.write_bytes(bytes(data))
    relib = read(patched).relib
    assert relib is not None and relib.compilation_info is None
    assert "below the image base" in (relib.compilation_info_error or "")


def test_relib_symbols_classified(dll: Path) -> None:
    relib = read(dll).relib
    assert relib is not None
    assert relib.has_main and not relib.has_before_unload
    exports = {f.symbol: f for f in relib.exports}
    assert set(exports) == {"__relib__main", "__relib__Exports_foo"}
    foo = exports["__relib__Exports_foo"]
    assert (foo.trait, foo.name, foo.boxed, foo.post_symbol) == (
        "Exports", "foo", True, "__post__relib__Exports_foo")
    assert not exports["__relib__main"].boxed
    # the slot is data (in .data), so it is an import, not an export
    assert [(f.symbol, f.trait, f.name) for f in relib.imports] == [
        ("__relib__Imports_bar", "Imports", "bar")]
    assert relib.internal_exports == ("__relib_____Internal___Exports____init",)


def test_public_inspect_dispatches_to_pe(dll: Path) -> None:
    info = relib_pure.inspect(dll)
    assert info.format == "pe"
    assert info.pe is not None and info.pe.exports == read(dll).pe.exports  # type: ignore[union-attr]


def test_exe_is_refused(tmp_path: Path) -> None:
    gcc = "x86_64-w64-mingw32-gcc"
    if shutil.which(gcc) is None:
        pytest.skip(f"{gcc} missing")
    src = tmp_path / "main.c"
    src.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "prog.exe"
    subprocess.run([gcc, "-O1", "-o", str(exe), str(src)], check=True)
    with pytest.raises(InspectionError) as err:
        read(exe)
    assert err.value.code == "inspect.not-a-library"
    assert err.value.path == str(exe)
    assert "EXE" in err.value.message


def test_cli_json_validates_against_schema(dll: Path, dumped: ObjdumpPE, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from importlib import resources

    import jsonschema

    from relib_pure.cli.main import main

    # with an ordinal import too, so both import shapes go through the schema
    data = bytearray(dll.read_bytes())
    for rva in dumped.thunks["WS2_32.dll"]:
        struct.pack_into("<Q", data, dumped.offset_of(rva), (1 << 63) | 9)
    patched = tmp_path / "ordinal_import.dll"
    patched.write_bytes(bytes(data))
    schema = json.loads(resources.files("relib_pure").joinpath("schemas/inspect.json")
                        .read_text())
    capsys.readouterr()
    assert main(["inspect", "--json", str(dll), str(patched)]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schema)
    assert doc["version"] == 1
    libs = {lib["path"]: lib for lib in doc["libraries"]}
    assert libs[str(dll)]["pe"]["exports"][0] == {"ordinal": 1, "name": "pe_add",
                                                 "rva": dumped.exports[1][1], "forwarder": None}
    assert {"dll": "WS2_32.dll", "name": None, "ordinal": 9} in libs[str(patched)]["pe"]["imports"]


def test_dll_that_looks_packed_to_pefile_is_valid(native) -> None:
    """Only LoadLibraryA and GetProcAddress imported (no C runtime): pefile's
    packer heuristic warns, but the DLL is fine and must be read."""
    path = native("pe_dll_minimal")
    dumped = objdump(path)
    info = read(path)
    assert info.pe is not None and info.relib is None
    assert [(i.dll, i.name, i.ordinal) for i in info.pe.imports] == [
        (dll, name, ordinal) for dll, names in dumped.imports.items() for name, ordinal in names]
    assert {i.name for i in info.pe.imports} == {"LoadLibraryA", "GetProcAddress"}
    assert [(e.ordinal, e.name) for e in info.pe.exports] == [
        (o, n) for o, (n, _, _) in sorted(dumped.exports.items())] == [(1, "minimal_tick")]


def test_dll_with_more_imports_than_pefiles_default_cap(native) -> None:
    """9,000 imports from one DLL (pefile stops at 8,192 by default and warns
    "Excessive number of imports"): a valid MinGW DLL, read whole, both ways."""
    path = native("pe_many_imports")
    dumped = objdump(path)
    many = dumped.imports["pe_many_exports.dll"]
    assert len(many) == 9000
    info = relib_pure.inspect(path)
    assert info.pe is not None
    assert [(i.dll, i.name, i.ordinal) for i in info.pe.imports] == [
        (dll, name, ordinal) for dll, names in dumped.imports.items() for name, ordinal in names]
    assert sum(i.dll == "pe_many_exports.dll" for i in info.pe.imports) == 9000
    exporter = relib_pure.inspect(native("pe_many_exports"))
    assert exporter.pe is not None and len(exporter.pe.exports) == 9000
    import pefile
    assert pefile.MAX_IMPORT_SYMBOLS == 0x2000  # the module global is restored


def test_named_export_with_null_address_is_dropped(dll: Path, dumped: ObjdumpPE,
                                                   tmp_path: Path) -> None:
    """An address-table entry of 0 means "not exported" (pefile and objdump skip
    it); the reader drops that name and keeps every other export."""
    info = read(dll)
    assert info.pe is not None
    mul = next(e for e in info.pe.exports if e.name == "pe_mul")
    data = bytearray(dll.read_bytes())
    eat = re.search(r"Table Addresses\n\s+Export Address Table\s+([0-9a-f]+)",
                    subprocess.run([OBJDUMP, "-p", str(dll)], capture_output=True, text=True,
                                   check=True).stdout)
    assert eat
    struct.pack_into("<I", data, dumped.offset_of(int(eat[1], 16) + 4 * (mul.ordinal - 1)), 0)
    patched = tmp_path / "null_export.dll"
    patched.write_bytes(bytes(data))
    got = read(patched).pe
    assert got is not None
    assert [e for e in got.exports if e.name == "pe_mul"] == []
    assert {e.ordinal: (e.name, e.rva, e.forwarder) for e in got.exports} == \
        objdump(patched).exports
    assert len(got.exports) == len(info.pe.exports) - 1


@pytest.mark.parametrize("value,machine", [(0xAA64, "aarch64"), (0x8664, "x86_64")])
def test_machine_field_is_mapped(dll: Path, tmp_path: Path, value: int, machine: str) -> None:
    data = bytearray(dll.read_bytes())
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    struct.pack_into("<H", data, lfanew + 4, value)
    patched = tmp_path / "machine.dll"
    patched.write_bytes(bytes(data))
    info = read(patched)
    assert info.pe is not None
    assert (info.machine, info.pe.machine, info.bits) == (machine, machine, 64)


@pytest.fixture(scope="module")
def pe32_dll(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fixtures/pe/pe32.c`` as a PE32 DLL (see that file for why it is built here)."""
    gcc, ld = "x86_64-w64-mingw32-gcc", "x86_64-w64-mingw32-ld"
    if shutil.which(gcc) is None or shutil.which(ld) is None:
        pytest.skip("MinGW gcc/ld missing")
    out = tmp_path_factory.mktemp("pe32")
    verbose = subprocess.run([ld, "-m", "i386pep", "--verbose"], capture_output=True,
                             text=True).stdout
    script = verbose.split("=" * 50)[1]
    (out / "i386pe.x").write_text(script.replace("pei-x86-64", "pei-i386")
                                  .replace("i386:x86-64", "i386"))
    steps = [
        [gcc, "-m32", "-O1", "-c", str(REPO / "fixtures" / "pe" / "pe32.c"), "-o",
         str(out / "pe32.o")],
        [ld, "-m", "i386pe", "-T", str(out / "i386pe.x"), "--dll", "--dynamicbase",
         "-e", "_DllMainCRTStartup@12", str(out / "pe32.o"), "-o", str(out / "pe32.dll")],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot build a PE32 DLL here: {r.stderr.strip()[:300]}")
    return out / "pe32.dll"


def test_pe32_dll(pe32_dll: Path) -> None:
    dumped = objdump(pe32_dll)
    assert dumped.magic == 0x10B  # objdump agrees it is PE32
    info = read(pe32_dll)
    assert (info.machine, info.bits, info.format) == ("i386", 32, "pe")
    assert info.pe is not None
    assert "32BIT_MACHINE" in info.pe.characteristics
    assert info.pe.image_base == dumped.image_base
    assert {e.ordinal: (e.name, e.rva, e.forwarder) for e in info.pe.exports} == dumped.exports
    assert info.pe.imports == () and info.needed == ()
    assert info.relib is not None and info.relib.has_main
    ci = info.relib.compilation_info
    assert ci is not None and ci.source == "pe-basereloc"  # a HIGHLOW relocation
    assert ci.raw == "1.95.0 (59807616e 2026-04-14)|i686-pc-windows-gnu|22.1.2|0.7.0|1"
    assert ci.host_triple == "i686-pc-windows-gnu"


def _code_ranges(path: Path, image_base: int) -> list[tuple[int, int]]:
    """RVA ranges of the sections objdump flags CODE."""
    text = subprocess.run([OBJDUMP, "-h", str(path)], capture_output=True, text=True,
                          check=True).stdout
    ranges = []
    for m in re.finditer(r"^\s*\d+ (\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s.*\n\s+(.*)$", text, re.M):
        if "CODE" in m[4].split(", "):
            start = int(m[3], 16) - image_base
            ranges.append((start, start + int(m[2], 16)))
    return ranges


def test_exports_and_imports_have_the_elf_shape(dll: Path, dumped: ObjdumpPE) -> None:
    """``info.exports``/``info.imports`` hold a DLL's symbols as for ELF."""
    info = read(dll)
    code = _code_ranges(dll, dumped.image_base)
    assert code
    named = {o: (n, rva, fwd) for o, (n, rva, fwd) in dumped.exports.items() if n}
    assert {s.ordinal: s.name for s in info.exports} == {o: v[0] for o, v in named.items()}
    for sym in info.exports:
        name, rva, fwd = named[sym.ordinal]
        assert sym.value == rva and sym.binding == "global" and sym.version is None
        if fwd:
            assert sym.kind == "forwarder"
        else:
            in_code = any(lo <= rva < hi for lo, hi in code)
            assert sym.kind == ("func" if in_code else "object"), (name, sym.kind)
    kinds = {s.name: s.kind for s in info.exports}
    assert (kinds["pe_add"], kinds["pe_exported_counter"], kinds["pe_forwarded_sleep"]) == \
        ("func", "object", "forwarder")
    assert info.find_export("pe_add") is not None
    got: dict[str, list[tuple[str | None, int | None]]] = {}
    for imp in info.imports:
        assert imp.library is not None and not imp.weak
        assert imp.name == (f"#{imp.ordinal}" if imp.ordinal is not None else imp.name)
        got.setdefault(imp.library, []).append(
            (None if imp.ordinal is not None else imp.name, imp.ordinal))
    assert got == dumped.imports


def test_check_names_dll_imports_and_exports(native, capsys) -> None:
    """A plain DLL's references are checked by name like an ELF library's."""
    from relib_pure.cli.main import main

    path = str(native("pe_dll_minimal"))
    capsys.readouterr()
    code = main(["check", path, "--json", "--exports", "no_such_export",
                 "--imports", "GetProcAddress,NotImportedAtAll"])
    doc = json.loads(capsys.readouterr().out)
    by_code = {f["code"]: f for f in doc["findings"]}
    assert code == 1
    assert by_code["interface.missing-export"]["details"]["missing"] == ["no_such_export"]
    assert by_code["interface.missing-import"]["details"]["missing"] == ["NotImportedAtAll"]


def test_json_exports_of_a_dll_are_filled(dll: Path, capsys) -> None:
    from importlib import resources

    import jsonschema

    from relib_pure.cli.main import main

    capsys.readouterr()
    assert main(["inspect", "--json", str(dll)]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, json.loads(resources.files("relib_pure")
                                        .joinpath("schemas/inspect.json").read_text()))
    (lib,) = doc["libraries"]
    assert [(s["name"], s["ordinal"]) for s in lib["exports"]] == \
        [(e["name"], e["ordinal"]) for e in lib["pe"]["exports"] if e["name"]]
    assert len(lib["imports"]) == len(lib["pe"]["imports"]) > 0
    assert {i["library"] for i in lib["imports"]} == set(lib["needed"])
