"""Resolvability before load, compared with what glibc's own loader says.

The oracle is ``ldd`` / ``ldd -r``: it runs the real dynamic loader in a
separate process (``ld.so --list``), so these tests compare our static
answers with the loader's on the same files and environment.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from relib_pure.compat import Policy, check
from relib_pure.loader import ldcache
from relib_pure.inspection.elfhead import read_ident, read_soname
from relib_pure.compat.resolve import resolution_findings
from relib_pure.loader.resolve import inspect_cached, resolve
from relib_pure.loader.search import (LoaderConfig, Requester, expand_dst, find_library,
                                      loaded_objects, parse_ld_help)
from relib_pure.errors import InspectionError
from relib_pure.inspection import inspect

LDD = shutil.which("ldd")
needs_ldd = pytest.mark.skipif(LDD is None and not os.environ.get("CI"),
                               reason="ldd not installed")


def ldd(path: Path, *, ld_library_path: str | None = None,
        relocations: bool = False) -> tuple[dict[str, str | None], list[str], list[str]]:
    """Run ``ldd [-r]``: ({name: path or None}, undefined symbol lines, version errors)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    if ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = ld_library_path
    cmd = [LDD, *(["-r"] if relocations else []), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
    text = out.stdout + out.stderr
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        m = re.match(r"^\s+(\S+) => (not found|(\S+) \(0x[0-9a-f]+\))", line)
        if m:
            found[m.group(1)] = None if m.group(2) == "not found" else m.group(3)
        elif re.match(r"^\s+/\S+ \(0x[0-9a-f]+\)$", line):
            # the dynamic loader itself, listed by its PT_INTERP path
            interp = line.split()[0]
            found[interp] = interp
    undefined = re.findall(r"undefined symbol: (\S+?)(?:, version (\S+))?\s+\(", text)
    versions = re.findall(r"version `([^']+)' not found", text)
    return (found, [n + (f"@{v}" if v else "") for n, v in undefined], versions)


def ours(path: Path, *, ld_library_path: str = "") -> tuple[dict[str, str | None], list[str], list[str]]:
    """Our answer in the same shape as :func:`ldd` (the loader's view: a fresh process)."""
    res = resolve(inspect(path), ld_library_path=ld_library_path, include_loaded=False)
    found: dict[str, str | None] = {}
    for lib in res.libraries:
        found.setdefault(lib.name, lib.path)
    undefined = [u.name + (f"@{u.version}" if u.version else "") for u in res.undefined]
    versions = [v.version for v in res.version_problems if v.version]
    return found, undefined, versions


def without_loader(found: dict[str, str | None]) -> dict[str, str | None]:
    """Drop the dynamic loader and the vDSO: ldd lists them in every process."""
    return {k: v for k, v in found.items()
            if k != "linux-vdso.so.1" and not k.startswith("/") and not k.startswith("ld-linux")}


def place(native, tmp_path: Path, name: str, subdir: str = "") -> Path:
    """Copy fixture ``name`` into ``tmp_path/subdir`` ($ORIGIN must be a real sibling dir)."""
    src = native(name)
    dest_dir = tmp_path / subdir if subdir else tmp_path
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.copy2(src, dest)
    return dest


# -- ld.so.cache ------------------------------------------------------------------

def _cache_bytes(entries: list[tuple[int, str, str, int]], hwcaps: list[str] = (),  # type: ignore[assignment]
                 legacy_prefix: bool = False) -> bytes:
    """Build a glibc-ld.so.cache1.1 file in memory (the format ldconfig writes)."""
    strings = bytearray()
    header_size, entry_size = 48, 24
    base = header_size + entry_size * len(entries)

    def add(s: str) -> int:
        off = base + len(strings)
        strings.extend(s.encode() + b"\0")
        return off
    table = bytearray()
    for flags, key, value, hwcap in entries:
        table += struct.pack("<iIIIQ", flags, add(key), add(value), 0, hwcap)
    ext = b""
    ext_offset = 0
    if hwcaps:
        offsets = [add(h) for h in hwcaps]
        while (base + len(strings)) % 4:
            strings.append(0)
        ext_offset = base + len(strings)
        arr = struct.pack(f"<{len(offsets)}I", *offsets)
        ext = struct.pack("<II", 0xEAA42174, 1) + struct.pack("<IIII", 1, 0, ext_offset + 24,
                                                              len(arr)) + arr
    head = (b"glibc-ld.so.cache1.1" + struct.pack("<IIB3xI12x", len(entries), len(strings), 2,
                                                  ext_offset))
    data = head + bytes(table) + bytes(strings) + ext
    if legacy_prefix:
        old = b"ld.so-1.7.0\0" + struct.pack("<I", 1) + struct.pack("<iII", 3, 0, 0)
        old += b"\0" * ((8 - len(old) % 8) % 8)
        data = old + data
    return data


def test_cache_matches_ldconfig_p() -> None:
    cache = ldcache.load_cache()
    if cache is None or shutil.which("ldconfig") is None and not os.path.exists("/sbin/ldconfig"):
        pytest.skip("no ld.so.cache / ldconfig on this machine")
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=30).stdout
    rows = re.findall(r"^\s+(\S+) \(([^)]*)\) => (\S+)$", out, re.M)
    assert len(rows) == len(cache) > 0
    ours = [(e.name, e.path) for e in cache.entries]
    assert ours == [(name, path) for name, _abi, path in rows]
    flags = ldcache.abi_flags("x86_64", 64)
    libc_rows = [path for name, abi, path in rows if name == "libc.so.6" and "x86-64" in abi]
    if libc_rows:
        assert cache.lookup("libc.so.6", flags) == libc_rows[0]
        assert cache.lookup("libc.so.6", ldcache.abi_flags("aarch64", 64)) is None


