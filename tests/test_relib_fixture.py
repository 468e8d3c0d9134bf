"""The relib fixture module's files look as shared/relib-abi.md says (§1, §2).

* the dynamic symbol set of every variant against the notes' tables (§0, §1), with
  ``readelf``;
* the compilation info, decoded from the file by a small standalone ELF reader
  (RELA with a zero field, bfd with the addend in place, RELR) and cross-checked
  against ``readelf -r``.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_relib_fixture_support import (GENS, IEXP, IIMP, RELIB_VERSION, hooks, internal_exports,
                                        internal_imports, public_exports, public_imports)

# ---------------------------------------------------------------------------------------
# readelf views


def run_readelf(*args: str) -> str:
    return subprocess.run(["readelf", *args], capture_output=True, text=True, check=True).stdout


def section_names(path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)", run_readelf("-S", "-W", str(path)), re.M):
        names[int(m.group(1))] = m.group(2)
    return names


def defined_dynsyms(path: Path) -> dict[str, tuple[str, str, int, str]]:
    """name -> (type, binding, size, section) of every defined .dynsym entry."""
    secs = section_names(path)
    out: dict[str, tuple[str, str, int, str]] = {}
    for line in run_readelf("--dyn-syms", "-W", str(path)).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit() or parts[6] == "UND":
            continue
        size = int(parts[2], 0)
        name = parts[7].split("@")[0]
        sec = secs.get(int(parts[6]), parts[6]) if parts[6].isdigit() else parts[6]
        out[name] = (parts[3], parts[4], size, sec)
    return out


def relib_symbols(syms: dict[str, Any]) -> set[str]:
    return {n for n in syms if n.startswith(("__relib", "__post__relib"))}


BASE = [f"relib_{g}" for g in GENS]


@pytest.mark.parametrize("gen", GENS)
def test_symbol_set_of_each_generation(native: Callable[[str], Path], gen: str) -> None:
    syms = defined_dynsyms(native(f"relib_{gen}"))
    relib = relib_symbols(syms)
    assert {n for n in relib if n.startswith(IEXP)} == internal_exports(gen)
    assert {n for n in relib if n.startswith(IIMP)} == internal_imports(gen)
    assert {n for n in relib if n.startswith(("__relib__Exports_", "__post__relib__Exports_"))} | (
        relib & {"__relib__main", "__relib__before_unload"}) == public_exports(gen)
    assert {n for n in relib if "__relib__Imports_" in n} == public_imports(gen)
    # nothing relib-looking beyond the tables (e.g. no __post__relib__main for a unit main)
    assert relib == (internal_exports(gen) | internal_imports(gen) | public_exports(gen)
                     | public_imports(gen))
    assert {h for h in ("__cxa_thread_atexit_impl", "pthread_create", "mmap64", "munmap",
                        "pthread_key_create", "pthread_key_delete") if h in syms} == hooks(gen)


@pytest.mark.parametrize("gen", GENS)
def test_symbol_kinds_and_sections(native: Callable[[str], Path], gen: str) -> None:
    syms = defined_dynsyms(native(f"relib_{gen}"))
    assert syms["__RELIB__CRATE_COMPILATION_INFO__"] == ("OBJECT", "GLOBAL", 16, ".data.rel.ro")
    for name in internal_exports(gen) | public_exports(gen) | hooks(gen):
        assert syms[name][:2] == ("FUNC", "GLOBAL") and syms[name][3] == ".text", name
    for name in internal_imports(gen) | public_imports(gen):
        assert syms[name] == ("OBJECT", "GLOBAL", 8, ".data"), name


TRACKER_TEXT = b"module allocator was invoked while module was in the process of unloading"


@pytest.mark.parametrize("name", ["relib_0_2_nounload", "relib_0_7_nounload"])
def test_nounload_variants_have_no_internals(native: Callable[[str], Path], name: str) -> None:
    gen = "0_2" if "0_2" in name else "0_7"
    syms = defined_dynsyms(native(name))
    relib = relib_symbols(syms)
    assert not {n for n in relib if n.startswith(("__relib_____Internal",))}
    assert not hooks(gen) & set(syms)
    assert relib == public_exports(gen) | public_imports(gen)
    # no tracker: its lock message (only the tracker uses it) is not in the file
    assert TRACKER_TEXT not in native(name).read_bytes()
    assert TRACKER_TEXT in native(f"relib_{gen}").read_bytes()


@pytest.mark.parametrize("name, boxed_main", [
    ("relib_0_7_ret_heap_main", True), ("relib_0_7_ret_primitive_main", False),
    ("relib_0_7_panic_main", False), ("relib_0_1_8_panic_main", False),
    ("relib_0_7_code_change_a", False),
])
def test_post_main_exists_only_for_boxed_main(native: Callable[[str], Path], name: str,
                                               boxed_main: bool) -> None:
    syms = defined_dynsyms(native(name))
    assert "__relib__main" in syms
    assert ("__post__relib__main" in syms) is boxed_main
    assert "__post__relib__before_unload" not in syms


def variant_cfgs(variant: dict[str, Any]) -> tuple[str, set[str]]:
    """(generation, cfgs) of a fixture.json variant."""
    args = variant["args"]
    cfgs = {args[i + 1] for i, a in enumerate(args) if a == "--cfg"}
    (gen,) = [c.removeprefix("gen_") for c in cfgs if c.startswith("gen_")]
    return gen, cfgs


def fixture_variants() -> list[dict[str, Any]]:
    spec = Path(__file__).resolve().parent.parent / "fixtures" / "relib" / "fixture.json"
    return list(json.loads(spec.read_text())["variants"])


@pytest.mark.parametrize("variant", fixture_variants(), ids=lambda v: v["name"])
def test_symbol_set_of_every_variant(native: Callable[[str], Path], variant: dict[str, Any]) -> None:
    """Scenarios and linkers change no symbol, except a boxed main's __post companion."""
    gen, cfgs = variant_cfgs(variant)
    syms = defined_dynsyms(native(variant["name"]))
    expected = public_exports(gen) | public_imports(gen)
    if "nounload" not in cfgs:
        expected |= internal_exports(gen) | internal_imports(gen)
    if "scenario_ret_heap_main" in cfgs:
        expected.add("__post__relib__main")
    assert relib_symbols(syms) == expected
    present_hooks = {h for h in ("__cxa_thread_atexit_impl", "pthread_create", "mmap64", "munmap",
                                 "pthread_key_create", "pthread_key_delete") if h in syms}
    assert present_hooks == (set() if "nounload" in cfgs else hooks(gen))


