"""The protocol-generation table (relib-abi.md §0) as data."""

from __future__ import annotations

import pytest

from relib_pure import abi


@pytest.mark.parametrize("version,gen", [
    ("0.1.8", "0.1.8"), ("0.2.0", "0.2"), ("0.2.2", "0.2"), ("0.2.3", "0.2.3"),
    ("0.3.0", "0.3"), ("0.4.0", "0.4.0"), ("0.4.1", "0.4.1-0.6"), ("0.5.0", "0.4.1-0.6"),
    ("0.6.2", "0.4.1-0.6"), ("0.7.0", "0.7"),
])
def test_generation_for(version: str, gen: str) -> None:
    g = abi.generation_for(version)
    assert g is not None and g.name == gen


@pytest.mark.parametrize("version", ["0.1.7", "0.0.1", "1.0.0", "0.8.0", "x.y", ""])
def test_unsupported_versions(version: str) -> None:
    assert abi.generation_for(version) is None


def test_generation_differences() -> None:
    g018, g07 = abi.generation_for("0.1.8"), abi.generation_for("0.7.0")
    assert g018 and g07
    assert not g018.has_unloading_flag and g07.has_unloading_flag
    assert "eprintln" in g018.internal_imports and "eprintln" not in g07.internal_imports
    assert "is_ptr_allocated" in g07.internal_imports
    assert g018.cleanup_export is None and g07.cleanup_export == "misc_cleanup"
    assert abi.generation_for("0.4.0").cleanup_export == "unmap_all_mmaps"  # type: ignore[union-attr]
    assert g07.init_has_alloc_tracker_flag and not g018.init_has_alloc_tracker_flag


def test_symbol_names() -> None:
    # relib-abi.md §1.1: 5 underscores before Internal, 4 after Exports
    assert abi.internal_export("init") == "__relib_____Internal___Exports____init"
    assert abi.internal_import("on_alloc") == "__relib_____Internal___Imports____on_alloc"
    assert abi.public_symbol("Exports", "alloc_mem") == "__relib__Exports_alloc_mem"
    assert abi.public_symbol(None, "main") == "__relib__main"
    assert abi.post_symbol("__relib__main") == "__post__relib__main"


def test_boxing_rule() -> None:
    g03, g07, g02 = (abi.generation_for(v) for v in ("0.3.0", "0.7.0", "0.2.0"))
    assert g03 and g07 and g02
    assert not abi.type_needs_box("i32", g03)
    assert abi.type_needs_box("f64", g03) and not abi.type_needs_box("f64", g07)
    assert not abi.type_needs_box("*const u8", g03) and not abi.type_needs_box("&str", g03)
    assert abi.type_needs_box("core::primitive::u8", g07)
    assert abi.type_needs_box("RStr<'a>", g07)
    assert not abi.type_needs_box("RString", g02)  # convention A never boxes
