"""relib_pure.compat: pure checks on LibraryInfo values, then on inspected fixtures."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from relib_pure import abi
from relib_pure.compat import (FINDING_CODES, CheckReport, Expectation, Finding, HostPlatform,
                               Policy, check)
from relib_pure.compat.expectation import parse_rustc_vv, rustc_from_comments, version_matches
from relib_pure.compat.host import elf_header_platform
from relib_pure.errors import IncompatibleModuleError, InspectionError, RelibError
from relib_pure.inspection import inspect
from relib_pure.interface import Function, Interface
from relib_pure.model import CompilationInfo, Hazards, LibraryInfo, RelibInfo

X86 = HostPlatform("x86_64", 64, "little", "linux")
NO_RESOLVE = Policy(resolve=False, host=X86)

RUSTC_VV = """rustc 1.95.0 (59807616e 2026-04-14)
binary: rustc
commit-hash: 59807616e1fa2540724bfbac14d7976d7e4a3860
commit-date: 2026-04-14
host: x86_64-unknown-linux-gnu
release: 1.95.0
LLVM version: 22.1.2
"""


def lib(**kw: object) -> LibraryInfo:
    base: dict[str, object] = dict(path="/x/libt.so", format="elf", machine="x86_64", bits=64,
                                   endianness="little", os="linux", file_size=1, sha256="0" * 64,
                                   elf_type="DYN")
    base.update(kw)
    return LibraryInfo(**base)  # type: ignore[arg-type]


def relib_info(relib_version: str = "0.7.0", unloading: bool | None = True,
               rustc: str = "1.95.0 (59807616e 2026-04-14)", **kw: object) -> RelibInfo:
    gen = abi.generation_for(relib_version)
    flag = "" if unloading is None else f"|{int(unloading)}"
    raw = f"{rustc}|x86_64-unknown-linux-gnu|22.1.2|{relib_version}{flag}"
    ci = CompilationInfo(raw=raw, rustc_version=rustc, host_triple="x86_64-unknown-linux-gnu",
                         llvm_version="22.1.2", relib_version=relib_version, unloading=unloading,
                         generation=gen.name if gen else None, source="rela")
    # a module built with unloading has every internal symbol of its generation
    full = gen is not None and ci.unloading_enabled
    fields: dict[str, object] = dict(
        compilation_info=ci, compilation_info_error=None, has_main=True, has_before_unload=False,
        exports=(), imports=(),
        internal_exports=tuple(abi.internal_export(n) for n in gen.internal_exports) if full else (),
        internal_imports=tuple(abi.internal_import(n) for n in gen.internal_imports) if full else (),
        hooks=())
    fields.update(kw)
    return RelibInfo(**fields)  # type: ignore[arg-type]


# -- report, finding, policy ---------------------------------------------------

def test_finding_codes_are_frozen() -> None:
    assert set(FINDING_CODES) == {
        "compilation.match", "compilation.rustc-version", "compilation.host-triple",
        "compilation.llvm-version", "compilation.relib-version", "compilation.unloading",
        "compilation.missing", "compilation.unreadable",
        "relib.generation", "relib.unsupported", "relib.no-unloading", "relib.not-relib",
        "relib.missing-internal",
        "arch.format", "arch.machine", "arch.bits", "arch.endianness", "arch.os",
        "arch.executable",
        "interface.missing-export", "interface.missing-import", "interface.unexpected-export",
        "interface.unexpected-import", "interface.boxing-mismatch",
        "interface.signature-arity", "interface.signature-type", "interface.signature-layout",
        "interface.signatures-checked", "interface.signatures-unchecked",
        "diff.platform-changed", "diff.soname-changed", "diff.compilation-changed",
        "diff.generation-changed", "diff.export-removed", "diff.export-added",
        "diff.export-kind-changed", "diff.object-size-changed", "diff.variable-type-changed",
        "diff.symbol-version-changed",
        "diff.boxing-changed", "diff.import-added", "diff.import-removed",
        "diff.signature-changed", "diff.signatures-unavailable", "diff.needed-added",
        "diff.needed-removed", "diff.version-removed", "diff.version-added",
        "diff.version-need-added", "diff.hazard-added", "diff.hazard-removed",
        "resolve.ok", "resolve.needed-not-found", "resolve.version-not-found",
        "resolve.undefined-symbol", "resolve.unreadable-dependency", "resolve.skipped",
        "resolve.python-host", "resolve.python-unavailable",
        "hazard.nodelete", "hazard.gnu-unique", "hazard.static-tls", "hazard.thread-atexit",
        "hazard.textrel", "hazard.execstack",
    }


def test_finding_rejects_unknown_code_and_severity() -> None:
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("arch.bogus", "error", "x")
    with pytest.raises(ValueError, match="severity"):
        Finding("arch.bits", "fatal", "x")


def test_report_orders_errors_first_and_raises() -> None:
    info = lib(machine="aarch64", hazards=Hazards(nodelete=True))
    report = check(info, NO_RESOLVE)
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert not report.ok
    assert [f.code for f in report.errors] == ["arch.machine"]
    assert [f.code for f in report.warnings] == ["hazard.nodelete"]
    with pytest.raises(IncompatibleModuleError) as exc:
        report.raise_for_errors()
    assert exc.value.code == "compat.arch"
    assert exc.value.path == "/x/libt.so"
    assert [f.code for f in exc.value.findings] == ["arch.machine"]
    assert exc.value.report is report
    data = json.loads(json.dumps(report.to_dict()))
    assert data["version"] == 1 and data["ok"] is False
    assert data["counts"] == {"error": 1, "warning": 1, "info": 1}


def test_raise_for_errors_is_silent_without_errors() -> None:
    report = CheckReport("/x", (Finding("hazard.nodelete", "warning", "w"),))
    assert report.ok
    report.raise_for_errors()


def test_raise_for_errors_mixed_namespaces_is_compat_failed() -> None:
    info = lib(machine="aarch64", relib=relib_info("0.1.5"))
    with pytest.raises(IncompatibleModuleError) as exc:
        check(info, NO_RESOLVE).raise_for_errors()
    assert exc.value.code == "compat.failed"
    assert {f.code for f in exc.value.findings} == {"arch.machine", "relib.unsupported"}


def test_policy_ignore_downgrade_escalate() -> None:
    info = lib(hazards=Hazards(nodelete=True, static_tls=True, tls_size=4))
    assert check(info, NO_RESOLVE).codes("warning") == {"hazard.nodelete", "hazard.static-tls"}
    ignored = check(info, NO_RESOLVE.replace(ignore={"hazard.nodelete"}))
    assert ignored.codes() >= {"hazard.static-tls"} and "hazard.nodelete" not in ignored.codes()
    skipped = check(info, NO_RESOLVE.replace(ignore={"hazard.*"}))
    assert "hazard" not in skipped.checks and not skipped.codes() & {"hazard.nodelete"}
    strict = check(info, NO_RESOLVE.replace(escalate={"hazard"}))
    assert strict.codes("error") == {"hazard.nodelete", "hazard.static-tls"} and not strict.ok
    foreign = lib(machine="aarch64")
    relaxed = check(foreign, NO_RESOLVE.relaxed("arch.machine"))
    assert relaxed.ok and relaxed.codes("warning") == {"arch.machine"}
    with pytest.raises(ValueError, match="neither a finding code"):
        Policy(ignore={"hazard.nodelet"})


def test_policy_without_unloading_makes_hazards_informational() -> None:
    info = lib(hazards=Hazards(nodelete=True, gnu_unique=("_ZZ1fvE1x",), thread_atexit=True))
    report = check(info, NO_RESOLVE.replace(unloading=False))
    assert report.codes("info") >= {"hazard.nodelete", "hazard.gnu-unique", "hazard.thread-atexit"}
    assert not report.warnings


# -- architecture --------------------------------------------------------------

@pytest.mark.parametrize("change, code", [
    ({"machine": "aarch64"}, "arch.machine"),
    ({"bits": 32}, "arch.bits"),
    ({"endianness": "big"}, "arch.endianness"),
    ({"os": "freebsd"}, "arch.os"),
    ({"format": "pe", "os": "windows"}, "arch.format"),
])
def test_arch_mismatch(change: dict[str, object], code: str) -> None:
    report = check(lib(**change), NO_RESOLVE)
    assert code in report.codes("error")
    finding = report.by_code(code)[0]
    assert finding.details["host"] == X86.to_dict()


def test_arch_match_has_no_findings() -> None:
    assert not check(lib(), NO_RESOLVE).codes() & {c for c in FINDING_CODES if c.startswith("arch.")}


def test_host_detect_reads_interpreter(tmp_path: Path) -> None:
    import struct
    import sys
    host = HostPlatform.detect()
    assert host.bits == struct.calcsize("P") * 8
    assert host.endianness == sys.byteorder
    assert elf_header_platform(sys.executable) == (host.machine, host.bits, host.endianness)
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf file at all")
    assert elf_header_platform(str(junk)) is None


@pytest.mark.parametrize("e_machine, name", [
    (62, "x86_64"), (183, "aarch64"), (243, "riscv64"), (258, "loongarch64"), (8, "mips64"),
    (4, "68k"),
])
def test_host_and_library_name_a_machine_alike(native, tmp_path: Path, e_machine: int,
                                                name: str) -> None:
    """A host interpreter and a library of one machine must compare equal, or
    check() refuses every library on riscv64, loongarch64 or mips hosts."""
    import struct
    data = bytearray(native("c_plain").read_bytes())
    struct.pack_into("<H", data, 18, e_machine)
    patched = tmp_path / "libpatched.so"
    patched.write_bytes(bytes(data))
    host_machine, bits, endianness = elf_header_platform(str(patched))
    assert host_machine == inspect(patched).machine == name
    host = HostPlatform(host_machine, bits, endianness, "linux")
    assert not check(patched, Policy(resolve=False, host=host)).codes("error") & {"arch.machine"}


def test_pie_executable_is_refused() -> None:
    """DF_1_PIE decides, as in glibc's dlopen (a real PIE: test_bad_input)."""
    report = check(lib(dynamic_flags_1=("NOW", "PIE"), interpreter="/lib64/ld-linux-x86-64.so.2"),
                   NO_RESOLVE)
    assert report.codes("error") == {"arch.executable"}
    with pytest.raises(IncompatibleModuleError) as exc:
        report.raise_for_errors()
    assert exc.value.code == "compat.failed"
    assert "arch.executable" not in check(lib(dynamic_flags_1=("NOW",)), NO_RESOLVE).codes()


