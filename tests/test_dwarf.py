"""Signatures read from DWARF (``relib_pure.inspection.dwarf``) on C libraries built with -g."""

from __future__ import annotations

import json
import random
import time
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from relib_pure.cli.main import main
from relib_pure.errors import InspectionError
from relib_pure.inspection import inspect, inspect_bytes
from relib_pure.inspection.dwarf import read_debug_info


@pytest.fixture(scope="module")
def v1(native) -> Path:
    return native("dwarf_sig_v1")


@pytest.fixture(scope="module")
def v2(native) -> Path:
    return native("dwarf_sig_v2")


def _sig(path: Path, symbol: str):
    debug = inspect(path, signatures=True).debug
    assert debug is not None and debug.status == "ok", debug
    sig = debug.find(symbol)
    assert sig is not None, f"{symbol} not among {[s.symbol for s in debug.signatures]}"
    return sig


def test_parameters_names_and_sizes(v1) -> None:
    sig = _sig(v1, "sig_add")
    assert sig.role == "function" and sig.convention is None
    assert [(p.name, p.type.name, p.type.kind, p.type.size) for p in sig.params] == [
        ("a", "int", "signed", 4), ("b", "int", "signed", 4)]
    assert (sig.returns.name, sig.returns.size) == ("int", 4)
    count = _sig(v1, "sig_count")
    assert [(p.type.kind, p.type.size) for p in count.params] == [("unsigned", 4)]
    scale = _sig(v1, "sig_scale")
    assert [(p.name, p.type.kind, p.type.size) for p in scale.params] == [("x", "float", 8)]
    assert _sig(v1, "sig_noop").returns.kind == "void"


def test_struct_fields_and_offsets(v1, v2) -> None:
    point = _sig(v1, "sig_point_x").params[0].type
    assert (point.name, point.kind, point.size) == ("struct sig_point", "struct", 8)
    assert [(f.name, f.offset, f.type.size) for f in point.fields] == [("x", 0, 4), ("y", 4, 4)]
    made = _sig(v1, "sig_span_make").returns
    assert [(f.name, f.offset) for f in made.fields] == [("ptr", 0), ("len", 8)]
    assert made.size == 16
    grown = _sig(v2, "sig_span_make").returns
    assert [(f.name, f.offset) for f in grown.fields] == [("ptr", 0), ("flags", 8), ("len", 16)]
    assert grown.size == 24
    # a pointer names its target; size_t is seen through its typedef
    param = _sig(v1, "sig_span_len").params[0].type
    assert param.kind == "pointer" and param.size == 8
    assert param.target is not None and param.target.name == "struct sig_span"
    assert _sig(v1, "sig_span_len").returns.typedef == "size_t"


def test_only_units_holding_symbols_are_read(v1) -> None:
    debug = read_debug_info(inspect(v1))
    assert debug.units_read == debug.units_total == 1
    assert debug.dwarf_version in (4, 5)
    # an exported variable's signature is its type (found among the unit's
    # top-level entries: address ranges cover code only)
    (event,) = [s for s in debug.signatures if s.symbol == "sig_on_event"]
    assert event.role == "variable" and event.params == ()
    assert (event.returns.kind, event.returns.typedef) == ("function-pointer", "sig_callback")
    (table,) = [s for s in debug.signatures if s.symbol == "sig_table"]
    assert (table.returns.kind, table.returns.size) == ("array", 16)
    assert debug.missing == ()


def test_no_dwarf_is_said_plainly(native) -> None:
    debug = inspect(native("dwarf_sig_nodebug"), signatures=True).debug
    assert debug is not None
    assert debug.status == "absent" and debug.signatures == ()
    assert "no DWARF" in (debug.message or "") and "stripped" in (debug.message or "")


def test_pe_is_unsupported_not_an_error(native) -> None:
    debug = inspect(native("pe_dll"), signatures=True).debug
    assert debug is not None and debug.status == "unsupported"


def test_inspect_json_carries_signatures(capsys, v1, native) -> None:
    schema = json.loads((resources.files("relib_pure") / "schemas" / "inspect.json").read_text())
    code = main(["inspect", "--json", str(v1), str(native("dwarf_sig_nodebug"))])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    debug = doc["libraries"][0]["debug"]
    by_symbol = {s["symbol"]: s for s in debug["signatures"]}
    assert [p["name"] for p in by_symbol["sig_span_make"]["params"]] == ["p", "n"]
    assert doc["libraries"][1]["debug"]["status"] == "absent"
    assert main(["inspect", "--json", "--no-signatures", str(v1)]) == 0
    assert json.loads(capsys.readouterr()[0])["libraries"][0]["debug"] is None


