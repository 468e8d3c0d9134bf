"""``relib-pure check``: exit codes, aligned text, JSON validated against the shipped schema."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from relib_pure.cli.main import main


@pytest.fixture(scope="module")
def schema() -> dict:
    text = resources.files("relib_pure").joinpath("schemas/check.json").read_text()
    data = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, schema: dict, *argv: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, *argv, "--json")
    data = json.loads(out)
    jsonschema.validate(data, schema)
    return code, data


def test_ok_library_exits_0(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("c_plain")))
    assert code == 0
    assert data["version"] == 1 and data["ok"] is True
    assert data["path"] == str(native("c_plain"))
    assert "resolve" in data["checks"]
    assert {f["code"] for f in data["findings"]} >= {"relib.not-relib", "resolve.ok"}


def test_failed_check_exits_1_with_errors_first(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("cross_foreign")))
    assert code == 1 and data["ok"] is False
    severities = [f["severity"] for f in data["findings"]]
    assert severities[0] == "error"
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert data["counts"]["error"] == severities.count("error") >= 1


def test_unresolved_symbol_fails(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("compat_unresolved")))
    assert code == 1
    (f,) = [f for f in data["findings"] if f["code"] == "resolve.undefined-symbol"]
    assert f["details"]["symbols"] == [{"name": "compat_nobody_defines_this", "version": None}]
    code, data = run_json(capsys, schema, str(native("compat_unresolved")), "--no-resolve")
    assert code == 0 and "resolve" not in data["checks"]
    code, data = run_json(capsys, schema, str(native("compat_unresolved")),
                          "--relax", "resolve.undefined-symbol")
    assert code == 0
    assert [f["severity"] for f in data["findings"]
            if f["code"] == "resolve.undefined-symbol"] == ["warning"]


def test_human_output_is_aligned(capsys, native) -> None:
    code, out, _ = run(capsys, str(native("c_nodelete")), "--expect-rustc", "1.95.0",
                       "--exports", "nothing_here")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{native('c_nodelete')}: FAILED (")
    body = lines[1:]
    assert body[0].split()[0] == "error"
    assert any(line.split()[:2] == ["warning", "hazard.nodelete"] for line in body)
    # severity, code and message columns start at the same offset on every line
    import re
    cols = set()
    for line in body:
        m = re.match(r"^  (\S+ +)(\S+ +)(\S.*)$", line)
        assert m, line
        cols.add((m.start(2), m.start(3)))
    assert len(cols) == 1


def test_expect_rustc_and_like(capsys, schema, native) -> None:
    relib = str(native("relib_0_7"))
    code, data = run_json(capsys, schema, relib, "--expect-rustc", "1.20.0")
    assert code == 1
    (f,) = [f for f in data["findings"] if f["code"] == "compilation.rustc-version"]
    assert f["details"]["expected"] == "1.20.0"
    code, data = run_json(capsys, schema, relib, "--like", str(native("relib_0_7_nounload")))
    assert code == 1
    assert {f["code"] for f in data["findings"] if f["severity"] == "error"} == \
        {"compilation.unloading"}
    code, data = run_json(capsys, schema, relib, "--like", str(native("rust_plain")))
    assert code == 0


def test_rustc_from_path(capsys, schema, native) -> None:
    if shutil.which("rustc") is None:
        pytest.skip("rustc not installed")
    code, data = run_json(capsys, schema, str(native("relib_0_7")), "--rustc-from-path")
    assert code == 0
    assert any(f["code"] == "compilation.match" for f in data["findings"])


def test_exports_and_imports_diff(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("relib_0_7")), "--exports", "add", "nope",
                          "--imports", "__relib__Imports_empty")
    assert code == 1
    by_code = {f["code"]: f for f in data["findings"]}
    assert by_code["interface.missing-export"]["details"]["missing"] == ["nope"]
    assert "__relib__Imports_empty" not in by_code["interface.unexpected-import"]["details"]["unexpected"]


def test_relib_names_as_inspect_lists_them(capsys, schema, native) -> None:
    """``Exports: add`` in ``relib-pure inspect`` may be named add, Exports_add,
    Exports::add or Exports.add; a wrong trait is missing, not matched by name."""
    code, data = run_json(capsys, schema, str(native("relib_0_7")), "--no-resolve",
                          "--exports", "Exports_add", "Exports::ref_ret", "Exports.ref_",
                          "Imports::add", "--imports", "Imports_empty", "Imports::ref_ret")
    assert code == 1
    by_code = {f["code"]: f for f in data["findings"]}
    assert by_code["interface.missing-export"]["details"]["missing"] == ["Imports::add"]
    assert "interface.missing-import" not in by_code
    unexpected = by_code["interface.unexpected-export"]["details"]["unexpected"]
    assert not {"__relib__Exports_add", "__relib__Exports_ref_ret",
                "__relib__Exports_ref_"} & set(unexpected)
    slots = by_code["interface.unexpected-import"]["details"]["unexpected"]
    assert not {"__relib__Imports_empty", "__relib__Imports_ref_ret"} & set(slots)


@pytest.mark.parametrize("make", ["missing", "directory", "random"])
def test_unreadable_input_exits_2(capsys, schema, tmp_path: Path, make: str) -> None:
    target = tmp_path / "libx.so"
    if make == "directory":
        target.mkdir()
    elif make == "random":
        target.write_bytes(b"\x00\x01garbage" * 10)
    code, out, err = run(capsys, str(target), "--json")
    assert code == 2
    data = json.loads(out)
    jsonschema.validate(data, schema)
    assert data["error"]["code"].startswith("inspect.") and data["error"]["path"] == str(target)
    assert "Traceback" not in err and str(target) in err


def test_unreadable_like_and_bad_selector_exit_2(capsys, schema, native, tmp_path: Path) -> None:
    code, data = run_json(capsys, schema, str(native("relib_0_7")), "--like", str(native("c_plain")))
    assert code == 2 and data["error"]["code"] == "compat.expectation"
    code, data = run_json(capsys, schema, str(native("c_plain")), "--ignore", "no.such-code")
    assert code == 2 and data["error"]["code"] == "usage"


def test_empty_expected_rustc_is_a_usage_error(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("relib_0_7")), "--expect-rustc", " ")
    assert code == 2 and data["error"]["code"] == "usage"
    assert "--expect-rustc" in data["error"]["message"]


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "x", "--expect-rustc", "1", "--rustc-from-path"])
    assert exc.value.code == 2


def test_console_entry_point(native) -> None:
    out = subprocess.run([sys.executable, "-m", "relib_pure", "check", str(native("compat_weak")),
                          "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] is True


@pytest.mark.parametrize("fmt", [(), ("--json",)])
def test_closed_pipe_is_not_an_error(native, fmt: tuple[str, ...]) -> None:
    """``relib-pure check lib.so | true``: the verdict stays the exit status, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "relib_pure", "check",
                             str(native("compat_unresolved")), *fmt],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    # closed long before the interpreter has started, so the write hits the closed end
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_exports_option_forms(capsys, native, schema) -> None:
    lib = str(native("relib_0_7"))
    # the old form with PATH last: the path is not swallowed as a symbol name
    code, swallowed = run_json(capsys, schema, "--exports", "add", "nope", lib)
    assert swallowed["path"] == lib
    code2, commas = run_json(capsys, schema, lib, "--exports", "add,nope")
    code3, repeated = run_json(capsys, schema, lib, "--exports", "add", "--exports", "nope")
    assert code == code2 == code3 == 1
    assert swallowed["findings"] == commas["findings"] == repeated["findings"]


def test_comma_list_never_becomes_the_path(capsys) -> None:
    assert main(["check", "--json", "--exports", "a,b"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["code"] == "usage" and "PATH" in doc["error"]["message"]