def test_foreign_fixture_is_refused(native) -> None:
    path = native("cross_foreign")
    report = check(path)
    assert not report.ok
    assert report.codes("error") & {"arch.machine", "arch.bits"}
    assert report.codes("info") >= {"resolve.skipped"}
    with pytest.raises(IncompatibleModuleError) as exc:
        report.raise_for_errors()
    assert exc.value.code == "compat.arch" and exc.value.path == str(path)


# -- relib version and unloading --------------------------------------------------

@pytest.mark.parametrize("version, generation", [
    ("0.1.8", "0.1.8"), ("0.2.1", "0.2"), ("0.2.3", "0.2.3"), ("0.3.0", "0.3"),
    ("0.4.0", "0.4.0"), ("0.5.0", "0.4.1-0.6"), ("0.6.2", "0.4.1-0.6"), ("0.7.0", "0.7"),
])
def test_supported_relib_versions(version: str, generation: str) -> None:
    report = check(lib(relib=relib_info(version, None if version == "0.1.8" else True)), NO_RESOLVE)
    assert report.ok
    (gen,) = report.by_code("relib.generation")
    assert gen.details["generation"] == generation


@pytest.mark.parametrize("version", ["0.1.5", "0.8.0", "1.0.0", "garbage"])
def test_unsupported_relib_versions(version: str) -> None:
    report = check(lib(relib=relib_info(version)), NO_RESOLVE)
    assert report.codes("error") == {"relib.unsupported"}
    with pytest.raises(IncompatibleModuleError) as exc:
        report.raise_for_errors()
    assert exc.value.code == "compat.unsupported-relib"


