"""``relib-pure run --cycles N``: growth per resource, exit status, JSON against the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from relib_pure.cli.main import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def schema() -> dict:
    data = json.loads(resources.files("relib_pure").joinpath("schemas/run.json").read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def run_json(capsys, schema: dict, *argv: str) -> tuple[int, dict]:
    code = main(["run", *argv, "--json"])
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, schema)
    return code, data


def test_clean_library_prints_growth_per_resource(capsys, native) -> None:
    code = main(["run", str(native("cycle_clean")), "--call", "cycle_work", "--restype", "int",
                 "--cycles", "20"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "clean after 20 of 20 cycle(s) (warm-up 1," in out
    for resource in ("rss_kb", "vmsize_kb", "fds", "threads", "mappings"):
        assert f"    {resource}: " in out
    assert "GREW" not in out and "per cycle:" in out


def test_fd_leak_json_exits_1(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("cycle_leak_fd")), "--call", "cycle_work",
                          "--restype", "int", "--cycles", "4")
    try:
        assert code == 1 and data["clean"] is False and data["stage"] == "done"
        cycles = data["cycles"]
        assert cycles["requested"] == cycles["completed"] == 4
        assert cycles["not_clean"] == [1, 2, 3, 4] and len(cycles["per_cycle"]) == 4
        fds = next(g for g in cycles["growth"] if g["resource"] == "fds")
        assert (fds["delta"], fds["grew"]) == (3, True)
        assert data["error"]["code"] == "cycle.not-clean"
        assert "fds: " in data["error"]["message"] and "GREW" in data["error"]["message"]
        assert [f["target"] for f in data["unload"]["leaks"]["fds"]] == ["/dev/null"]
        assert data["call"] == {"symbol": "cycle_work", "restype": "int", "times": 1,
                                "last_result": 42}
    finally:  # the library's descriptors are this process's now
        for fd in {f["fd"] for f in data["unload"]["leaks"]["fds"]}:
            os.close(fd)


def test_relib_module_cycles_call_main(capsys, schema, native) -> None:
    code, data = run_json(capsys, schema, str(native("relib_0_7")), "--cycles", "3")
    assert code == 0, data["error"]
    assert data["main"]["symbol"] == "__relib__main" and data["call"] is None
    assert data["unload"]["driver"] == "relib-0.7"
    assert all(r["freed_allocations"] is not None for r in data["cycles"]["per_cycle"])


def test_gnu_unique_stops_after_one_cycle(schema, native) -> None:
    # in a child: the library stays mapped in the process that tried
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "relib_pure", "run", str(native("cycle_unique")),
                           "--call", "cycle_work", "--cycles", "5", "--json"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, schema)
    assert data["stage"] == "unload" and data["cycles"]["completed"] == 1
    assert data["error"]["code"] == "unload.still-mapped"
    assert [c["code"] for c in data["unload"]["causes"]] == ["gnu-unique"]


def test_usage_errors_exit_2(capsys, native, tmp_path: Path) -> None:
    lib = str(native("cycle_clean"))
    assert main(["run", lib, "--cycles", "0"]) == 2
    assert "--cycles must be at least 1" in capsys.readouterr().err
    assert main(["run", lib, "--cycles", "2", "--tolerance", "heap=3"]) == 2
    assert "unknown resource 'heap'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "none.so"), "--cycles", "2"]) == 2
    assert "cannot run: " in capsys.readouterr().out


def test_isolated_cycles_of_a_clean_library(capsys, native, schema: dict) -> None:
    code, data = run_json(capsys, schema, str(native("cycle_clean")), "--call", "cycle_work",
                          "--restype", "int", "--cycles", "5", "--isolated")
    assert code == 0, data
    assert data["isolated"] and data["clean"] and data["stage"] == "done"
    assert data["cycles"]["completed"] == 5 and data["cycles"]["not_clean"] == []
    assert data["process"]["exit_status"] == 0 and data["process"]["signal"] is None
    assert data["process"]["cycle"] == 5


def test_isolated_cycles_report_the_cycle_a_crash_happened_in(
        capsys, native, schema: dict, tmp_path: Path, monkeypatch) -> None:
    """cycle_crash dereferences NULL in its third call (counted in a file across
    loads): the child dies there, this process reports the signal and the cycle."""
    counter = tmp_path / "calls"
    monkeypatch.setenv("CYCLE_COUNTER", str(counter))
    code, data = run_json(capsys, schema, str(native("cycle_crash")), "--call", "cycle_work",
                          "--restype", "int", "--cycles", "10", "--isolated")
    assert code == 1
    assert data["isolated"] and not data["clean"] and data["cycles"] is None
    proc = data["process"]
    assert (proc["signal_name"], proc["cycle"], data["stage"]) == ("SIGSEGV", 3, "call")
    assert counter.read_text().strip() == "3"
    assert "Fatal Python error: Segmentation fault" in proc["stderr"]
    counter.unlink()
    assert main(["run", str(native("cycle_crash")), "--call", "cycle_work", "--restype", "int",
                 "--cycles", "10", "--isolated"]) == 1
    out = capsys.readouterr().out
    assert "NOT CLEAN (isolated child killed by SIGSEGV during cycle 3 (call))" in out


def test_isolated_cycles_that_hang_are_timed_out(capsys, native, schema: dict) -> None:
    code, data = run_json(capsys, schema, str(native("cycle_hang")), "--call", "cycle_work",
                          "--restype", "int", "--cycles", "3", "--isolated", "--timeout", "2")
    assert code == 1
    proc = data["process"]
    assert proc["timed_out"] and proc["signal"] is None and data["cycles"] is None
    assert (proc["cycle"], data["stage"]) == (1, "call")
