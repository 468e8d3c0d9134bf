"""``relib-pure inspect``: text and JSON output, exit codes, the shipped schema."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from relib_pure.cli.inspect_cmd import LIST_LIMIT, _json_view, library_dict
from relib_pure.cli.main import main
from relib_pure.inspection import inspect

LIBRARIES = ["c_plain", "c_versioned", "cxx_unique", "c_nodelete", "c_static_tls", "rust_tls",
             "cross_foreign", "relib_0_1_8", "relib_0_3", "relib_0_7", "relib_0_7_relr",
             "relib_0_7_nounload", "pe_dll"]


@pytest.fixture(scope="module")
def schema() -> dict:
    text = (resources.files("relib_pure") / "schemas" / "inspect.json").read_text()
    loaded = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


@pytest.fixture(scope="module")
def libraries(native) -> list[Path]:
    return [native(n) for n in LIBRARIES]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_validates(capsys, schema, libraries) -> None:
    code, out, err = run(capsys, "--json", *map(str, libraries))
    assert code == 0, err
    document = json.loads(out)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    assert document["version"] == 1
    assert document["errors"] == []
    assert [lib["path"] for lib in document["libraries"]] == [str(p) for p in libraries]
    by_name = {Path(lib["path"]).name: lib for lib in document["libraries"]}
    assert by_name["libc_plain.so"]["soname"] == "libc_plain.so"
    ci = by_name["librelib_0_7.so"]["relib"]["compilation_info"]
    assert ci["relib_version"] == "0.7.0" and ci["generation"] == "0.7"
    pe = by_name["pe_dll.dll"]
    assert pe["format"] == "pe" and pe["pe"]["exports"] and pe["relib"]["compilation_info"]


def test_json_equals_model(libraries) -> None:
    for path in libraries:
        info = inspect(path)
        assert library_dict(info) == info.to_dict()
        assert _json_view(info) == info.to_dict()


def test_errors_exit_2_and_are_listed(capsys, schema, native, tmp_path: Path) -> None:
    missing = tmp_path / "missing.so"
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not a library at all")
    plain = native("c_plain")
    code, out, err = run(capsys, "--json", str(plain), str(missing), str(junk))
    assert code == 2
    document = json.loads(out)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    assert len(document["libraries"]) == 1
    assert [(e["code"], e["path"]) for e in document["errors"]] == [
        ("inspect.not-found", str(missing)), ("inspect.unknown-format", str(junk))]

    code, out, err = run(capsys, str(missing))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(missing) in lines[0] and "inspect.not-found" in lines[0]


def test_no_path_is_usage_error(capsys) -> None:
    code, out, err = run(capsys)
    assert code == 2 and "PATH" in err


def test_text_summary_first(capsys, native) -> None:
    path = native("c_plain")
    code, out, err = run(capsys, str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{path}: ELF x86_64 64-bit linux")
    assert "soname libc_plain.so" in lines[0]
    labels = [line.split(":")[0].strip() for line in lines[1:] if line.startswith("  ")
              and not line.startswith("    ")]
    assert labels.index("hazards") < labels.index("sha256")
    assert any("plain_add" in line for line in lines)


def test_text_aligned_columns(capsys, native) -> None:
    code, out, _ = run(capsys, str(native("c_versioned")))
    rows = [line for line in out.splitlines() if line.startswith("  ")
            and not line.startswith("    ") and not line.strip().startswith(("exports", "imports"))]
    value_columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in rows}
    assert len(value_columns) == 1, rows


def test_text_relib_and_hazards(capsys, native) -> None:
    names = ["relib_0_7", "cxx_unique", "c_nodelete"]
    code, out, _ = run(capsys, *(str(native(n)) for n in names))
    assert code == 0
    assert "relib 0.7.0 (protocol 0.7)" in out
    assert "Exports: add" in out and "(boxed)" in out
    assert "GNU unique symbol" in out
    assert "NODELETE (never unmapped)" in out


def test_truncation_and_all(capsys, native) -> None:
    path = native("rust_tls")
    count = len(inspect(path).imports)
    assert count > LIST_LIMIT
    _, short, _ = run(capsys, str(path))
    assert f"... {count - LIST_LIMIT} more (--all shows every one)" in short
    _, full, _ = run(capsys, "--all", str(path))
    assert "more (--all" not in full
    assert f"imports ({count}):" in full
    assert len(full.splitlines()) > len(short.splitlines())


def test_example(capsys, schema) -> None:
    pytest.importorskip("relib_pure.examples")
    code, out, err = run(capsys, "--json", "--example")
    assert code == 0, err
    document = json.loads(out)
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    (library,) = document["libraries"]
    assert library["relib"] is not None and library["relib"]["has_main"]


def test_console_entry_point(native) -> None:
    """The real process: ``python -m relib_pure inspect --json``."""
    path = native("c_plain")
    result = subprocess.run([sys.executable, "-m", "relib_pure", "inspect", "--json", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["libraries"][0]["soname"] == "libc_plain.so"


def test_json_sha256_is_the_file_hash(capsys, native, tmp_path: Path) -> None:
    """Big files are hashed while the report is serialised; the digest spliced
    in must be the file's, even when the path itself spells the key."""
    import hashlib

    big = native("rust_tls")  # above the mmap threshold: hashed on a helper thread
    tricky = tmp_path / 'x"sha256": "".so'
    tricky.symlink_to(big)
    code, out, err = run(capsys, "--json", str(big), str(tricky), str(native("c_plain")))
    assert code == 0, err
    libs = json.loads(out)["libraries"]
    assert libs[1]["path"] == str(tricky)
    for lib in libs:
        assert lib["sha256"] == hashlib.sha256(Path(lib["path"]).read_bytes()).hexdigest()
    assert libs[0]["sha256"] == libs[1]["sha256"]


def test_closed_pipe_is_not_an_error(native) -> None:
    """``relib-pure inspect --all big.so | head -1``: no traceback, exit 0."""
    # more output than a pipe buffers (64 KiB), so the writer must hit the closed end
    paths = [str(native("rust_tls"))] * 40
    proc = subprocess.Popen([sys.executable, "-m", "relib_pure", "inspect", "--all", *paths],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr


def test_bench_inspect_smoke(native, repo_root: Path) -> None:
    """The benchmark runs end to end (one run each, a small library as the big one)."""
    small = native("c_plain")
    result = subprocess.run([sys.executable, str(repo_root / "tools" / "bench_inspect.py"),
                             "--runs", "1", "--library", str(native("rust_tls")), "--nice", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"small: {small}" in result.stdout
    assert result.stdout.count("ratio relib-pure/readelf") == 2
    assert "target ratio <= 1.0 on the big library:" in result.stdout


def test_origin_flag_is_shown_once(tmp_path, capsys) -> None:
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    src = tmp_path / "o.c"
    src.write_text("int origin_fn(void) { return 1; }\n")
    lib = tmp_path / "libo.so"
    # -z origin sets both DF_ORIGIN and DF_1_ORIGIN
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-z,origin", "-o", str(lib), str(src)],
                   check=True)
    assert main(["inspect", str(lib)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("flags")]
    assert line.split().count("ORIGIN") == 1