def test_unloading_flag_required_only_when_unloading() -> None:
    info = lib(relib=relib_info("0.7.0", unloading=False))
    assert check(info, NO_RESOLVE).codes("error") == {"relib.no-unloading"}
    assert check(info, NO_RESOLVE.replace(unloading=False)).ok
    # 0.1.8 has no flag: unloading is always compiled in
    assert check(lib(relib=relib_info("0.1.8", unloading=None)), NO_RESOLVE).ok


def test_not_relib_is_info_unless_required() -> None:
    assert check(lib(), NO_RESOLVE).codes("info") >= {"relib.not-relib"}
    assert check(lib(), NO_RESOLVE.replace(require_relib=True)).codes("error") == {"relib.not-relib"}


def test_unreadable_compilation_info_is_an_error() -> None:
    info = lib(relib=relib_info(compilation_info=None, compilation_info_error="no relocation"))
    report = check(info, NO_RESOLVE)
    assert report.codes("error") == {"compilation.unreadable"}
    assert report.by_code("compilation.unreadable")[0].details["error"] == "no relocation"


@pytest.mark.parametrize("name, generation", [
    ("relib_0_1_8", "0.1.8"), ("relib_0_2", "0.2"), ("relib_0_2_3", "0.2.3"), ("relib_0_3", "0.3"),
    ("relib_0_4_0", "0.4.0"), ("relib_0_4_1", "0.4.1-0.6"), ("relib_0_7", "0.7")])