def test_cache_hwcaps_and_legacy_prefix() -> None:
    x86 = ldcache.abi_flags("x86_64", 64)
    data = _cache_bytes([
        (x86, "libfoo.so.1", "/usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1", (1 << 62) | 1),
        (x86, "libfoo.so.1", "/usr/lib/glibc-hwcaps/x86-64-v2/libfoo.so.1", (1 << 62) | 0),
        (x86, "libfoo.so.1", "/usr/lib/libfoo.so.1", 0),
        (3, "libfoo.so.1", "/usr/lib32/libfoo.so.1", 0),
    ], hwcaps=["x86-64-v2", "x86-64-v3"])
    for blob in (data, _cache_bytes([(x86, "libfoo.so.1", "/usr/lib/libfoo.so.1", 0)],
                                    legacy_prefix=True)):
        assert ldcache.parse_cache(blob).lookup("libfoo.so.1", x86) == "/usr/lib/libfoo.so.1"
    cache = ldcache.parse_cache(data)
    assert cache.lookup("libfoo.so.1", x86, ["x86-64-v4", "x86-64-v3", "x86-64-v2"]) == \
        "/usr/lib/glibc-hwcaps/x86-64-v3/libfoo.so.1"
    assert cache.lookup("libfoo.so.1", x86, ["x86-64-v2"]) == "/usr/lib/glibc-hwcaps/x86-64-v2/libfoo.so.1"
    assert cache.lookup("libfoo.so.1", 3) == "/usr/lib32/libfoo.so.1"
    assert cache.lookup("libbar.so", x86) is None


