"""``run --call`` with simple arguments and declared C signatures, on a compiled library."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from relib_pure.cli.main import main
from relib_pure.runtime.callspec import parse_call


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(resources.files("relib_pure").joinpath("schemas/run.json").read_text())


def run(capsys, schema, *argv: str) -> tuple[int, dict]:
    code = main(["run", *argv, "--json"])
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, schema)
    return code, data


def test_spellings() -> None:
    spec = parse_call("f(2, -3, 1.5, 'x', 0x10, 5000000000)")
    assert (spec.symbol, spec.restype, spec.declared) == ("f", "int", False)
    assert spec.argtypes == ("int", "int", "double", "str", "int", "int64")
    assert spec.args == (2, -3, 1.5, "x", 16, 5000000000)
    assert spec.signature == "int f(int, int, double, str, int, int64)"
    spec = parse_call("f:int64(int64, const char *)", ["7", "hi"])
    assert (spec.restype, spec.argtypes, spec.args, spec.declared) == \
        ("int64", ("int64", "str"), (7, "hi"), True)
    assert parse_call("f(1):double").restype == "double"
    assert parse_call("f", ["1", "2.5", "word"]).argtypes == ("int", "double", "str")
    assert parse_call("f", restype="void").declared is True
    assert parse_call("g").signature == "int g(void)"
    for bad, args, words in [("f(1", [], "cannot read"), ("f:int(int)", [], "takes 1"),
                             ("f(1)", ["2"], "not both"), ("f:quux()", [], "unknown return"),
                             ("f:int(uint8)", ["256"], "does not fit"),
                             ("f(open)", [], "cannot read the arguments"),
                             ("f:int(int)", ["x"], "not a int")]:
        with pytest.raises(ValueError, match=words):
            parse_call(bad, args)
    with pytest.raises(ValueError, match="contradicts"):
        parse_call("f:int()", restype="double")


def test_literal_arguments(capsys, schema, native) -> None:
    code, data = run(capsys, schema, str(native("c_calls")), "--call", "calls_add(2, 3)")
    assert code == 0
    assert data["call"] == {"symbol": "calls_add", "restype": "int", "times": 1,
                            "last_result": 5, "argtypes": ["int", "int"], "args": [2, 3],
                            "declared": False, "signature": "int calls_add(int, int)"}


def test_declared_signatures(capsys, schema, native) -> None:
    lib = str(native("c_calls"))
    code, data = run(capsys, schema, lib, "--call", "calls_mul64:int64(int64,int64)",
                     "--arg", str(2**40), "--arg", "-3")
    assert code == 0 and data["call"]["last_result"] == -3 * 2**40
    assert data["call"]["declared"] is True
    code, data = run(capsys, schema, lib, "--call", "calls_scale(1.5, 4.0):double")
    assert data["call"]["last_result"] == 6.0
    code, data = run(capsys, schema, lib, "--call", 'calls_strlen("héllo")', "--restype",
                     "size_t")
    assert data["call"]["last_result"] == len("héllo".encode())
    code, data = run(capsys, schema, lib, "--call", "calls_greeting:str")
    assert data["call"]["last_result"] == "hello from calls"
    code, data = run(capsys, schema, lib, "--call", "calls_is_seven:uint(uint8)",
                     "--arg", "7", "--times", "3")
    assert data["call"]["last_result"] == 1 and data["call"]["times"] == 3


def test_isolated_child_gets_the_same_call(capsys, schema, native) -> None:
    code, data = run(capsys, schema, str(native("c_calls")), "--isolated",
                     "--call", "calls_add:int(int,int)", "--arg", "40", "--arg", "2")
    assert code == 0 and data["isolated"] is True
    assert data["call"]["last_result"] == 42 and data["call"]["args"] == [40, 2]


def test_untyped_call_says_so(capsys, native) -> None:
    assert main(["run", str(native("c_plain")), "--call", "plain_bump"]) == 0
    out = capsys.readouterr().out
    assert "called int plain_bump(void) x1 -> 1" in out
    assert "return type not declared: read as int" in out


def test_bad_calls_are_usage_errors_before_loading(capsys, native) -> None:
    lib = str(native("c_calls"))
    for argv in (["--call", "calls_add:int(int,int)", "--arg", "1"],
                 ["--call", "calls_add(1"], ["--arg", "1"],
                 ["--call", "calls_is_seven:uint(uint8)", "--arg", "300"]):
        assert main(["run", lib, *argv]) == 2, argv
        _, err = capsys.readouterr()
        assert err.startswith("relib-pure run: ") and "Traceback" not in err
    assert main(["run", lib, "--call", "calls_add(1", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "usage"