def test_relib_fixtures_generation(native, name: str, generation: str) -> None:
    report = check(native(name), NO_RESOLVE)
    assert report.ok, report.errors
    assert report.by_code("relib.generation")[0].details["generation"] == generation
    assert "relib.missing-internal" not in report.codes()


@pytest.mark.parametrize("suffix, kind", [("exit", "export"), ("misc_cleanup", "export"),
                                          ("is_ptr_allocated", "import")])
def test_missing_internal_symbol_is_an_error(native, tmp_path: Path, suffix: str,
                                             kind: str) -> None:
    """A module built with unloading whose internal symbol is renamed in
    .dynstr: the host would fail after dlopen, check() says so before."""
    name = (abi.internal_export if kind == "export" else abi.internal_import)(suffix)
    data = native("relib_0_7").read_bytes()
    assert data.count(name.encode() + b"\0") >= 1   # .dynstr (and .strtab when not stripped)
    broken = tmp_path / "librelib_broken.so"
    broken.write_bytes(data.replace(name.encode() + b"\0", name[:-1].encode() + b"Z\0"))
    report = check(broken, NO_RESOLVE)
    assert report.codes("error") == {"relib.missing-internal"}
    assert report.by_code("relib.missing-internal")[0].details["missing"] == [name]
    # without unloading there are no internal symbols to miss
    assert "relib.missing-internal" not in check(native("relib_0_7_nounload"),
                                                 NO_RESOLVE.replace(unloading=False)).codes()


def test_relib_fixture_without_unloading(native) -> None:
    path = native("relib_0_7_nounload")
    assert "relib.no-unloading" in check(path, NO_RESOLVE).codes("error")
    assert check(path, NO_RESOLVE.replace(unloading=False)).ok


# -- compilation info ----------------------------------------------------------------