@pytest.mark.parametrize("mutate, code", [
    (lambda d: b"garbage" + d[7:], "inspect.unknown-format"),
    (lambda d: d[:30], "inspect.truncated"),
    (lambda d: d[:60], "inspect.truncated"),
    (lambda d: d[:48 + 24] + b"\xff" * 4, "inspect.malformed"),
])
def test_cache_bad_bytes_raise_typed_errors(mutate, code: str) -> None:
    data = _cache_bytes([(0x303, "liba.so", "/lib/liba.so", 0), (0x303, "libb.so", "/lib/libb.so", 0)])
    bad = mutate(data)
    if code == "inspect.malformed":
        # point the first key past the end of the file
        bad = data[:48] + struct.pack("<iIIIQ", 0x303, 10**6, 10**6, 0, 0) + data[72:]
    with pytest.raises(InspectionError) as exc:
        ldcache.parse_cache(bad, "/tmp/fake.cache")
    assert exc.value.code == code and exc.value.path == "/tmp/fake.cache"


# -- loader configuration ---------------------------------------------------------------

LD_HELP = """Shared library search path:
  (libraries located via /etc/ld.so.cache)
  /lib/x86_64-linux-gnu (system search path)
  /usr/lib/x86_64-linux-gnu (system search path)
  /lib (system search path)
  /usr/lib (system search path)

Subdirectories of glibc-hwcaps directories, in priority order:
  x86-64-v4
  x86-64-v3 (supported, searched)
  x86-64-v2 (supported, searched)

Legacy HWCAP subdirectories under library search path directories:
  haswell (AT_PLATFORM; supported, searched)
  tls (supported, searched)
  x86_64 (supported, searched)
"""


def test_parse_ld_help() -> None:
    cfg = parse_ld_help(LD_HELP)
    assert cfg is not None
    assert cfg.system_dirs == ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib")
    assert cfg.hwcaps == ("x86-64-v3", "x86-64-v2")
    assert cfg.platform == "haswell"
    assert cfg.lib == "lib/x86_64-linux-gnu"
    assert cfg.legacy_subdirs == ("tls/haswell/x86_64", "tls/haswell", "tls/x86_64", "tls",
                                  "haswell/x86_64", "haswell", "x86_64")
    assert cfg.expand_dir("/d")[0] == "/d/glibc-hwcaps/x86-64-v3"
    assert cfg.expand_dir("/d")[-1] == "/d"
    assert parse_ld_help("usage: nothing useful") is None


def test_expand_dst() -> None:
    cfg = LoaderConfig(system_dirs=("/lib",), platform="haswell", lib="lib/x86_64-linux-gnu")
    assert expand_dst("$ORIGIN/../lib", "/opt/app", cfg) == "/opt/app/../lib"
    assert expand_dst("${ORIGIN}/x", "/o", cfg) == "/o/x"
    assert expand_dst("/usr/$LIB/$PLATFORM", "/o", cfg) == "/usr/lib/x86_64-linux-gnu/haswell"
    assert expand_dst("/x/${LIB}", "/o", cfg) == "/x/lib/x86_64-linux-gnu"
    assert expand_dst("$UNKNOWN/x", "/o", cfg) is None


@needs_ldd
def test_dst_expansion_agrees_with_loader(native, tmp_path: Path) -> None:
    """$LIB and $PLATFORM as the real loader expands them (LD_DEBUG=libs)."""
    cfg = LoaderConfig.detect()
    lib = tmp_path / "probe"
    lib.mkdir()
    target = Path(str(expand_dst("/nonexistent/$LIB/$PLATFORM", str(lib), cfg)))
    env = {**os.environ, "LD_DEBUG": "libs",
           "LD_LIBRARY_PATH": "/nonexistent/$LIB/$PLATFORM"}
    out = subprocess.run([LDD, str(native("compat_plain_needed"))], capture_output=True,
                         text=True, env=env, timeout=30)
    assert f"file={target}/libcompat_base.so" in out.stdout + out.stderr


# -- finding NEEDED libraries -------------------------------------------------------------

@needs_ldd
def test_runpath_origin(native, tmp_path: Path) -> None:
    lib = place(native, tmp_path, "compat_runpath")
    place(native, tmp_path, "compat_base")
    found, undefined, versions = ours(lib)
    assert found == {"libcompat_base.so": str(tmp_path / "libcompat_base.so")}
    assert (found, undefined, versions) == ldd(lib, relocations=True)
    res = resolve(inspect(lib), ld_library_path="", include_loaded=False)
    assert res.libraries[0].how == "runpath" and res.ok
    assert [f.code for f in resolution_findings(res)] == ["resolve.ok"]


