"""Signatures from DWARF on upstream relib 0.7's own test module, built in debug.

The module comes from ``../shared/relib-kit`` (``testing/module``, feature
``unloading``, dev profile), so the DWARF is what rustc really writes for
``#[relib_interface]`` code: success pointers, boxed returns, import slots.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from relib_pure.compat import Policy, check
from relib_pure.errors import IncompatibleModuleError
from relib_pure.inspection import inspect
from relib_pure.interface import Interface
from relib_pure.relib import load_module

from relib_kit import source_root  # noqa: E402 - tools/ is on sys.path (conftest)


@pytest.fixture(scope="module")
def module(relib_kit_build, tmp_path_factory) -> Path:
    # a copy: loading it here must not make another test's module "already loaded"
    source = relib_kit_build("unloading", profile="debug", host=False).module
    copy = tmp_path_factory.mktemp("relib-kit-debug") / source.name
    copy.write_bytes(source.read_bytes())
    return copy


@pytest.fixture(scope="module")
def interface() -> Interface:
    shared = source_root() / "testing" / "shared" / "src"
    return Interface.from_rust(shared / "exports.rs", "Exports").merge(
        Interface.from_rust(shared / "imports.rs", "Imports"))


def test_every_relib_function_has_its_signature(module) -> None:
    info = inspect(module, signatures=True)
    debug = info.debug
    assert debug is not None and debug.status == "ok"
    assert info.relib is not None
    wanted = [f.symbol for f in (*info.relib.exports, *info.relib.imports)]
    assert len(wanted) >= 30
    assert {s.symbol for s in debug.signatures} >= set(wanted)
    assert debug.units_read < debug.units_total / 4  # only the units holding them
    prim = debug.find("__relib__Exports_primitive_ret")
    assert prim is not None and prim.convention == "success"
    assert [(p.name, p.type.name, p.type.size) for p in prim.value_params] == [("p", "i32", 4)]
    assert (prim.returns.name, prim.returns.size) == ("i32", 4)  # MaybeUninit<i32> unwrapped
    boxed = debug.find("__relib__Exports_ref_owned_ret")
    assert boxed is not None and boxed.returns.kind == "pointer"
    assert boxed.returns.target is not None and boxed.returns.target.name == "RString"
    slot = debug.find("__relib__Imports_primitive")
    assert slot is not None and slot.role == "relib-import" and slot.convention == "success"
    assert [p.type.name for p in slot.value_params] == ["i32"]
    entry = debug.find("__relib__main")
    assert entry is not None and entry.role == "relib-entry" and entry.value_params == ()


def test_declared_from_rust_agrees(module, interface) -> None:
    report = check(module, Policy(interface=interface, resolve=False))
    assert not [f for f in report.errors if f.code.startswith("interface.signature")], \
        report.errors
    (agreed,) = report.by_code("interface.signatures-checked")
    assert len(agreed.details["symbols"]) == len(interface)


def test_wrong_parameter_type_is_refused_before_load(module) -> None:
    with pytest.raises(IncompatibleModuleError) as caught:
        load_module(module, exports={"primitive": (None, [ctypes.c_double])})
    err = caught.value
    assert err.code == "compat.signature-mismatch"
    assert "__relib__Exports_primitive: parameter 1 'p': declared c_double (8 bytes)" in str(err)
    assert "i32 (4 bytes, signed)" in str(err)
    assert not _mapped(module)


def test_missing_parameter_is_refused_before_load(module) -> None:
    with pytest.raises(IncompatibleModuleError) as caught:
        load_module(module, exports={"primitive_ret": (ctypes.c_int32, [])})
    (finding,) = caught.value.findings
    assert finding.code == "interface.signature-arity"
    assert "declared 0 parameter(s)" in finding.message and "1 'p': i32" in finding.message
    assert not _mapped(module)


def test_correct_declaration_loads_and_calls(module, interface) -> None:
    with load_module(module, exports=Interface(exports=interface.exports)) as m:
        assert m.exports.primitive_ret(-2**31) == -2**31


def _mapped(path: Path) -> bool:
    with open("/proc/self/maps") as maps:
        return str(path) in maps.read()


def test_bench_dwarf_smoke(module, repo_root: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(repo_root / "tools" / "bench_dwarf.py"),
                           "--runs", "1", "--library", str(module)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ratio relib-pure/readelf" in done.stdout and "target <= 0.5 s" in done.stdout


def test_check_cli_rust_interface(module, capsys) -> None:
    from relib_pure.cli.main import main

    shared = source_root() / "testing" / "shared" / "src"
    argv = ["check", str(module), "--no-resolve", "--json",
            "--rust-interface", f"{shared / 'exports.rs'}:Exports",
            "--rust-interface", f"{shared / 'imports.rs'}:Imports"]
    assert main(argv) == 0
    import json

    doc = json.loads(capsys.readouterr()[0])
    codes = {f["code"] for f in doc["findings"]}
    assert "interface.signatures-checked" in codes
    assert not any(c.startswith("interface.signature-") for c in codes)
    assert main(["check", str(module), "--rust-interface", "no-colon"]) == 2


def test_diff_debug_against_release_build(module, relib_kit_build) -> None:
    """The same source in release: nothing a host sees changed, and without
    DWARF on one side the signatures are said not compared."""
    from relib_pure.compat.diff import diff_libraries

    release = relib_kit_build("unloading").module
    result = diff_libraries(inspect(module, signatures=True), inspect(release, signatures=True))
    assert not result.breaking, [c.message for c in result.changes]
    codes = {c.code for c in result.changes}
    assert "diff.signatures-unavailable" in codes
    assert not codes & {"diff.export-removed", "diff.compilation-changed", "diff.boxing-changed"}
    # the optimiser may drop a libc reference; relib's import slots stay the same
    assert all(not c.details.get("relib") for c in result.changes
               if c.code in ("diff.import-added", "diff.import-removed"))


def test_inspect_json_of_the_debug_module_validates(module, capsys) -> None:
    import json
    from importlib import resources

    import jsonschema

    from relib_pure.cli.main import main

    schema = json.loads((resources.files("relib_pure") / "schemas" / "inspect.json").read_text())
    assert main(["inspect", "--json", str(module)]) == 0
    doc = json.loads(capsys.readouterr()[0])
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    sigs = {s["symbol"]: s for s in doc["libraries"][0]["debug"]["signatures"]}
    ref = sigs["__relib__Exports_ref_"]["params"][1]["type"]
    assert (ref["name"], ref["size"]) == ("RStr", 16)
    assert [f["offset"] for f in ref["fields"]] == [0]  # RStr { inner: RSlice<u8> }