def test_parse_rustc_vv() -> None:
    exp = parse_rustc_vv(RUSTC_VV)
    assert exp.rustc_version == "1.95.0 (59807616e 2026-04-14)"
    assert exp.host_triple == "x86_64-unknown-linux-gnu"
    assert exp.llvm_version == "22.1.2"
    assert exp.relib_version is None and exp.unloading is None
    with pytest.raises(RelibError) as exc:
        parse_rustc_vv("error: something\n")
    assert exc.value.code == "compat.expectation"


def test_version_matches() -> None:
    full = "1.95.0 (59807616e 2026-04-14)"
    assert version_matches("1.95.0", full)
    assert version_matches(full, full)
    assert not version_matches("1.95", full)       # not a whole word
    assert not version_matches("1.95.1", full)
    assert not version_matches(full, "1.95.0")


def test_rustc_from_comments() -> None:
    assert rustc_from_comments(("GCC: (Debian 12.2.0-14) 12.2.0",
                                "rustc version 1.95.0 (59807616e 2026-04-14)")) == \
        "1.95.0 (59807616e 2026-04-14)"
    assert rustc_from_comments(("GCC: (Debian 12.2.0-14) 12.2.0",)) is None


def test_compilation_fields_compared_one_by_one() -> None:
    info = lib(relib=relib_info("0.7.0"))
    assert check(info, NO_RESOLVE.replace(expect=parse_rustc_vv(RUSTC_VV))).codes("info") >= \
        {"compilation.match"}
    wrong = Expectation(rustc_version="1.80.0", host_triple="aarch64-unknown-linux-gnu",
                        llvm_version="18.0.0", relib_version="0.6.2", unloading=False)
    report = check(info, NO_RESOLVE.replace(expect=wrong))
    assert report.codes("error") == {"compilation.rustc-version", "compilation.host-triple",
                                     "compilation.llvm-version", "compilation.relib-version",
                                     "compilation.unloading"}
    (rustc,) = report.by_code("compilation.rustc-version")
    assert rustc.details["expected"] == "1.80.0"
    assert rustc.details["actual"] == "1.95.0 (59807616e 2026-04-14)"
    with pytest.raises(IncompatibleModuleError) as exc:
        report.raise_for_errors()
    assert exc.value.code == "compat.compilation-mismatch"


def test_expectation_from_local_rustc_matches_relib_fixture(native) -> None:
    if shutil.which("rustc") is None:
        pytest.skip("rustc not installed")
    exp = Expectation.from_rustc()
    assert exp.rustc_version and exp.host_triple and exp.llvm_version
    report = check(native("relib_0_7"), NO_RESOLVE.replace(expect=exp))
    assert report.ok and "compilation.match" in report.codes("info")