@needs_ldd
def test_rpath_origin_subdir(native, tmp_path: Path) -> None:
    lib = place(native, tmp_path, "compat_rpath")
    place(native, tmp_path, "compat_base", "deps")
    found, _, _ = ours(lib)
    assert found == {"libcompat_base.so": str(tmp_path / "deps" / "libcompat_base.so")}
    assert ours(lib) == ldd(lib, relocations=True)
    res = resolve(inspect(lib), ld_library_path="", include_loaded=False)
    assert res.libraries[0].how == "rpath"


@needs_ldd
def test_search_order_rpath_ld_library_path_runpath(native, tmp_path: Path) -> None:
    """RPATH beats LD_LIBRARY_PATH, which beats RUNPATH (two copies of one soname)."""
    rpath_lib = place(native, tmp_path / "r", "compat_rpath")
    place(native, tmp_path / "r", "compat_base", "deps")
    runpath_lib = place(native, tmp_path / "u", "compat_runpath")
    place(native, tmp_path / "u", "compat_base")
    other = place(native, tmp_path / "env", "compat_base_v2")
    env_dir = str(other.parent)
    for lib, want in ((rpath_lib, tmp_path / "r" / "deps" / "libcompat_base.so"),
                      (runpath_lib, other)):
        found, _, _ = ours(lib, ld_library_path=env_dir)
        assert found["libcompat_base.so"] == str(want)
        assert found == ldd(lib, ld_library_path=env_dir)[0]


@needs_ldd
def test_not_found_then_found_with_ld_library_path(native, tmp_path: Path) -> None:
    lib = place(native, tmp_path, "compat_plain_needed")
    base = place(native, tmp_path / "elsewhere", "compat_base")
    assert ours(lib)[0] == ldd(lib)[0] == {"libcompat_base.so": None}
    report = check(lib, Policy(ld_library_path="", resolve_loaded=False))
    (missing,) = report.by_code("resolve.needed-not-found")
    assert missing.severity == "error" and missing.details["name"] == "libcompat_base.so"
    assert "/etc/ld.so.cache" in missing.details["searched"]
    assert not report.ok
    # its symbols are unknown, not proven missing: the one error is the library
    assert report.codes("error") == {"resolve.needed-not-found"}
    (symbols,) = report.by_code("resolve.undefined-symbol")
    assert symbols.severity == "warning" and "not found" in symbols.message
    assert [s["name"] for s in symbols.details["symbols"]] == ["compat_base_fn"]
    found = ours(lib, ld_library_path=str(base.parent))
    assert found == ldd(lib, ld_library_path=str(base.parent), relocations=True)
    assert found[0] == {"libcompat_base.so": str(base)}


@needs_ldd
def test_wrong_class_candidate_is_skipped(native, tmp_path: Path) -> None:
    """A foreign library with the right name is passed over, as the loader does."""
    lib = place(native, tmp_path, "compat_runpath")
    place(native, tmp_path, "compat_base")
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    shutil.copy2(native("cross_foreign"), decoy_dir / "libcompat_base.so")
    res = resolve(inspect(lib), ld_library_path=str(decoy_dir), include_loaded=False)
    (loc,) = res.libraries
    assert loc.path == str(tmp_path / "libcompat_base.so") and loc.how == "runpath"
    assert str(decoy_dir / "libcompat_base.so") in loc.skipped
    assert {"libcompat_base.so": loc.path} == ldd(lib, ld_library_path=str(decoy_dir))[0]


# -- symbols and versions ------------------------------------------------------------------