# ---------------------------------------------------------------------------------------
# Compilation info, read statically with a standalone reader (§2.3)


class ElfView:
    """Just enough ELF64 little-endian parsing to follow §2.3 by hand."""

    def __init__(self, data: bytes) -> None:
        assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
        self.data = data
        (self.phoff, self.shoff) = struct.unpack_from("<QQ", data, 0x20)
        (self.phentsize, self.phnum, self.shentsize, self.shnum, self.shstrndx) = \
            struct.unpack_from("<HHHHH", data, 0x36)
        self.sections = [struct.unpack_from("<IIQQQQIIQQ", data, self.shoff + i * self.shentsize)
                         for i in range(self.shnum)]
        self.loads = []
        for i in range(self.phnum):
            p_type, _flags, off, vaddr, _pa, filesz, _memsz, _al = struct.unpack_from(
                "<IIQQQQQQ", data, self.phoff + i * self.phentsize)
            if p_type == 1:
                self.loads.append((vaddr, off, filesz))

    def section_of_type(self, sh_type: int) -> tuple | None:
        return next((s for s in self.sections if s[1] == sh_type), None)

    def file_offset(self, vaddr: int) -> int:
        for start, off, size in self.loads:
            if start <= vaddr < start + size:
                return vaddr - start + off
        raise AssertionError(f"vaddr {vaddr:#x} is in no PT_LOAD file range")

    def dynsym(self, wanted: str) -> tuple[int, int, int]:
        """(st_value, st_size, st_info) of a .dynsym entry."""
        dynsym = self.section_of_type(11)
        assert dynsym is not None
        strtab = self.sections[dynsym[6]]
        for i in range(dynsym[5] // 24):
            st_name, st_info, _o, _shn, value, size = struct.unpack_from(
                "<IBBHQQ", self.data, dynsym[4] + i * 24)
            start = strtab[4] + st_name
            name = self.data[start:self.data.index(b"\0", start)].decode()
            if name == wanted:
                return value, size, st_info
        raise AssertionError(f"{wanted} not in .dynsym")

    def rela_addend(self, where: int) -> int | None:
        for s in self.sections:
            if s[1] != 4:  # SHT_RELA
                continue
            for i in range(s[5] // 24):
                r_offset, r_info, r_addend = struct.unpack_from("<QQq", self.data, s[4] + i * 24)
                if r_offset == where:
                    assert r_info & 0xFFFFFFFF == 8, "expected R_X86_64_RELATIVE"
                    return r_addend
        return None

    def relr_covers(self, where: int) -> bool:
        relr = self.section_of_type(19)  # SHT_RELR
        if relr is None:
            return False
        nxt = 0
        for (entry,) in struct.iter_unpack("<Q", self.data[relr[4]:relr[4] + relr[5]]):
            if entry & 1 == 0:
                if entry == where:
                    return True
                nxt = entry + 8
            else:
                for bit in range(1, 64):
                    if entry >> bit & 1 and nxt + 8 * (bit - 1) == where:
                        return True
                nxt += 63 * 8
        return False

    def compilation_info(self) -> tuple[str, dict[str, Any]]:
        value, size, info = self.dynsym("__RELIB__CRATE_COMPILATION_INFO__")
        assert size == 16 and info & 0xF == 1 and info >> 4 == 1  # OBJECT, GLOBAL
        off = self.file_offset(value)
        in_file, length = struct.unpack_from("<QQ", self.data, off)
        addend = self.rela_addend(value)
        how = {"in_file": in_file, "rela_addend": addend, "relr": self.relr_covers(value)}
        target = addend if addend is not None else in_file
        start = self.file_offset(target)
        return self.data[start:start + length].decode(), how


@pytest.fixture(scope="module")
def rustc_fields() -> list[str]:
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines()[1:] if ": " in line)
    return [out.splitlines()[0].removeprefix("rustc "), lines["host"], lines["LLVM version"]]


@pytest.mark.parametrize("gen", GENS)
def test_compilation_info_of_each_generation(native: Callable[[str], Path], gen: str,
                                             rustc_fields: list[str]) -> None:
    text, how = ElfView(native(f"relib_{gen}").read_bytes()).compilation_info()
    expected = [*rustc_fields, RELIB_VERSION[gen]] + ([] if gen == "0_1_8" else ["1"])
    assert text.split("|") == expected
    # rust-lld: RELA with a zero field
    assert how["in_file"] == 0 and how["rela_addend"] and not how["relr"]


@pytest.mark.parametrize("variant", fixture_variants(), ids=lambda v: v["name"])
def test_compilation_info_of_every_variant(native: Callable[[str], Path], variant: dict[str, Any],
                                           rustc_fields: list[str]) -> None:
    """What fixture.json asks for (generation cfg, nounload, env) is what the file says."""
    gen, cfgs = variant_cfgs(variant)
    fields = [variant["env"]["RELIB_RUSTC_VERSION"].replace("{rustc_version}", rustc_fields[0]),
              *rustc_fields[1:], RELIB_VERSION[gen]]
    if gen != "0_1_8":
        fields.append("0" if "nounload" in cfgs else "1")
    text, _ = ElfView(native(variant["name"]).read_bytes()).compilation_info()
    assert text.split("|") == fields


def test_compilation_info_oldrustc(native: Callable[[str], Path], rustc_fields: list[str]) -> None:
    text, _ = ElfView(native("relib_0_7_oldrustc").read_bytes()).compilation_info()
    assert text.split("|") == ["1.80.0 (051478957 2024-07-21)", *rustc_fields[1:], "0.7.0", "1"]
    assert rustc_fields[0] != "1.80.0 (051478957 2024-07-21)"


def readelf_relocation_at(path: Path, vaddr: int) -> tuple[str, str] | None:
    """(section, type) of the dynamic relocation readelf lists at ``vaddr``."""
    section = ""
    for line in run_readelf("-r", "-W", str(path)).splitlines():
        m = re.match(r"Relocation section '([^']+)'", line)
        if m:
            section = m.group(1)
            continue
        parts = line.split()
        if section == ".relr.dyn":
            # readelf lists RELR entries as one address per line (binutils 2.40)
            for p in parts:
                if re.fullmatch(r"[0-9a-f]{16}", p) and int(p, 16) == vaddr:
                    return section, "RELR"
        elif len(parts) >= 3 and re.fullmatch(r"[0-9a-f]{16}", parts[0]) and int(parts[0], 16) == vaddr:
            return section, parts[2]
    return None


@pytest.mark.parametrize("name, linker", [
    ("relib_0_7", "lld"), ("relib_0_7_bfd", "bfd"), ("relib_0_7_relr", "relr"),
])
def test_compilation_info_relocation_kinds(native: Callable[[str], Path], name: str, linker: str,
                                           rustc_fields: list[str]) -> None:
    path = native(name)
    view = ElfView(path.read_bytes())
    text, how = view.compilation_info()
    assert text == "|".join([*rustc_fields, "0.7.0", "1"])
    value = view.dynsym("__RELIB__CRATE_COMPILATION_INFO__")[0]
    found = readelf_relocation_at(path, value)
    comment = run_readelf("-p", ".comment", str(path))
    if linker == "lld":
        assert "Linker: LLD" in comment
        assert how["in_file"] == 0 and how["rela_addend"] and not how["relr"]
        assert found == (".rela.dyn", "R_X86_64_RELATIVE")
    elif linker == "bfd":
        assert "Linker: LLD" not in comment
        assert how["in_file"] != 0 and how["in_file"] == how["rela_addend"]
        assert found == (".rela.dyn", "R_X86_64_RELATIVE")
    else:
        assert how["rela_addend"] is None and how["relr"] and how["in_file"] != 0
        assert found == (".relr.dyn", "RELR")