def test_expectation_from_missing_rustc(tmp_path: Path) -> None:
    with pytest.raises(RelibError) as exc:
        Expectation.from_rustc(tmp_path / "no-rustc-here")
    assert exc.value.code == "compat.expectation"
    fake = tmp_path / "rustc"
    fake.write_text("#!/bin/sh\necho 'not rustc at all'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(RelibError) as exc:
        Expectation.from_rustc(fake)
    assert exc.value.code == "compat.expectation"


def test_expectation_like_sibling_module(native) -> None:
    exp = Expectation.like(native("relib_0_3"))
    assert exp.relib_version == "0.3.0" and exp.unloading is True
    report = check(native("relib_0_7"), NO_RESOLVE.replace(expect=exp))
    # same compiler, other relib version: exactly that field differs
    assert report.codes("error") == {"compilation.relib-version"}


def test_expectation_like_plain_rust_library_uses_comment(native) -> None:
    exp = Expectation.like(inspect(native("rust_plain")))
    assert exp.rustc_only and exp.rustc_version is not None
    assert exp.rustc_version.startswith("1.")
    # a relib module built by the same rustc matches on that one field
    assert check(native("relib_0_7"), NO_RESOLVE.replace(expect=exp)).ok
    # a plain Rust library is compared through its own .comment
    report = check(native("rust_tls"), NO_RESOLVE.replace(expect=exp))
    assert report.ok and report.by_code("compilation.match")
    other = check(native("rust_tls"), NO_RESOLVE.replace(expect=exp.replace(rustc_version="1.70.0")))
    assert other.codes("error") == {"compilation.rustc-version"}
    assert other.by_code("compilation.rustc-version")[0].details["from"] == ".comment"


def test_rustc_vv_expectation_on_plain_rust_library_uses_comment(native) -> None:
    """``check --rustc-from-path`` on a plain Rust cdylib compares the rustc
    its ``.comment`` names, as ``--expect-rustc`` does; the host triple and
    LLVM of ``rustc -vV`` belong to that rustc build."""
    built_by = rustc_from_comments(inspect(native("rust_plain")).comments)
    assert built_by is not None
    same = parse_rustc_vv(RUSTC_VV.replace("1.95.0 (59807616e 2026-04-14)", built_by))
    assert same.host_triple and same.llvm_version
    report = check(native("rust_plain"), NO_RESOLVE.replace(expect=same))
    assert report.by_code("compilation.match") and not report.codes("error")
    other = check(native("rust_plain"), NO_RESOLVE.replace(
        expect=parse_rustc_vv(RUSTC_VV.replace("1.95.0 (59807616e", "1.70.0 (90c541806"))))
    assert other.codes("error") == {"compilation.rustc-version"}
    assert other.by_code("compilation.rustc-version")[0].details["from"] == ".comment"
    # a relib field cannot be answered from a .comment
    relib_field = check(native("rust_plain"), NO_RESOLVE.replace(
        expect=same.replace(relib_version="0.7.0")))
    assert relib_field.codes("error") == {"compilation.missing"}


def test_expectation_against_c_library(native) -> None:
    c_plain = native("c_plain")
    with pytest.raises(RelibError) as exc:
        Expectation.like(c_plain)
    assert exc.value.code == "compat.expectation" and exc.value.path == str(c_plain)
    report = check(c_plain, NO_RESOLVE.replace(expect=Expectation(rustc_version="1.95.0",
                                                                  relib_version="0.7.0")))
    assert report.codes("error") == {"compilation.missing"}


# -- interface -------------------------------------------------------------------------

def test_interface_from_dict_and_class() -> None:
    api = Interface.from_dict({"add": (ctypes.c_int, [ctypes.c_int, ctypes.c_int])},
                              {"log": (None, [ctypes.c_char_p])}, trait="Exports",
                              import_trait="Imports")
    assert api.export_symbols() == ("__relib__Exports_add",)
    assert api.import_symbols() == ("__relib__Imports_log",)
    assert api.exports[0].argtypes == (ctypes.c_int, ctypes.c_int)

    class Exports:
        __trait__ = "Exports"

        def add(a: ctypes.c_int, b: ctypes.c_int) -> ctypes.c_int: ...

        @staticmethod
        def nothing() -> None: ...

        helper_value = 3   # not a function: ignored

        class Point(ctypes.Structure):   # a type used in signatures, not a declaration
            _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int)]

        def origin() -> Point: ...  # type: ignore[valid-type]

    from_class = Interface.from_class(Exports)
    assert from_class.export_symbols() == ("__relib__Exports_add", "__relib__Exports_nothing",
                                           "__relib__Exports_origin")
    assert from_class.find("origin").restype is Exports.Point  # type: ignore[union-attr]
    assert from_class.find("nothing").restype is None  # type: ignore[union-attr]
    assert from_class.exports[0] == api.exports[0]
    plain = Interface.from_dict({"plain_add": (ctypes.c_int, [ctypes.c_int, ctypes.c_int])})
    assert plain.exports[0].symbol == "plain_add"


def test_interface_rejects_bad_declarations() -> None:
    with pytest.raises(TypeError, match="not a ctypes type"):
        Function("f", int, ())
    with pytest.raises(ValueError, match="declared twice"):
        Interface(exports=(Function("f", None), Function("f", ctypes.c_int)))

    class Missing:
        def f(a) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(TypeError, match="no ctypes annotation"):
        Interface.from_class(Missing)


