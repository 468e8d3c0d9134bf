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
