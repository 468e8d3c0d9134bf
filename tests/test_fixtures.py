"""Each non-relib inspection fixture really has the property it exists for.

The inspector's tests trust these libraries to carry a NODELETE flag, a GNU
unique symbol, static TLS... This file checks that with binutils' readelf
(independent of relib_pure, which is what the fixtures are meant to test) and,
where a property is behaviour rather than bytes, by running the library in a
child interpreter through ctypes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("readelf") is None and not os.environ.get("CI"),
                                reason="binutils readelf is not installed")

NativeFn = Callable[[str], Path]

#: Every fixture this part of the suite owns, by the folder that declares it.
OWN_FIXTURES = {
    "c": {"c_plain", "c_nodelete", "c_static_tls", "c_versioned", "c_initfini"},
    "cxx": {"cxx_unique"},
    "rust": {"rust_plain", "rust_tls"},
    "cross": {"cross_foreign"},
}
HOST_FIXTURES = sorted(set().union(*OWN_FIXTURES.values()) - {"cross_foreign"})

STB_GNU_UNIQUE_NAME = "UNIQUE"  # readelf's name for binding 10 (STB_LOOS)


# --- readelf adapters -------------------------------------------------------

def readelf(path: Path, *options: str) -> str:
    r = subprocess.run(["readelf", "-W", *options, str(path)], capture_output=True,
                       text=True, env={**os.environ, "LC_ALL": "C"}, timeout=60)
    assert r.returncode == 0, f"readelf {' '.join(options)} {path} failed: {r.stderr}"
    return r.stdout


@dataclass(frozen=True)
class DynSym:
    name: str       # with @VERSION / @@VERSION when versioned
    size: int
    type: str
    bind: str
    vis: str
    ndx: str

    @property
    def defined(self) -> bool:
        return self.ndx != "UND"


_DYNSYM = re.compile(r"^\s*\d+:\s+[0-9a-f]+\s+(\d+|0x[0-9a-f]+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)"
                     r"\s+(\S+)")


def dynsyms(path: Path) -> dict[str, DynSym]:
    found: dict[str, DynSym] = {}
    for line in readelf(path, "--dyn-syms").splitlines():
        m = _DYNSYM.match(line)
        if m:
            size, typ, bind, vis, ndx, name = m.groups()
            found[name] = DynSym(name, int(size, 0), typ, bind, vis, ndx)
    return found


def dynamic_tags(path: Path) -> dict[str, list[str]]:
    """``TAG -> [value text, ...]`` from ``readelf -d``."""
    tags: dict[str, list[str]] = {}
    for line in readelf(path, "-d").splitlines():
        m = re.match(r"^\s*0x[0-9a-f]+\s+\((\w+)\)\s+(.*)$", line)
        if m:
            tags.setdefault(m[1], []).append(m[2].strip())
    return tags


def segments(path: Path) -> dict[str, list[tuple[int, int]]]:
    """``TYPE -> [(filesz, memsz), ...]`` from the program headers."""
    out: dict[str, list[tuple[int, int]]] = {}
    for line in readelf(path, "-l").splitlines():
        m = re.match(r"^\s+([A-Z_]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+"
                     r"(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", line)
        if m:
            out.setdefault(m[1], []).append((int(m[2], 16), int(m[3], 16)))
    return out


def header(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in readelf(path, "-h").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def run_ctypes(lib: Path, body: str) -> dict[str, object]:
    """Run ``body`` in a fresh interpreter with ``lib`` loaded as ``lib``; it
    must ``print(json.dumps(...))`` one result line. A child process keeps
    libraries out of the test process, which other suites inspect for mappings."""
    script = "import ctypes, json\nlib = ctypes.CDLL(%r)\n" % str(lib) + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"child failed ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- declarations and the common shape -------------------------------------

def test_every_owned_fixture_is_declared_in_its_folder(repo_root: Path) -> None:
    for folder, names in OWN_FIXTURES.items():
        spec = json.loads((repo_root / "fixtures" / folder / "fixture.json").read_text())
        declared = {v["name"] for v in spec["variants"]}
        assert names <= declared, f"fixtures/{folder} lacks {sorted(names - declared)}"


@pytest.mark.parametrize("name", HOST_FIXTURES)
def test_host_fixture_is_an_x86_64_shared_object(native: NativeFn, name: str) -> None:
    h = header(native(name))
    assert h["Class"] == "ELF64"
    assert h["Machine"] == "Advanced Micro Devices X86-64"
    assert h["Type"].startswith("DYN")


# --- C ----------------------------------------------------------------------

def test_c_plain_exports_and_hides_what_its_source_says(native: NativeFn) -> None:
    lib = native("c_plain")
    syms = dynsyms(lib)
    for fn in ("plain_add", "plain_mul", "plain_bump", "plain_scale", "plain_use_helper"):
        assert syms[fn].defined and (syms[fn].type, syms[fn].bind) == ("FUNC", "GLOBAL")
    assert (syms["plain_weak"].type, syms["plain_weak"].bind) == ("FUNC", "WEAK")
    assert syms["plain_counter"].type == "OBJECT" and syms["plain_counter"].size == 4
    assert syms["plain_name"].size == len("plain") + 1
    assert "plain_hidden" not in syms and "helper" not in syms
    assert dynamic_tags(lib)["SONAME"] == ["Library soname: [libc_plain.so]"]


def test_c_nodelete_has_df_1_nodelete_and_c_plain_does_not(native: NativeFn) -> None:
    flags_1 = dynamic_tags(native("c_nodelete"))["FLAGS_1"]
    assert any("NODELETE" in f.split() for f in flags_1), flags_1
    plain = dynamic_tags(native("c_plain"))
    assert not any("NODELETE" in f for f in plain.get("FLAGS_1", []))


def test_c_static_tls_has_static_tls_flag_and_tpoff_relocation(native: NativeFn) -> None:
    lib = native("c_static_tls")
    assert "STATIC_TLS" in dynamic_tags(lib)["FLAGS"][0].split()
    relocs = [line for line in readelf(lib, "-r").splitlines() if "static_tls_counter" in line]
    assert any("R_X86_64_TPOFF64" in line for line in relocs), relocs
    sym = dynsyms(lib)["static_tls_counter"]
    assert (sym.type, sym.size) == ("TLS", 4)
    assert [memsz for _, memsz in segments(lib)["TLS"]] == [4]
    assert "STATIC_TLS" not in " ".join(dynamic_tags(native("c_plain")).get("FLAGS", []))


def test_c_static_tls_variable_is_per_thread(native: NativeFn) -> None:
    out = run_ctypes(native("c_static_tls"), """
        import threading
        main = [lib.static_tls_bump() for _ in range(3)][-1]
        seen = []
        t = threading.Thread(target=lambda: seen.append(lib.static_tls_bump()))
        t.start(); t.join()
        print(json.dumps({"main": main, "thread": seen[0], "after": lib.static_tls_get()}))
    """)
    assert out == {"main": 3, "thread": 1, "after": 3}


def test_c_versioned_has_default_and_hidden_versions(native: NativeFn) -> None:
    lib = native("c_versioned")
    syms = dynsyms(lib)
    defined = {n for n, s in syms.items() if s.defined}
    assert {"vers_get@VERS_1", "vers_get@@VERS_2", "vers_only_v1@@VERS_1",
            "vers_only_v2@@VERS_2", "vers_len@@VERS_1"} <= defined
    # the plain implementation names stay local under the version script's `local: *`
    assert not {"vers_get_v1", "vers_get_v2", "vers_get"} & set(syms)
    assert not syms["strlen@GLIBC_2.2.5"].defined

    versions = readelf(lib, "-V")
    assert re.search(r"Index: 2\s+Cnt: 1\s+Name: VERS_1", versions)
    assert re.search(r"Index: 3\s+Cnt: 2\s+Name: VERS_2\s+\S+\s+Parent 1: VERS_1", versions)
    # the old version is hidden: .gnu.version marks its index with 'h'
    assert "2h(VERS_1)" in versions
    assert re.search(r"File: libc\.so\.6.*\n.*Name: GLIBC_2\.2\.5", versions)


def test_c_versioned_binds_unversioned_lookups_to_the_default(native: NativeFn) -> None:
    out = run_ctypes(native("c_versioned"), """
        print(json.dumps({"get": lib.vers_get(), "v1": lib.vers_only_v1(),
                          "v2": lib.vers_only_v2()}))
    """)
    assert out == {"get": 2, "v1": 10, "v2": 20}


def test_c_initfini_has_init_and_fini_arrays(native: NativeFn) -> None:
    lib = native("c_initfini")
    tags = dynamic_tags(lib)
    for tag in ("INIT_ARRAY", "FINI_ARRAY", "INIT", "FINI"):
        assert tag in tags, tag
    # at least the attribute's and the hand-placed entry (crtbegin may add its own)
    for tag in ("INIT_ARRAYSZ", "FINI_ARRAYSZ"):
        (size,) = tags[tag]
        assert int(size.split()[0]) >= 2 * 8, (tag, size)
    section_lines = readelf(lib, "-S")
    assert re.search(r"\.init_array\s+INIT_ARRAY", section_lines)
    assert re.search(r"\.fini_array\s+FINI_ARRAY", section_lines)


def test_c_initfini_constructors_both_run_at_load(native: NativeFn) -> None:
    out = run_ctypes(native("c_initfini"), """
        print(json.dumps({"ctor": lib.initfini_ctor_count(), "dtor": lib.initfini_dtor_count()}))
    """)
    # 1 from __attribute__((constructor)), 10 from the .init_array entry
    assert out == {"ctor": 11, "dtor": 0}


# --- C++ --------------------------------------------------------------------

def test_cxx_unique_has_gnu_unique_objects(native: NativeFn) -> None:
    syms = dynsyms(native("cxx_unique"))
    unique = {n for n, s in syms.items() if s.bind == STB_GNU_UNIQUE_NAME}
    # unique_counter()::counter and UniqueBox<long>::value
    assert unique == {"_ZZ14unique_countervE7counter", "_ZN9UniqueBoxIlE5valueE"}
    assert all(syms[n].type == "OBJECT" and syms[n].defined for n in unique)
    assert syms["unique_bump"].type == "FUNC"


@pytest.mark.parametrize("name", ["c_plain", "rust_plain"])
def test_other_fixtures_have_no_gnu_unique_symbol(native: NativeFn, name: str) -> None:
    assert not [s for s in dynsyms(native(name)).values() if s.bind == STB_GNU_UNIQUE_NAME]


# --- Rust -------------------------------------------------------------------

def test_rust_plain_exports_its_functions_and_statics(native: NativeFn) -> None:
    lib = native("rust_plain")
    syms = dynsyms(lib)
    for fn in ("rust_plain_add", "rust_plain_mul", "rust_plain_sum", "rust_plain_calls"):
        assert syms[fn].defined and (syms[fn].type, syms[fn].bind) == ("FUNC", "GLOBAL")
    assert (syms["RUST_PLAIN_MAGIC"].type, syms["RUST_PLAIN_MAGIC"].size) == ("OBJECT", 4)
    assert (syms["RUST_PLAIN_CALLS"].type, syms["RUST_PLAIN_CALLS"].size) == ("OBJECT", 8)
    assert not [n for n in syms if "relib" in n.lower()]
    assert "rustc version 1." in readelf(lib, "-p", ".comment")
    # rustc links cdylibs with -z now
    assert "BIND_NOW" in dynamic_tags(lib)["FLAGS"][0]


def test_rust_plain_functions_compute(native: NativeFn) -> None:
    out = run_ctypes(native("rust_plain"), """
        lib.rust_plain_mul.restype = ctypes.c_double
        lib.rust_plain_mul.argtypes = [ctypes.c_double, ctypes.c_double]
        lib.rust_plain_sum.restype = ctypes.c_uint64
        lib.rust_plain_sum.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.rust_plain_calls.restype = ctypes.c_uint64
        res = [lib.rust_plain_add(2, 40), lib.rust_plain_mul(1.5, 4.0),
               lib.rust_plain_sum(b"\\x01\\x02\\xff", 3), lib.rust_plain_sum(None, 0)]
        magic = ctypes.c_uint32.in_dll(lib, "RUST_PLAIN_MAGIC").value
        print(json.dumps({"res": res, "calls": lib.rust_plain_calls(), "magic": magic}))
    """)
    assert out == {"res": [42, 6.0, 258, 0], "calls": 4, "magic": 0x52454C42}


def test_rust_tls_references_cxa_thread_atexit_impl(native: NativeFn) -> None:
    syms = dynsyms(native("rust_tls"))
    refs = [s for n, s in syms.items() if n.split("@")[0] == "__cxa_thread_atexit_impl"]
    assert len(refs) == 1 and not refs[0].defined and refs[0].bind == "WEAK"
    for fn in ("rust_tls_touch", "rust_tls_len", "rust_tls_touches", "rust_tls_dtors_run",
               "rust_tls_run_threads"):
        assert syms[fn].defined and syms[fn].type == "FUNC", fn
    assert syms["RUST_TLS_DTORS_RUN"].type == "OBJECT"


def test_rust_tls_adds_its_thread_locals_to_the_tls_segment(native: NativeFn) -> None:
    (own,) = segments(native("rust_tls"))["TLS"]
    (baseline,) = segments(native("rust_plain"))["TLS"]  # std's own thread-locals
    # GUARD (Cell<u64>) and BUFFER (RefCell<Vec<u8>>) plus their dtor-state bytes
    assert own[1] >= baseline[1] + 8 + 32, (own, baseline)


def test_rust_tls_destructors_run_once_per_thread_local_per_thread(native: NativeFn) -> None:
    out = run_ctypes(native("rust_tls"), """
        for f in ("rust_tls_touch", "rust_tls_len", "rust_tls_run_threads"):
            getattr(lib, f).restype = ctypes.c_size_t
        lib.rust_tls_touches.restype = lib.rust_tls_dtors_run.restype = ctypes.c_uint64
        main = [lib.rust_tls_touch(7), lib.rust_tls_touch(8), lib.rust_tls_len(),
                lib.rust_tls_touches()]
        before = lib.rust_tls_dtors_run()
        pushed = lib.rust_tls_run_threads(3, 5)
        after = lib.rust_tls_dtors_run()
        static = ctypes.c_uint64.in_dll(lib, "RUST_TLS_DTORS_RUN").value
        print(json.dumps({"main": main, "before": before, "pushed": pushed,
                          "after": after, "static": static, "len": lib.rust_tls_len()}))
    """)
    assert out == {"main": [1, 2, 2, 2], "before": 0, "pushed": 15,
                   "after": 6, "static": 6, "len": 2}


# --- foreign architecture ---------------------------------------------------

def test_cross_foreign_is_a_foreign_shared_object(native: NativeFn) -> None:
    lib = native("cross_foreign")
    h = header(lib)
    assert (h["Machine"], h["Class"]) in {("AArch64", "ELF64"), ("Intel 80386", "ELF32")}, h
    assert h["Type"].startswith("DYN")
    syms = dynsyms(lib)
    assert syms["foreign_add"].type == "FUNC" and syms["foreign_value"].type == "OBJECT"
