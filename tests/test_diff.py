"""``relib-pure diff OLD NEW``: changes between two builds, and the verdict for a host built for OLD."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from relib_pure.cli.main import main
from relib_pure.compat.diff import diff_libraries
from relib_pure.inspection import inspect


@pytest.fixture(scope="module")
def schema() -> dict:
    loaded = json.loads((resources.files("relib_pure") / "schemas" / "diff.json").read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def _diff(old: Path, new: Path):
    return diff_libraries(inspect(old, signatures=True), inspect(new, signatures=True))


def _by_symbol(result, code: str) -> dict[str, str]:
    return {c.details["symbol"]: c.message for c in result.changes if c.code == code}


def test_c_pair_breaking_changes(native) -> None:
    result = _diff(native("dwarf_sig_v1"), native("dwarf_sig_v2"))
    assert result.breaking
    (removed,) = [c for c in result.changes if c.code == "diff.export-removed"]
    assert removed.severity == "error" and removed.details["symbols"] == ["sig_old"]
    (added,) = [c for c in result.changes if c.code == "diff.export-added"]
    assert added.severity == "info" and added.details["symbols"] == ["sig_new"]
    changed = _by_symbol(result, "diff.signature-changed")
    assert set(changed) == {"sig_count", "sig_scale", "sig_span_len", "sig_span_make"}
    assert "1 parameter(s) became 2" in changed["sig_scale"]
    assert "parameter 1 'n': uint32_t (4 bytes) became uint64_t (8 bytes)" in changed["sig_count"]
    assert "pointed-to struct sig_span (16 bytes) became struct sig_span (24 bytes)" \
        in changed["sig_span_len"]
    assert "return: struct sig_span (16 bytes)" in changed["sig_span_make"]
    (grown,) = [c for c in result.changes if c.code == "diff.object-size-changed"]
    assert grown.severity == "error" and (grown.details["old"], grown.details["new"]) == (16, 32)


def test_variable_types_changed_at_the_same_size(native) -> None:
    """double -> int64_t and a struct member float -> int32_t keep every size (no
    object-size change), but a host built for the old build reads garbage."""
    result = _diff(native("dwarf_vars_v1"), native("dwarf_vars_v2"))
    assert result.breaking
    assert not [c for c in result.changes if c.code == "diff.object-size-changed"]
    changed = _by_symbol(result, "diff.variable-type-changed")
    assert set(changed) == {"vars_rate", "vars_config"}  # vars_count is unchanged
    assert "double (8 bytes) became int64_t (8 bytes)" in changed["vars_rate"]
    assert "member 'ratio': float (4 bytes) became int32_t (4 bytes)" in changed["vars_config"]
    details = [c.details for c in result.changes if c.code == "diff.variable-type-changed"]
    assert {(d["old"], d["new"]) for d in details} == {("double", "int64_t"),
                                                        ("struct vars_config",
                                                         "struct vars_config")}


def test_addition_only_is_compatible(native, capsys) -> None:
    old, new = native("dwarf_sig_v1"), native("dwarf_sig_v1_extra")
    result = _diff(old, new)
    assert not result.breaking
    assert [c.code for c in result.changes] == ["diff.export-added"]
    assert main(["diff", str(old), str(new)]) == 0
    out = capsys.readouterr()[0]
    assert "compatible (1 info)" in out and "sig_extra" in out


def test_same_file_has_no_changes(native, capsys) -> None:
    path = native("dwarf_sig_v1")
    assert main(["diff", str(path), str(path)]) == 0
    assert "no changes" in capsys.readouterr()[0]


def test_without_dwarf_signatures_are_not_compared(native) -> None:
    result = _diff(native("dwarf_sig_v1"), native("dwarf_sig_nodebug"))
    codes = {c.code for c in result.changes}
    assert "diff.signatures-unavailable" in codes
    assert "diff.signature-changed" not in codes
    assert "diff.soname-changed" in codes


def test_json_validates_and_exit_1(native, capsys, schema) -> None:
    code = main(["diff", "--json", str(native("dwarf_sig_v1")), str(native("dwarf_sig_v2"))])
    doc = json.loads(capsys.readouterr()[0])
    assert code == 1
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert doc["version"] == 1 and doc["breaking"] is True
    assert doc["counts"]["error"] == 6


def test_unreadable_input_exit_2(native, capsys, schema, tmp_path) -> None:
    code = main(["diff", "--json", str(native("dwarf_sig_v1")), str(tmp_path / "gone.so")])
    doc = json.loads(capsys.readouterr()[0])
    assert code == 2
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    assert doc["error"]["code"] == "inspect.not-found"


def test_symbol_versions_needed_and_hazards(native) -> None:
    result = _diff(native("compat_base"), native("compat_base_v2"))
    codes = {c.code: c for c in result.changes}
    assert "diff.version-added" in codes
    back = {c.code: c for c in _diff(native("compat_base_v2"), native("compat_base")).changes}
    assert back["diff.version-removed"].severity == "error"
    assert back["diff.version-removed"].details["versions"] == ["COMPAT_2"]
    nodelete = _diff(native("c_plain"), native("c_nodelete"))
    hazard = [c for c in nodelete.changes if c.code == "diff.hazard-added"]
    assert hazard and hazard[0].details["hazard"] == "nodelete"
    needs = _diff(native("compat_unresolved"), native("compat_chain"))
    assert "diff.needed-added" in {c.code for c in needs.changes}


def test_relib_compilation_and_generation(native) -> None:
    unloading = _diff(native("relib_0_7"), native("relib_0_7_nounload"))
    fields = {c.details.get("field") for c in unloading.changes
              if c.code == "diff.compilation-changed"}
    assert "unloading" in fields and unloading.breaking
    older = _diff(native("relib_0_3"), native("relib_0_7"))
    (gen,) = [c for c in older.changes if c.code == "diff.generation-changed"]
    assert (gen.details["old"], gen.details["new"]) == ("0.3", "0.7")
    # relib's internal symbols follow the generation: not listed one by one
    for c in older.changes:
        for name in c.details.get("symbols", []):
            assert "Internal" not in name


ABIDIFF = shutil.which("abidiff")


@pytest.mark.skipif(ABIDIFF is None and not os.environ.get("CI"),
                    reason="abidiff (abigail-tools) not installed")
@pytest.mark.parametrize("old,new", [("dwarf_sig_v1", "dwarf_sig_v2"),
                                     ("dwarf_sig_v1", "dwarf_sig_v1_extra"),
                                     ("dwarf_sig_v1", "dwarf_sig_v1"),
                                     ("dwarf_vars_v1", "dwarf_vars_v2")])
def test_verdict_agrees_with_abidiff(native, old, new) -> None:
    """abidiff's exit bit 8 (ABIDIFF_ABI_INCOMPATIBLE_CHANGE) or a changed
    function or variable (bit 4 with changes listed) against our breaking
    verdict; where the two differ in detail is documented in the README."""
    assert ABIDIFF is not None, "CI installs abigail-tools"
    a, b = native(old), native(new)
    done = subprocess.run([ABIDIFF, str(a), str(b)], capture_output=True, text=True, timeout=120)
    assert done.returncode & 1 == 0, done.stderr  # bit 0: abidiff itself failed
    theirs = bool(done.returncode & 8) or any(
        " 0 Changed" not in done.stdout.split(f"{kind} changes summary:")[-1].split("\n")[0]
        for kind in ("Functions", "Variables") if f"{kind} changes summary:" in done.stdout)
    ours = _diff(a, b)
    assert ours.breaking == theirs, (done.stdout, ours.changes)
    if ours.breaking:
        # the same functions are named by both
        named = {s for c in ours.changes for s in
                 ([c.details["symbol"]] if "symbol" in c.details else c.details.get("symbols", []))}
        for symbol in named - {"sig_new"}:
            assert symbol in done.stdout


def test_version_definition_symbols_are_not_exports(native) -> None:
    result = _diff(native("compat_base"), native("compat_base_v2"))
    (added,) = [c for c in result.changes if c.code == "diff.export-added"]
    assert added.details["symbols"] == ["compat_base_new"]
    assert not result.breaking
