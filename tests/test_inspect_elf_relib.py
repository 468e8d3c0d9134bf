"""The format-neutral relib helpers: compilation-info decoding and symbol classification."""

from __future__ import annotations

import pytest

from relib_pure import abi
from relib_pure.errors import InspectionError
from relib_pure.inspection.relib_info import classify_relib_symbols, decode_compilation_info

RUSTC = "1.95.0 (59807616e 2026-04-14)"


@pytest.mark.parametrize("raw, version, unloading, generation", [
    (f"{RUSTC}|x86_64-unknown-linux-gnu|22.1.2|0.1.8", "0.1.8", None, "0.1.8"),
    (f"{RUSTC}|x86_64-unknown-linux-gnu|22.1.2|0.2.3|1", "0.2.3", True, "0.2.3"),
    (f"{RUSTC}|x86_64-unknown-linux-gnu|22.1.2|0.5.0|0", "0.5.0", False, "0.4.1-0.6"),
    (f"{RUSTC}|x86_64-unknown-linux-gnu|22.1.2|0.7.0|1", "0.7.0", True, "0.7"),
    (f"{RUSTC}|x86_64-unknown-linux-gnu|22.1.2|0.9.0|1", "0.9.0", True, None),
    (f"{RUSTC}|x86_64-unknown-linux-gnu|22.1.2|main|1", "main", True, None),
])
def test_decode(raw: str, version: str, unloading: bool | None,
                generation: str | None) -> None:
    info = decode_compilation_info(raw, "rela")
    assert info.raw == raw and info.source == "rela"
    assert info.rustc_version == RUSTC
    assert info.host_triple == "x86_64-unknown-linux-gnu"
    assert info.llvm_version == "22.1.2"
    assert info.relib_version == version
    assert info.unloading is unloading
    assert info.generation == generation
    assert info.unloading_enabled == (unloading is not False)


@pytest.mark.parametrize("raw, words", [
    ("just one field", "fields"),
    (f"{RUSTC}|x|y|0.7.0|1|extra", "fields"),
    (f"{RUSTC}|x|y|0.7.0|yes", "unloading flag"),
    (f"{RUSTC}|x|y|0.7.0", "writes 5"),
    (f"{RUSTC}|x|y|0.1.8|1", "writes 4"),
])
def test_decode_rejects(raw: str, words: str) -> None:
    with pytest.raises(InspectionError) as e:
        decode_compilation_info(raw, "in-place")
    assert e.value.code == "inspect.malformed"
    assert words in e.value.message


def test_classify() -> None:
    names = [
        abi.COMPILATION_INFO_SYMBOL,
        "__relib__main", "__post__relib__main", "__relib__before_unload",
        "__relib__Exports_add", "__relib__Exports_make_point", "__post__relib__Exports_make_point",
        "__relib__Imports_log", "__relib__Imports_get_name", "__post__relib__Imports_get_name",
        abi.internal_export("init"), abi.internal_export("exit"),
        abi.internal_import("on_alloc"),
        "pthread_create", "mmap64", "unrelated_function",
    ]
    code = {n for n in names if not n.startswith(("__relib__Imports", abi.INTERNAL_IMPORT_PREFIX,
                                                  "__RELIB__"))}
    relib = classify_relib_symbols(names, code, None, "missing")
    assert relib.compilation_info is None and relib.compilation_info_error == "missing"
    assert relib.has_main and relib.has_before_unload
    exports = {f.symbol: f for f in relib.exports}
    assert set(exports) == {"__relib__main", "__relib__before_unload", "__relib__Exports_add",
                            "__relib__Exports_make_point"}
    assert exports["__relib__before_unload"].trait is None
    assert exports["__relib__before_unload"].name == "before_unload"
    assert exports["__relib__main"].boxed
    assert exports["__relib__main"].post_symbol == "__post__relib__main"
    point = exports["__relib__Exports_make_point"]
    assert (point.trait, point.name, point.boxed) == ("Exports", "make_point", True)
    assert not exports["__relib__Exports_add"].boxed
    imports = {f.symbol: f for f in relib.imports}
    assert set(imports) == {"__relib__Imports_log", "__relib__Imports_get_name"}
    assert imports["__relib__Imports_get_name"].boxed
    assert relib.internal_exports == tuple(sorted([abi.internal_export("exit"),
                                                   abi.internal_export("init")]))
    assert relib.internal_imports == (abi.internal_import("on_alloc"),)
    assert relib.hooks == ("mmap64", "pthread_create")
    assert set(relib.exports_by_trait) == {None, "Exports"}
    assert [f.name for f in relib.imports_by_trait["Imports"]] == ["get_name", "log"]


def test_main_must_be_code() -> None:
    relib = classify_relib_symbols(["__relib__main"], set())
    assert not relib.has_main
    assert [f.symbol for f in relib.imports] == ["__relib__main"]
