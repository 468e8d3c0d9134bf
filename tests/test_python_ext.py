"""Python extension modules: ``Py*`` symbols are resolved against the interpreter the
module is for (named in the report), not whichever Python runs the check.

Fixtures are built with gcc against this interpreter's headers
(``fixtures/pyext``); every expectation is read from a real interpreter
(``ctypes.pythonapi`` of the one that would import the module)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relib_pure.cli.main import main
from relib_pure.compat.python_ext import find_interpreter

RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"


def check(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["check", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def by_code(doc: dict) -> dict[str, dict]:
    return {f["code"]: f for f in doc["findings"]}


def has_symbol(python: str, name: str) -> bool:
    """Whether the interpreter at ``python`` defines ``name`` (dlsym in its own process)."""
    out = subprocess.run([python, "-c", f"import ctypes; print(hasattr(ctypes.pythonapi, "
                                        f"{name!r}))"], capture_output=True, text=True,
                         check=True).stdout
    return out.strip() == "True"


def test_extension_names_the_running_interpreter(capsys, native) -> None:
    path = native("pyext_spam")
    # a real extension: this interpreter imports it
    spec = importlib.util.spec_from_file_location("spam", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.twice(21) == 42
    code, doc = check(capsys, str(path))
    assert code == 0
    found = by_code(doc)
    host = found["resolve.python-host"]
    assert host["severity"] == "info"
    assert host["details"]["version"] == RUNNING
    assert host["details"]["source"] == "from the file name"
    assert os.path.samefile(host["details"]["executable"], sys.executable)
    assert host["details"]["running"] is True
    assert sys.executable in host["message"] or host["details"]["executable"] in host["message"]
    assert "resolve.undefined-symbol" not in found


def test_plain_library_gets_no_python_finding(capsys, native) -> None:
    code, doc = check(capsys, str(native("c_plain")))
    assert code == 0 and not any(c.startswith("resolve.python") for c in by_code(doc))


def test_symbol_of_a_newer_python_fails_here_only_if_missing(capsys, native) -> None:
    """PyLong_AsInt is 3.13 API: checked for this interpreter, the verdict is
    whatever this interpreter's own symbol table says."""
    code, doc = check(capsys, str(native("pyext_spam313")))
    found = by_code(doc)
    if has_symbol(sys.executable, "PyLong_AsInt"):
        assert code == 0 and "resolve.undefined-symbol" not in found
    else:
        assert code == 1
        assert found["resolve.undefined-symbol"]["details"]["symbols"] == \
            [{"name": "PyLong_AsInt", "version": None}]
    assert found["resolve.python-host"]["details"]["source"] == "the running interpreter"


def test_target_from_the_cpython_tag(capsys, native, tmp_path: Path) -> None:
    path = tmp_path / "spam.cpython-313-x86_64-linux-gnu.so"
    shutil.copy(native("pyext_spam313"), path)
    code, doc = check(capsys, str(path))
    found = by_code(doc)
    python313 = find_interpreter("3.13")
    if python313 is None:
        warn = found["resolve.python-unavailable"]
        assert warn["severity"] == "warning" and code == 0
        assert "PyLong_AsInt" in warn["details"]["assumed"]
        return
    host = found["resolve.python-host"]
    assert host["details"]["version"] == "3.13"
    assert host["details"]["source"] == "from the file name"
    assert os.path.samefile(host["details"]["executable"], python313)
    assert host["details"]["libpython"] is None or "3.13" in host["details"]["libpython"]
    expected_ok = has_symbol(python313, "PyLong_AsInt")
    assert (code == 0) == expected_ok and ("resolve.undefined-symbol" in found) != expected_ok


def test_choose_the_target(capsys, native) -> None:
    path = str(native("pyext_spam"))
    # by path: this interpreter again, named as asked
    code, doc = check(capsys, path, "--python", sys.executable)
    host = by_code(doc)["resolve.python-host"]
    assert code == 0 and host["details"]["source"] == "--python"
    assert os.path.samefile(host["details"]["executable"], sys.executable)
    # a version not installed: said plainly, Py* left unchecked, not reported undefined
    code, doc = check(capsys, path, "--python", "3.99")
    found = by_code(doc)
    warn = found["resolve.python-unavailable"]
    assert code == 0 and warn["severity"] == "warning"
    assert "Python 3.99" in warn["message"]
    assert set(warn["details"]["assumed"]) == {"PyLong_AsLong", "PyErr_Occurred",
                                               "PyLong_FromLong", "PyModule_Create2"}
    assert "resolve.undefined-symbol" not in found
    assert "4 left to the host" in found["resolve.ok"]["message"]
    code, _ = check(capsys, path, "--python", "3.99", "--strict")
    assert code == 1