@needs_ldd
def test_missing_symbol_version(native, tmp_path: Path) -> None:
    lib = place(native, tmp_path, "compat_newver")
    place(native, tmp_path, "compat_base")          # has COMPAT_1 only
    mine = ours(lib)
    assert mine[1] == ["compat_base_new@COMPAT_2"]
    assert mine[2] == ["COMPAT_2"]
    theirs = ldd(lib, relocations=True)
    assert mine[0] == theirs[0] and mine[2] == theirs[2]
    assert set(mine[1]) == set(theirs[1])
    report = check(lib, Policy(ld_library_path="", resolve_loaded=False))
    assert report.codes("error") == {"resolve.version-not-found", "resolve.undefined-symbol"}
    (vf,) = report.by_code("resolve.version-not-found")
    assert vf.details["version"] == "COMPAT_2" and vf.details["required_by"] == str(lib)
    assert "version `COMPAT_2' not found" in vf.message


@needs_ldd
def test_new_version_present(native, tmp_path: Path) -> None:
    lib = place(native, tmp_path, "compat_newver")
    place(native, tmp_path, "compat_base_v2")
    assert ours(lib) == ldd(lib, relocations=True)
    assert ours(lib)[1:] == ([], [])


@needs_ldd
def test_undefined_strong_symbol_but_weak_is_fine(native) -> None:
    lib = native("compat_unresolved")
    mine = ours(lib)
    assert mine[1] == ["compat_nobody_defines_this"]      # the weak one is not reported
    assert mine[1] == ldd(lib, relocations=True)[1]
    (f,) = check(lib, Policy(resolve_loaded=False)).by_code("resolve.undefined-symbol")
    assert f.details["symbols"] == [{"name": "compat_nobody_defines_this", "version": None}]
    weak = native("compat_weak")
    assert ours(weak)[1] == [] == ldd(weak, relocations=True)[1]
    assert check(weak, Policy(resolve_loaded=False)).codes("info") >= {"resolve.ok"}


@needs_ldd
def test_global_scope_of_this_interpreter_counts_for_a_load_here(native) -> None:
    """An extension-style reference to the interpreter (``Py_IsInitialized``,
    no libpython in NEEDED): a fresh process (``ldd -r``) cannot bind it,
    a dlopen from this Python can; check() answers each question as asked."""
    lib = native("compat_pyscope")
    assert ours(lib)[1] == ["Py_IsInitialized"] == ldd(lib, relocations=True)[1]
    fresh = check(lib, Policy(resolve_loaded=False))
    (f,) = fresh.by_code("resolve.undefined-symbol")
    assert f.details["symbols"] == [{"name": "Py_IsInitialized", "version": None}]
    here = resolve(inspect(lib), ld_library_path="", include_loaded=True)
    assert here.undefined == () and here.global_scope
    assert os.path.realpath("/proc/self/exe") == here.global_scope[0]
    report = check(lib)
    assert report.ok and "resolve.ok" in report.codes("info"), report.findings
    # and the loader agrees: the library loads here and the call binds
    assert ctypes.CDLL(str(lib)).compat_pyscope_initialized() == 1


@needs_ldd
@pytest.mark.parametrize("name", ["c_plain", "cxx_unique", "rust_plain", "relib_0_7"])
def test_system_dependencies_agree_with_ldd(native, name: str) -> None:
    """Real libc/libstdc++/libgcc_s closures: same paths, nothing undefined."""
    lib = native(name)
    found, undefined, versions = ours(lib)
    their_found, their_undefined, their_versions = ldd(lib, relocations=True)
    # ldd lists the loader itself under its PT_INTERP path whether or not
    # anything NEEDs it; we list it under the NEEDED name, at the same path.
    for interp in [k for k in their_found if k.startswith("/")]:
        their_found.pop(interp)
        if os.path.basename(interp) in found:
            assert found.pop(os.path.basename(interp)) == interp
    assert found == their_found
    assert undefined == their_undefined == []
    assert versions == their_versions == []
    report = check(lib, Policy(resolve_loaded=False))
    assert report.codes() & {"resolve.ok"}, report.findings


