"""Declaring a relib module's interface from its Rust trait files (``Interface.from_rust``).

The trait texts below are the fixture module's interface (docs/fixture-module.md)
written the way a relib shared crate writes it; the parsed declarations drive a
real module of generations 0.2.3 (convention A) and 0.7 (convention B).
"""

from __future__ import annotations

import ctypes
import textwrap

import pytest

from relib_pure.errors import InspectionError
from relib_pure.interface import Interface
from relib_pure.relib import RStr, RString, RVecU8, U128, load_module
from relib_pure.relib.rust_interface import parse_rust_trait
from test_relib_host_support import GENERATION_FIXTURES, I32_MIN, ONES, HostImports, Point

EXPORTS_RS = textwrap.dedent("""
    use abi_stable::std_types::{RStr, RString, RVec};
    use crate::Point;

    /// exported by the module
    pub trait Exports {
        fn empty();
        fn primitive(x: i32);
        fn primitive_ret(x: i32) -> i32;
        fn add(a: u64, b: u64) -> u64;
        fn ref_<'a>(s: RStr<'a>);
        fn ref_owned_ret(s: RStr) -> RString;
        fn ref_ret<'a>(s: RStr<'a>) -> RStr<'a>;
        fn ref_ret2<'a>(a: RStr<'a>, b: RStr<'_>) -> RStr<'a>;
        // a comment mentioning fn not_a_function();
        fn point(x: i32, y: i32) -> Point;
        fn alloc_mem(n: usize) -> RVec<u8>;
        fn leak(n: usize);
        fn call_imports() -> bool;
        fn counter() -> u64 /* boxed? no: u64 is a stable-copy type */;
    }
""")

IMPORTS_RS = textwrap.dedent("""
    pub trait Imports {
        fn empty();
        fn primitive(x: i32);
        fn primitive_ret(x: i32) -> i32;
        fn ref_(s: RStr);
        fn ref_ret(s: RStr) -> RStr;
        fn point(x: i32, y: i32) -> Point;
        fn on_tls_drop() {}
        fn panic();
    }
""")


@pytest.fixture
def trait_files(tmp_path):
    exports = tmp_path / "exports.rs"
    imports = tmp_path / "imports.rs"
    exports.write_text(EXPORTS_RS)
    imports.write_text(IMPORTS_RS)
    return exports, imports


def test_parse_types_and_symbols(trait_files) -> None:
    exports, _ = trait_files
    api = Interface.from_rust(exports, "Exports", {"Point": Point})
    assert not api.imports
    by_name = {f.name: f for f in api.exports}
    assert list(by_name)[:3] == ["empty", "primitive", "primitive_ret"]
    assert "not_a_function" not in by_name
    assert by_name["add"].symbol == "__relib__Exports_add"
    assert (by_name["add"].restype, by_name["add"].argtypes) == (ctypes.c_uint64,
                                                                (ctypes.c_uint64,) * 2)
    assert by_name["ref_ret2"].argtypes == (RStr, RStr)
    assert by_name["alloc_mem"].restype is RVecU8
    assert by_name["ref_owned_ret"].restype is RString
    assert by_name["point"].restype is Point
    assert by_name["empty"].restype is None and by_name["empty"].argtypes == ()
    # the spelling (lifetimes dropped) is kept: relib decides boxing on it
    assert by_name["ref_ret"].rust_return == "RStr"
    assert by_name["counter"].rust_return == "u64"


@pytest.mark.parametrize("gen", ["0.2.3", "0.7"])
def test_parsed_interface_drives_the_module(native, trait_files, gen: str) -> None:
    exports, imports = trait_files
    structs = {"Point": Point}
    api = Interface.from_rust(exports, "Exports", structs).merge(
        Interface.from_rust(imports, "Imports", structs))
    host = HostImports(gen)
    with load_module(native(GENERATION_FIXTURES[gen]), interface=api,
                     imports=host.implementations()) as m:
        ex = m.exports
        assert ex.primitive_ret(I32_MIN) == I32_MIN
        assert ex.ref_owned_ret("héllo") == "héllo"
        assert ex.ref_ret2("a", "b") == "a"
        assert ex.alloc_mem(3) == b"***"
        assert (ex.point(1, 2).x, ex.point(1, 2).y) == (1, 2)
        assert ex.call_imports() is True
        assert ex.counter() == 1
        if gen == "0.7":
            # the module's __post symbols agree with relib's rule on the spellings
            assert ex.ref_owned_ret.boxed and ex.point.boxed and not ex.counter.boxed
    assert ("ref_", ONES) in host.calls and ("point", (3, -4)) in host.calls


def test_u128_and_pointers_and_paths(tmp_path) -> None:
    f = tmp_path / "t.rs"
    f.write_text("pub trait Api { fn a(x: u128, p: *const u8, q: &mut Point) -> "
                 "core::primitive::u8; fn b() -> *mut Point; }")
    api = parse_rust_trait(f, "some::path::Api", {"Point": Point})
    a, b = api.exports
    assert a.symbol == "__relib__Api_a"  # only the last path segment names the trait
    assert a.argtypes == (U128, ctypes.c_void_p, ctypes.c_void_p)
    assert a.restype is ctypes.c_uint8 and a.rust_return == "core::primitive::u8"
    assert b.restype is ctypes.c_void_p


@pytest.mark.parametrize("text,needle", [
    ("pub trait Exports { fn f(s: &str); }", "fat pointer"),
    ("pub trait Exports { fn f() -> Option<u8>; }", "Option<u8>"),
    ("pub trait Exports { fn f(&self); }", "self"),
    ("pub trait Exports { fn f() -> Point; }", "Point"),
])
def test_unsupported_types_name_file_function_and_type(tmp_path, text: str, needle: str) -> None:
    f = tmp_path / "exports.rs"
    f.write_text(text)
    with pytest.raises(InspectionError) as info:
        parse_rust_trait(f, "Exports")
    assert info.value.code == "inspect.unsupported"
    assert info.value.path == str(f)
    assert needle in info.value.message and "Exports::f" in info.value.message


def test_missing_trait_and_file(tmp_path) -> None:
    f = tmp_path / "exports.rs"
    f.write_text("pub trait Other { fn f(); }")
    with pytest.raises(InspectionError) as info:
        parse_rust_trait(f, "Exports")
    assert info.value.code == "inspect.malformed" and "Exports" in info.value.message
    with pytest.raises(InspectionError) as info:
        parse_rust_trait(tmp_path / "nope.rs", "Exports")
    assert info.value.code == "inspect.not-found"
    f.write_bytes(b"pub trait Exports { fn f(); } \xff\xfe")
    with pytest.raises(InspectionError) as info:
        parse_rust_trait(f, "Exports")
    assert info.value.code == "inspect.malformed"


def test_char_literals_in_default_bodies(tmp_path) -> None:
    # a '{' or '}' char literal must not unbalance the trait body; lifetimes stay lifetimes
    f = tmp_path / "exports.rs"
    f.write_text("pub trait Exports {\n"
                 "    fn open() -> u8 { let _c = '{'; let _q = '\\''; b'x' }\n"
                 "    fn close<'a>(s: RStr<'a>) -> RStr<'a> { let _c = '}'; s }\n"
                 "    fn last(x: u32) -> u32;\n"
                 "}\n")
    api = parse_rust_trait(f, "Exports")
    assert [(fn.name, fn.restype, fn.argtypes) for fn in api.exports] == [
        ("open", ctypes.c_uint8, ()), ("close", RStr, (RStr,)),
        ("last", ctypes.c_uint32, (ctypes.c_uint32,))]