def test_interface_from_rust(tmp_path: Path) -> None:
    src = tmp_path / "shared.rs"
    src.write_text("pub trait Exports {\n    fn add(a: i32, b: i32) -> i32;\n"
                   "    fn name() -> RString;\n}\n")
    try:
        api = Interface.from_rust(src, "Exports", {"RString": ctypes.c_void_p})
    except InspectionError as e:
        pytest.fail(f"parse_rust_trait refused a plain trait: {e}")
    add = api.find("add")
    assert add is not None and add.symbol == "__relib__Exports_add"
    assert add.argtypes == (ctypes.c_int32, ctypes.c_int32)


def test_interface_diff_on_plain_library(native) -> None:
    info = inspect(native("c_plain"))
    api = Interface.from_dict({"plain_add": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
                               "plain_hidden": (ctypes.c_int, []),
                               "plain_missing": (None, [])})
    report = check(info, NO_RESOLVE.replace(interface=api, exports=("plain_mul",)))
    (missing,) = report.by_code("interface.missing-export")
    assert missing.severity == "error"
    assert missing.details["missing"] == ["plain_hidden", "plain_missing"]
    full = Interface.from_dict({"plain_add": (ctypes.c_int, [ctypes.c_int, ctypes.c_int])})
    assert check(info, NO_RESOLVE.replace(interface=full)).ok


def test_interface_diff_on_relib_module(native) -> None:
    info = inspect(native("relib_0_7"))
    assert info.relib is not None
    exports = {f.symbol for f in info.relib.exports if f.trait == "Exports"}
    imports = sorted(f.symbol for f in info.relib.imports)
    # every export and import declared: clean
    report = check(info, NO_RESOLVE.replace(exports=tuple(exports), imports=tuple(imports)))
    assert not report.codes() & {"interface.missing-export", "interface.unexpected-export",
                                 "interface.missing-import", "interface.unexpected-import"}
    # one import left out: its slot would keep the aborting placeholder
    report = check(info, NO_RESOLVE.replace(exports=("add",), imports=tuple(imports[1:])))
    (unexpected,) = report.by_code("interface.unexpected-import")
    assert unexpected.severity == "error" and unexpected.details["unexpected"] == imports[:1]
    (extra,) = report.by_code("interface.unexpected-export")
    assert extra.severity == "info"
    assert sorted(extra.details["unexpected"]) == sorted(exports - {"__relib__Exports_add"})
    # declared but absent
    report = check(info, NO_RESOLVE.replace(exports=("no_such_fn",), imports=("__relib__Imports_nope",)))
    assert report.by_code("interface.missing-export")[0].details["missing"] == ["no_such_fn"]
    assert report.by_code("interface.missing-import")[0].details["missing"] == ["__relib__Imports_nope"]


def test_interface_boxing_mismatch(native) -> None:
    info = inspect(native("relib_0_7"))
    assert info.relib is not None
    boxed = next(f for f in info.relib.exports if f.boxed and f.trait)
    plain = next(f for f in info.relib.exports if not f.boxed and f.trait)
    right = Interface(exports=(Function(boxed.name, ctypes.c_void_p, (), boxed.trait, "RString"),
                               Function(plain.name, None, (), plain.trait, "()")))
    assert not check(info, NO_RESOLVE.replace(interface=right)).by_code("interface.boxing-mismatch")
    wrong = Interface(exports=(Function(boxed.name, ctypes.c_uint32, (), boxed.trait, "u32"),))
    (f,) = check(info, NO_RESOLVE.replace(interface=wrong)).by_code("interface.boxing-mismatch")
    assert f.severity == "error" and f.details == {
        "symbol": boxed.symbol, "rust_return": "u32", "declared_boxed": False, "module_boxed": True}


# -- hazards ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, code", [("c_nodelete", "hazard.nodelete"),
                                        ("cxx_unique", "hazard.gnu-unique"),
                                        ("c_static_tls", "hazard.static-tls"),
                                        ("rust_tls", "hazard.thread-atexit")])