@needs_ldd
@pytest.mark.parametrize("soname", ["libstdc++.so.6", "libz.so.1", "libssl.so.3", "libcurl.so.4",
                                    "libxml2.so.2", "libsystemd.so.0"])
def test_system_libraries_agree_with_ldd(soname: str) -> None:
    """Whole closures of installed libraries (found through ld.so.cache) match the loader."""
    cache = ldcache.load_cache()
    path = cache.lookup(soname, ldcache.abi_flags("x86_64", 64)) if cache else None
    if path is None:
        pytest.skip(f"{soname} is not installed")
    found, undefined, versions = ours(Path(path))
    their_found, their_undefined, their_versions = ldd(Path(path), relocations=True)
    their_found.pop("linux-vdso.so.1", None)
    for interp in [k for k in their_found if k.startswith("/")]:
        their_found.pop(interp)
        found.pop(os.path.basename(interp), None)
    assert found == their_found and len(found) >= 1
    assert (undefined, versions) == (their_undefined, their_versions) == ([], [])


# -- loaded objects and caching ----------------------------------------------------------------

def test_loaded_objects_are_matched_by_soname(native, tmp_path: Path) -> None:
    base = native("compat_base")
    handle = ctypes.CDLL(str(base))
    assert handle.compat_base_fn(1) == 2
    assert loaded_objects().get("libcompat_base.so") == str(base)
    lib = place(native, tmp_path, "compat_runpath")
    place(native, tmp_path, "compat_base")
    here = resolve(inspect(lib), ld_library_path="", include_loaded=True)
    assert (here.libraries[0].how, here.libraries[0].path) == ("loaded", str(base))
    fresh = resolve(inspect(lib), ld_library_path="", include_loaded=False)
    assert fresh.libraries[0].path == str(tmp_path / "libcompat_base.so")


def test_inspection_cache_keyed_by_inode_and_mtime(native, tmp_path: Path) -> None:
    copy = place(native, tmp_path, "compat_base")
    first = inspect_cached(str(copy))
    assert inspect_cached(str(copy)) is first
    shutil.copy2(native("compat_base_v2"), copy)   # new content; copy2 keeps v2's mtime
    os.utime(copy, ns=(first.file_size, os.stat(copy).st_mtime_ns + 10**9))
    second = inspect_cached(str(copy))
    assert second is not first and "COMPAT_2" in second.version_definitions


def test_elfhead_helpers(native, tmp_path: Path) -> None:
    base = native("compat_base")
    assert read_soname(str(base)) == "libcompat_base.so"
    ident = read_ident(str(base))
    assert ident is not None and ident.bits == 64
    foreign = read_ident(str(native("cross_foreign")))
    assert foreign is not None and not ident.compatible(foreign)
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 100)
    assert read_ident(str(junk)) is None and read_soname(str(junk)) is None


def test_find_library_direct_path(native, tmp_path: Path) -> None:
    base = place(native, tmp_path, "compat_base")
    req = Requester(path=str(tmp_path / "libx.so"), ident=read_ident(str(base)))
    loc = find_library("$ORIGIN/libcompat_base.so", req)
    assert (loc.path, loc.how) == (str(base), "path")
    assert find_library("$ORIGIN/nothere.so", req).path is None


def test_corrupt_cache_is_ignored_like_the_loader_does(tmp_path: Path) -> None:
    bad = tmp_path / "ld.so.cache"
    bad.write_bytes(b"glibc-ld.so.cache1.1" + b"\xff" * 40)
    with pytest.raises(InspectionError):
        ldcache.parse_cache(bad.read_bytes(), str(bad))
    assert ldcache.load_cache(str(bad)) is None
    assert ldcache.load_cache(str(tmp_path / "missing")) is None


