"""The ``relib-pure`` dispatcher: help, exit codes, options between paths."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from relib_pure.cli.main import main


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["inspect", "--no-such-option", "x.so"])
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_options_may_stand_between_paths(native: Callable[[str], Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    a, b = native("c_plain"), native("rust_plain")
    assert main(["inspect", str(a), "--json", str(b)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    assert [lib["path"] for lib in doc["libraries"]] == [str(a), str(b)]


def test_python_dash_m_and_version() -> None:
    r = subprocess.run([sys.executable, "-m", "relib_pure", "--version"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("relib-pure ")


def test_version_names_location_and_python() -> None:
    r = subprocess.run([sys.executable, "-m", "relib_pure", "-V"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    first, second = r.stdout.splitlines()
    assert first.startswith("relib-pure 0.") and " from " in first
    assert first.split(" from ")[1].endswith("relib_pure")
    assert second.startswith(f"Python {sys.version_info[0]}.{sys.version_info[1]}.")


def test_verbose_and_quiet_after_the_subcommand(native: Callable[[str], Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(native("c_plain")), "-v", "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1


def test_usage_error_under_json_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["check", "--json", "--no-such-option", "x.so"])
    assert e.value.code == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    assert doc["error"]["code"] == "usage"
    assert "--no-such-option" in doc["error"]["message"]


def test_hidden_probe_is_not_offered_in_typo_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["prob"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and "'run'" in err
    assert "'probe'" not in err


@pytest.mark.parametrize("command", ["inspect", "check", "run"])
def test_help_has_exit_status_and_no_backticks(command: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out
    assert "`" not in out


def test_run_missing_file_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", str(tmp_path / "nosuch.so")]) == 2
    out = capsys.readouterr().out
    assert "no such file" in out and "NOT CLEAN" not in out


def test_run_on_a_library_that_fails_checks_exits_1(native: Callable[[str], Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(native("cross_foreign"))]) == 1
    assert "[compat.arch]" in capsys.readouterr().out