def test_inspect_text_lists_signatures(capsys, v1) -> None:
    assert main(["inspect", str(v1)]) == 0
    out = capsys.readouterr()[0]
    assert "signatures (11):" in out  # 9 functions, 2 variables
    assert "sig_span_make(p: char *, n: size_t) -> struct sig_span" in out
    assert "sig_on_event: sig_callback" in out
    assert "debug:" in out and "1 of 1 compile unit(s)" in out


def _section_range(data: bytes, name: bytes) -> tuple[int, int]:
    """(offset, size) of a section, read from the ELF64 section headers."""
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(data[0x3E:0x40], "little")

    def header(i: int) -> tuple[int, int, int]:
        h = data[shoff + i * shentsize: shoff + (i + 1) * shentsize]
        return (int.from_bytes(h[0:4], "little"), int.from_bytes(h[0x18:0x20], "little"),
                int.from_bytes(h[0x20:0x28], "little"))
    _, stroff, _ = header(shstrndx)
    for i in range(shnum):
        nameoff, off, size = header(i)
        if data[stroff + nameoff:].split(b"\0", 1)[0] == name:
            return off, size
    raise AssertionError(f"no section {name!r}")


def test_corrupt_unit_header_is_a_typed_error(v1) -> None:
    data = bytearray(v1.read_bytes())
    off, _ = _section_range(bytes(data), b".debug_info")
    data[off + 4:off + 6] = (77).to_bytes(2, "little")  # DWARF version 77
    with pytest.raises(InspectionError) as caught:
        inspect_bytes(bytes(data), str(v1), signatures=True)
    assert caught.value.code == "inspect.bad-dwarf"
    assert caught.value.path == str(v1) and "DWARF" in str(caught.value)


def test_mutated_dwarf_is_read_or_refused_in_bounded_time(v1) -> None:
    clean = v1.read_bytes()
    info = inspect(v1)
    spans = [_section_range(clean, n) for n in (b".debug_info", b".debug_abbrev")]
    rng = random.Random(10)
    refused = 0
    for _ in range(60):
        data = bytearray(clean)
        off, size = spans[rng.randrange(len(spans))]
        for _ in range(rng.randint(1, 4)):
            data[off + rng.randrange(size)] = rng.randrange(256)
        start = time.perf_counter()
        try:
            debug = read_debug_info(info, bytes(data))
            assert debug.status == "ok"
        except InspectionError as e:
            assert e.code == "inspect.bad-dwarf", e
            refused += 1
        assert time.perf_counter() - start < 2.0
    assert refused > 0  # the mutations do reach the parser


def test_die_budget_leaves_the_rest_unread(v1, monkeypatch) -> None:
    from relib_pure.inspection import dwarf

    monkeypatch.setattr(dwarf, "MAX_DIES", 20)
    debug = read_debug_info(inspect(v1))
    assert debug.status == "ok" and debug.skipped > 0
    assert "reading bound" in (debug.message or "")
    assert len(debug.signatures) + debug.skipped == 9


def test_compressed_debug_info_is_read(tmp_path, v1) -> None:
    """objcopy --compress-debug-sections (SHF_COMPRESSED, zlib): the same signatures."""
    import shutil
    import subprocess

    objcopy = shutil.which("objcopy")
    if objcopy is None:
        pytest.skip("objcopy (binutils) missing")
    packed = tmp_path / "libpacked.so"
    subprocess.run([objcopy, "--compress-debug-sections=zlib", str(v1), str(packed)],
                   check=True)
    plain = read_debug_info(inspect(v1))
    debug = read_debug_info(inspect(packed))
    assert [s.to_dict() for s in debug.signatures] == [s.to_dict() for s in plain.signatures]
    # a compression header claiming 1 TB uncompressed is refused before inflating
    data = bytearray(packed.read_bytes())
    off, _ = _section_range(bytes(data), b".debug_info")
    data[off + 8:off + 16] = (1 << 40).to_bytes(8, "little")  # Elf64_Chdr.ch_size
    with pytest.raises(InspectionError) as caught:
        inspect_bytes(bytes(data), "bomb.so", signatures=True)
    assert caught.value.code == "inspect.bad-dwarf" and "uncompressed" in str(caught.value)