@needs_ldd
def test_nodeflib_skips_cache_and_system_dirs(native) -> None:
    lib = native("compat_nodeflib")
    assert ours(lib)[0] == ldd(lib)[0] == {"libc.so.6": None}
    res = resolve(inspect(lib), ld_library_path="", include_loaded=False)
    assert "/etc/ld.so.cache" in res.libraries[0].searched
    # LD_LIBRARY_PATH is not a default path: NODEFLIB does not apply to it
    libdir = os.path.dirname(str(ldcache.load_cache().lookup(  # type: ignore[union-attr]
        "libc.so.6", ldcache.abi_flags("x86_64", 64))))
    found = without_loader(ours(lib, ld_library_path=libdir)[0])
    assert found == without_loader(ldd(lib, ld_library_path=libdir)[0])
    assert found == {"libc.so.6": f"{libdir}/libc.so.6"}
    # in this process libc is already mapped, so a dlopen here would succeed
    here = resolve(inspect(lib), ld_library_path="", include_loaded=True)
    assert here.libraries[0].how == "loaded"


@needs_ldd
def test_transitive_closure(native, tmp_path: Path) -> None:
    """Breadth-first over NEEDED of NEEDED: a dependency's own undefined symbol is
    reported against it, and a symbol defined two levels down is found."""
    lib = place(native, tmp_path, "compat_chain")
    for dep in ("compat_unresolved", "compat_runpath", "compat_base"):
        place(native, tmp_path, dep)
    found, undefined, versions = ours(lib)
    theirs = ldd(lib, relocations=True)
    assert without_loader(found) == without_loader(theirs[0])
    assert found["libcompat_base.so"] == str(tmp_path / "libcompat_base.so")
    assert undefined == theirs[1] == ["compat_nobody_defines_this"]
    res = resolve(inspect(lib), ld_library_path="", include_loaded=False)
    assert [u.required_by for u in res.undefined] == [str(tmp_path / "libcompat_unresolved.so")]
    assert res.scope[0] == str(lib) and len(res.scope) == 1 + len(without_loader(found)) + 1
    # without the grandchild: the loader stops at "not found"; we say what would be missing
    (tmp_path / "libcompat_base.so").unlink()
    found2, undefined2, _ = ours(lib)
    assert without_loader(found2) == without_loader(ldd(lib, relocations=True)[0])
    assert found2["libcompat_base.so"] is None
    assert set(undefined2) == {"compat_nobody_defines_this", "compat_base_fn",
                               "compat_base_fn@COMPAT_1"}


@needs_ldd
@pytest.mark.parametrize("kind", ["hwcaps", "legacy"])
def test_hwcaps_subdirectories_are_tried_first(native, tmp_path: Path, kind: str) -> None:
    cfg = LoaderConfig.detect()
    subs = ([f"glibc-hwcaps/{h}" for h in cfg.hwcaps] if kind == "hwcaps"
            else list(cfg.legacy_subdirs))
    if not subs:
        pytest.skip(f"this loader searches no {kind} subdirectories")
    lib = place(native, tmp_path, "compat_runpath")
    place(native, tmp_path, "compat_base")
    best = place(native, tmp_path, "compat_base_v2", subs[-1])
    found = ours(lib)[0]
    assert found["libcompat_base.so"] == str(best)
    assert without_loader(found) == without_loader(ldd(lib)[0])


def test_hostile_names_do_not_crash(native) -> None:
    """Names read from a damaged file (NUL bytes, huge, odd DSTs) are simply not found."""
    import dataclasses
    info = dataclasses.replace(inspect(native("compat_runpath")),
                               needed=("lib\0bad.so", "$ORIGIN/../\0x.so", "a" * 5000, "lib$BOGUS.so"),
                               rpath=("$BOGUS/x", "\0"), runpath=("${ORIGIN}/\0", ""))
    report = check(info, Policy(resolve_loaded=False, ld_library_path="\0:/nonexistent"))
    missing = report.by_code("resolve.needed-not-found")
    assert sorted(f.details["name"] for f in missing) == sorted(info.needed)
