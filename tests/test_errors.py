"""The error tree and its codes are public API: freeze them."""

from __future__ import annotations

import pickle

import pytest

import relib_pure
from relib_pure import errors

FROZEN_CODES = {
    "inspect.not-found", "inspect.not-a-file", "inspect.permission", "inspect.io",
    "inspect.empty", "inspect.unknown-format", "inspect.truncated", "inspect.malformed",
    "inspect.not-a-library", "inspect.unsupported", "inspect.no-compilation-info",
    "inspect.too-large",
    "compat.failed", "compat.unsupported-relib", "compat.compilation-mismatch", "compat.arch",
    "load.dlopen", "load.already-loaded", "load.symbol-missing", "load.path-not-utf8",
    "load.swapped", "load.init-failed",
    "call.unloaded", "call.panicked", "call.wrong-thread", "call.failed",
    "unload.before-unload-panicked", "unload.threads-running", "unload.dlclose",
    "unload.still-mapped", "unload.wrong-thread",
    "reload.failed",
}


def test_codes_are_frozen() -> None:
    # Adding a code is fine (add it here too); removing or renaming one breaks users.
    assert FROZEN_CODES <= set(errors.ERROR_CODES), FROZEN_CODES - set(errors.ERROR_CODES)


def test_every_exception_is_a_relib_error_with_a_known_default_code() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.RelibError)
            assert obj.default_code in errors.ERROR_CODES
            assert obj.__doc__, f"{name} needs a docstring"


def test_unknown_code_is_refused() -> None:
    with pytest.raises(ValueError):
        errors.RelibError("x", code="no.such-code")


def test_message_names_file_and_code_and_pickles() -> None:
    e = errors.SymbolMissing("missing: a, b", path="/tmp/libx.so", symbols=("a", "b"))
    assert str(e) == "/tmp/libx.so: missing: a, b [load.symbol-missing]"
    assert isinstance(e, errors.LoadError) and isinstance(e, OSError)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is errors.SymbolMissing
    assert back.symbols == ("a", "b") and back.path == "/tmp/libx.so"
    assert back.code == "load.symbol-missing" and str(back) == str(e)
    assert e.to_dict() == {"code": "load.symbol-missing", "message": "missing: a, b",
                           "path": "/tmp/libx.so"}


def test_inspection_error_is_value_error() -> None:
    e = errors.InspectionError("bad", path="p", code="inspect.truncated")
    assert isinstance(e, ValueError) and isinstance(e, relib_pure.RelibError)


def test_package_exports_errors_and_lazy_names() -> None:
    assert relib_pure.ModuleUnloaded is errors.ModuleUnloaded
    with pytest.raises(AttributeError):
        relib_pure.no_such_name  # noqa: B018
