"""Declared signatures against DWARF in ``check()`` (C libraries built with -g)."""

from __future__ import annotations

import ctypes
from ctypes import c_char_p, c_double, c_int, c_int32, c_int64, c_size_t, c_uint32, c_uint64

import pytest

from relib_pure.compat import Policy, check
from relib_pure.errors import IncompatibleModuleError
from relib_pure.interface import Interface


class Point(ctypes.Structure):
    _fields_ = [("x", c_int32), ("y", c_int32)]


class SpanV1(ctypes.Structure):
    _fields_ = [("ptr", c_char_p), ("len", c_size_t)]


class Wide(ctypes.Structure):
    _fields_ = [("xy", c_int64)]  # Point's size, not its layout


GOOD = {"sig_add": (c_int, [c_int, c_int]), "sig_point_x": (c_int32, [Point]),
        "sig_span_make": (SpanV1, [c_char_p, c_size_t]), "sig_scale": (c_double, [c_double]),
        "sig_span_len": (c_size_t, [ctypes.POINTER(SpanV1)]), "sig_noop": (None, [])}


def _report(path, exports):
    return check(path, Policy(interface=Interface.from_dict(exports), resolve=False))


def test_correct_declaration_passes(native) -> None:
    report = _report(native("dwarf_sig_v1"), GOOD)
    assert report.ok, report.findings
    (agreed,) = report.by_code("interface.signatures-checked")
    assert sorted(agreed.details["symbols"]) == sorted(GOOD)


def test_class_declaration_passes(native) -> None:
    class Exports:
        def sig_add(a: c_int, b: c_int) -> c_int: ...  # type: ignore[empty-body]
        def sig_point_x(p: Point) -> c_int32: ...  # type: ignore[empty-body]

    report = check(native("dwarf_sig_v1"), Policy(interface=Interface.from_class(Exports),
                                                  resolve=False))
    assert report.ok and report.by_code("interface.signatures-checked")


def test_missing_parameter_is_an_arity_error(native) -> None:
    report = _report(native("dwarf_sig_v2"), {**GOOD, "sig_scale": (c_double, [c_double])})
    (err,) = report.by_code("interface.signature-arity")
    assert err.severity == "error"
    assert err.details["symbol"] == "sig_scale"
    assert "declared 1 parameter(s) (c_double), the library has 2" in err.message
    assert "2 'factor': double" in err.message


def test_wrong_parameter_type_names_parameter_declared_and_found(native) -> None:
    report = _report(native("dwarf_sig_v2"), {"sig_count": (c_uint32, [c_uint32])})
    errors = report.by_code("interface.signature-type")
    assert [e.details["parameter"] for e in errors] == [1, None]  # parameter, then return
    param = errors[0]
    assert "sig_count: parameter 1 'n'" in param.message
    assert "declared c_uint (4 bytes)" in param.message
    assert "uint64_t (8 bytes, unsigned)" in param.message
    assert param.details["found"]["size"] == 8
    # the same declaration is right for the old build
    assert _report(native("dwarf_sig_v1"), {"sig_count": (c_uint32, [c_uint32])}).ok
    assert _report(native("dwarf_sig_v2"), {"sig_count": (c_uint64, [c_uint64])}).ok


def test_struct_that_grew_is_refused(native) -> None:
    report = _report(native("dwarf_sig_v2"), {"sig_span_make": (SpanV1, [c_char_p, c_size_t])})
    (err,) = report.by_code("interface.signature-type")
    assert "return" in err.message and "struct sig_span (24 bytes" in err.message
    with pytest.raises(IncompatibleModuleError) as caught:
        report.raise_for_errors()
    assert caught.value.code == "compat.signature-mismatch"
    assert "sig_span_make" in str(caught.value)


def test_same_size_other_layout_is_a_layout_error(native) -> None:
    report = _report(native("dwarf_sig_v1"), {"sig_point_x": (c_int32, [Wide])})
    (err,) = report.by_code("interface.signature-layout")
    assert "int 4@0, int 4@4" in err.message and "int 8@0" in err.message


def test_float_for_int_is_refused(native) -> None:
    report = _report(native("dwarf_sig_v1"), {"sig_add": (c_int, [c_int, ctypes.c_float])})
    (err,) = report.by_code("interface.signature-type")
    assert "parameter 2 'b'" in err.message and "c_float" in err.message


def test_without_dwarf_nothing_is_compared(native) -> None:
    report = _report(native("dwarf_sig_nodebug"), {"sig_add": (c_int, [c_int])})
    assert report.ok
    (note,) = report.by_code("interface.signatures-unchecked")
    assert "no DWARF" in note.message


def test_dwarf_read_once_per_file_identity(native, tmp_path) -> None:
    """Reloading an unchanged debug build reuses its signatures; a rewritten file is read again."""
    import shutil

    from relib_pure.runtime.validate import debug_info, validate

    path = tmp_path / "libdwarf_sig.so"
    shutil.copy2(native("dwarf_sig_v1"), path)
    first = debug_info(validate(path, check=False))
    assert first.find("sig_old") is not None
    assert debug_info(validate(path, check=False)) is first
    shutil.copyfile(native("dwarf_sig_v2"), path)  # same path, other bytes
    again = debug_info(validate(path, check=False))
    assert again is not first and again.find("sig_new") is not None


def test_corrupt_dwarf_leaves_signatures_unchecked_with_a_warning(native, tmp_path) -> None:
    from test_dwarf import _section_range  # noqa: E402 - the tests' ELF section finder

    data = bytearray(native("dwarf_sig_v1").read_bytes())
    off, _ = _section_range(bytes(data), b".debug_info")
    data[off + 4:off + 6] = (77).to_bytes(2, "little")  # DWARF version 77
    path = tmp_path / "libcorrupt.so"
    path.write_bytes(bytes(data))
    report = _report(path, GOOD)
    (warning,) = report.by_code("interface.signatures-unchecked")
    assert warning.severity == "warning" and warning.details["code"] == "inspect.bad-dwarf"
    assert "corrupt DWARF" in warning.message
