"""``relib-pure watch``: a real child process watching a library gcc rebuilds under it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from test_reload import compile_lib  # tests/ is on sys.path (rootdir conftest)

pytestmark = pytest.mark.skipif(subprocess.run(["which", "gcc"], capture_output=True).returncode
                                and not os.environ.get("CI"), reason="gcc is not installed")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    docs = {name: json.loads((resources.files("relib_pure") / "schemas" / name).read_text())
            for name in ("watch.json", "run.json")}
    jsonschema.Draft202012Validator.check_schema(docs["watch.json"])
    registry: Registry = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs.values())
    return jsonschema.Draft202012Validator(docs["watch.json"], registry=registry)


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "relib_pure", "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def read_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output from relib-pure watch"
    line = proc.stdout.readline()
    assert line, f"watch ended early: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}"
    return line


def json_line(proc: subprocess.Popen[str], validator: jsonschema.Draft202012Validator
              ) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(read_line(proc))
    validator.validate(data)
    return data


def test_json_lines_per_reload_and_ctrl_c_ends_cleanly(
        tmp_path: Path, validator: jsonschema.Draft202012Validator) -> None:
    lib = compile_lib(tmp_path / "libw.so", 1)
    proc = start(str(lib), "--json", "--call", "reload_value", "--init", "reload_init",
                 "--debounce", "0.02")
    try:
        first = json_line(proc, validator)
        assert (first["event"], first["outcome"], first["candidate"]) == ("reload", "loaded", 1)
        assert first["call"] == {"symbol": "reload_value", "result": 1, "error": None}
        compile_lib(lib, 2)
        second = json_line(proc, validator)
        assert (second["outcome"], second["serving"], second["call"]["result"]) == ("loaded", 2, 2)
        assert second["unload"]["clean"] and second["timings_ms"]["total"] > 0
        compile_lib(lib, 3, "INIT_RESULT=5")
        third = json_line(proc, validator)
        assert (third["outcome"], third["serving"], third["call"]) == ("rolled-back", 2, None)
        assert third["reason"]["code"] == "reload.main-failed"
        proc.send_signal(signal.SIGINT)
        last = json_line(proc, validator)
        assert last["event"] == "stopped" and last["unload"]["clean"]
        assert proc.wait(15) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_text_lines_and_count(tmp_path: Path) -> None:
    lib = compile_lib(tmp_path / "libw.so", 1)
    proc = start(str(lib), "--call", "reload_value", "--count", "2", "--poll", "0.05")
    try:
        assert read_line(proc).startswith("v1 loaded: change to new code running ")
        compile_lib(lib, 2)
        line = read_line(proc)
        assert line.startswith("v2 loaded: change to new code running ")
        assert "previous unloaded clean; reload_value() -> 2" in line, line
        assert read_line(proc).strip() == "stopped: last version unloaded clean"
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_missing_library_is_exit_2_with_a_json_error(
        tmp_path: Path, validator: jsonschema.Draft202012Validator) -> None:
    proc = start(str(tmp_path / "nosuch.so"), "--json")
    try:
        data = json_line(proc, validator)
        assert data["event"] == "error" and data["error"]["code"] == "inspect.not-found"
        assert proc.wait(15) == 2
    finally:
        proc.kill()
        proc.wait()


def test_src_without_build_is_a_usage_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "relib_pure", "watch", "x.so", "--src",
                        str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "--src needs --build" in r.stderr
    r = subprocess.run([sys.executable, "-m", "relib_pure", "watch", "--help"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "exit status: 0 stopped" in " ".join(r.stdout.split())