def test_hazard_fixtures(native, name: str, code: str) -> None:
    report = check(native(name), NO_RESOLVE)
    assert code in report.codes("warning")
    assert report.ok  # hazards warn, they do not refuse
    assert "hazard.nodelete" not in check(native(name), NO_RESOLVE.replace(
        ignore={"hazard.nodelete"})).codes()


def test_executable_stack_is_an_error_naming_its_program_header(native) -> None:
    """``-z execstack``: GNU_STACK is RWE; glibc 2.41+ refuses to dlopen it, so
    check refuses it whatever the unloading intent."""
    path = native("c_execstack")
    headers = re.findall(r"^\s+(\w+)\s.*?([R ][W ][E ])\s+0x[0-9a-f]+$",
                         subprocess.run(["readelf", "-lW", str(path)], capture_output=True,
                                        text=True, check=True).stdout, re.M)
    index = [kind for kind, _ in headers].index("GNU_STACK")
    assert headers[index][1] == "RWE"
    for unloading in (True, False):
        report = check(path, NO_RESOLVE.replace(unloading=unloading))
        (f,) = report.by_code("hazard.execstack")
        assert f.severity == "error" and not report.ok
        assert f.details == {"program_header": index}
        assert f"program header {index} (GNU_STACK)" in f.message
    assert inspect(path).hazards.exec_stack == index
    assert inspect(native("c_plain")).hazards.exec_stack is None
    with pytest.raises(IncompatibleModuleError):
        check(path, NO_RESOLVE).raise_for_errors()


def test_plain_library_has_no_hazards(native) -> None:
    report = check(native("c_plain"), NO_RESOLVE)
    assert not {c for c in report.codes() if c.startswith("hazard.")}


def test_gnu_unique_lists_symbols(native) -> None:
    (f,) = check(native("cxx_unique"), NO_RESOLVE).by_code("hazard.gnu-unique")
    assert f.details["symbols"] and all(isinstance(s, str) for s in f.details["symbols"])
    assert "NODELETE" in f.message


def test_check_accepts_path_and_info(native) -> None:
    path = native("c_plain")
    by_path = check(path, NO_RESOLVE)
    by_info = check(inspect(path), NO_RESOLVE)
    assert by_path == by_info
    assert by_path.path == str(path)
    # resolve is off and nothing declares an interface: those two do not run
    assert by_path.checks == ("arch", "relib", "compilation", "hazard")


def test_check_unreadable_path_raises_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "libbad.so"
    bad.write_bytes(os.urandom(64))
    with pytest.raises(InspectionError) as exc:
        check(bad)
    assert exc.value.path == str(bad)


def test_policy_is_frozen_and_replace_works() -> None:
    p = Policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.unloading = False  # type: ignore[misc]
    q = p.replace(unloading=False).relaxed("resolve", skip=("hazard",))
    assert q.unloading is False and "resolve" in q.downgrade and not q.runs("hazard")
    assert p.unloading is True and p.runs("hazard")


def test_pe_dll_is_refused_on_linux(native) -> None:
    path = native("pe_dll")
    report = check(path, Policy(host=X86))
    assert "arch.format" in report.codes("error")
    assert report.by_code("resolve.skipped")[0].details["format"] == "pe"
    windows = HostPlatform("x86_64", 64, "little", "windows")
    on_windows = check(path, Policy(host=windows, resolve=False))
    assert not on_windows.codes() & {"arch.format", "arch.machine", "arch.bits", "arch.os"}


def test_top_level_names() -> None:
    import relib_pure
    from relib_pure import compat, interface
    assert relib_pure.check is compat.check
    assert relib_pure.Policy is Policy and relib_pure.Expectation is Expectation
    assert relib_pure.CheckReport is CheckReport and relib_pure.Finding is Finding
    assert relib_pure.Interface is interface.Interface
