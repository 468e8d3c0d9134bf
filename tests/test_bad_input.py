"""Bad input: every file that is not a readable library gives a typed
:class:`~relib_pure.errors.InspectionError` naming the file and the problem,
through ``relib_pure.inspect``, ``relib_pure.check`` and the CLI (exit 2, one
line on stderr), within a time bound; never a raw pyelftools/pefile/struct
traceback, never a hang.

Corruptions are written at offsets found by parsing the pristine fixture (with
the fuzzer's field finder, ``tools/fuzz_fields.py``), so each case states
exactly what it breaks.
"""

from __future__ import annotations

import ctypes

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import relib_pure
from relib_pure.cli.main import main as cli_main
from relib_pure.errors import InspectionError, RelibError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import fuzz_fields  # noqa: E402

#: Seconds one inspection may take before it counts as a hang (real cases take ms).
TIME_BOUND = 20.0
BROKEN = {"inspect.truncated", "inspect.malformed"}


class Hang(BaseException):
    """Raised by the timer; a BaseException so no ``except Exception`` swallows it."""


@contextmanager
def time_bound(seconds: float = TIME_BOUND) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def inspect_error(path: Path | str, codes: set[str]) -> InspectionError:
    """``inspect(path)`` must raise an InspectionError with one of ``codes``."""
    with time_bound(), pytest.raises(InspectionError) as caught:
        relib_pure.inspect(path)
    err = caught.value
    assert isinstance(err, RelibError)
    assert err.code in codes, f"{err.code}: {err.message}"
    assert err.path == os.fspath(path)
    assert err.message and os.fspath(path) in str(err)
    return err


def everywhere(path: Path | str, codes: set[str],
               capsys: pytest.CaptureFixture[str]) -> InspectionError:
    """The same typed error from inspect(), check() and ``relib-pure inspect/check``."""
    err = inspect_error(path, codes)
    name = os.fspath(path)
    with time_bound(), pytest.raises(InspectionError) as caught:
        relib_pure.check(path)
    assert (caught.value.code, caught.value.path) == (err.code, name)
    capsys.readouterr()
    commands = [["inspect", name], ["inspect", "--json", name], ["check", name],
                ["check", "--json", name]]
    for argv in commands:
        with time_bound():
            status = cli_main(argv)
        out, errout = capsys.readouterr()
        assert status == 2, argv
        if "--json" in argv:
            doc = json.loads(out)
            assert doc["version"] == 1
            errors = doc["errors"] if argv[0] == "inspect" else [doc["error"]]
            assert [(e["code"], e["path"]) for e in errors] == [(err.code, name)]
        else:
            lines = errout.strip().splitlines()
            assert len(lines) == 1, errout
            assert name in lines[0] and err.code in lines[0] and "Traceback" not in errout
    return err


# -- files that are not libraries at all -----------------------------------------------------


def _random(seed: int, size: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    assert not data.startswith((b"\x7fELF", b"MZ"))
    return data


CONTENT_CASES: dict[str, tuple[bytes, set[str]]] = {
    "empty": (b"", {"inspect.empty"}),
    **{f"random-{n}": (_random(n, n), {"inspect.unknown-format"}) for n in (1, 3, 64, 4096)},
    "text": (b"hello, this is not a library\n", {"inspect.unknown-format"}),
    "elf-magic-cut": (b"\x7fEL", {"inspect.unknown-format"}),
    "elf-magic-only": (b"\x7fELF", BROKEN),
    "elf-ident-only": (b"\x7fELF\x02\x01\x01" + b"\0" * 9, BROKEN),
    "elf-bad-class": (b"\x7fELF\x07\x01\x01" + b"\0" * 57, BROKEN | {"inspect.unsupported"}),
    "mz-only": (b"MZ", BROKEN),
    "mz-dos-program": (b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x40) + b"\0" * 64,
                       {"inspect.unknown-format"}),
    "ar-archive": (b"!<arch>\n" + b"\0" * 64, {"inspect.unknown-format"}),
    "ld-script": (b"/* GNU ld script */\nGROUP ( libc.so.6 )\n", {"inspect.unknown-format"}),
    **{f"macho-{magic.hex()}": (magic + b"\0" * 60, {"inspect.unknown-format"})
       for magic in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                     b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")},
}


@pytest.mark.parametrize("case", sorted(CONTENT_CASES))
def test_content_that_is_not_a_library(case: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data, codes = CONTENT_CASES[case]
    path = tmp_path / f"{case}.so"
    path.write_bytes(data)
    err = everywhere(path, codes, capsys)
    if case.startswith("macho"):
        assert "Mach-O" in err.message


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    everywhere(tmp_path / "missing.so", {"inspect.not-found"}, capsys)


def test_path_through_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain.txt").write_text("x")
    everywhere(tmp_path / "plain.txt" / "lib.so", {"inspect.not-found"}, capsys)


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    everywhere(tmp_path, {"inspect.not-a-file"}, capsys)


def test_fifo_does_not_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a FIFO for reading waits for a writer unless done non-blocking."""
    fifo = tmp_path / "lib.so"
    os.mkfifo(fifo)
    everywhere(fifo, {"inspect.not-a-file"}, capsys)


def test_character_device(capsys: pytest.CaptureFixture[str]) -> None:
    everywhere("/dev/null", {"inspect.not-a-file"}, capsys)


def test_permission_denied_write_only_proc_file(capsys: pytest.CaptureFixture[str]) -> None:
    """A write-only sysctl refuses reading even to root: a real EACCES."""
    path = "/proc/sys/vm/drop_caches"
    try:
        with open(path, "rb"):
            pytest.skip(f"{path} is readable here")
    except PermissionError:
        pass
    except OSError as e:
        pytest.skip(f"{path}: {e}")
    everywhere(path, {"inspect.permission"}, capsys)


UNPRIVILEGED = textwrap.dedent("""
    import json, os, sys
    # everything is imported first: nobody cannot read root's Python installation
    import relib_pure
    import relib_pure.inspection
    from relib_pure.cli.main import build_parser, main
    build_parser()
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    path = sys.argv[1]
    try:
        relib_pure.inspect(path)
        result = {"error": None}
    except relib_pure.InspectionError as e:
        result = {"error": e.to_dict()}
    result["cli"] = main(["inspect", path])
    print(json.dumps(result))
""")


def test_permission_denied_unreadable_file(native: Callable[[str], Path]) -> None:
    """A mode-000 library read by an unprivileged user (root drops to nobody in a child)."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"relib-pure-perm-{os.getpid()}"
    folder.mkdir(mode=0o755, exist_ok=True)
    try:
        folder.chmod(0o755)
        lib = folder / "libsecret.so"
        shutil.copyfile(native("c_plain"), lib)
        lib.chmod(0)
        r = subprocess.run([sys.executable, "-c", UNPRIVILEGED, str(lib)], capture_output=True,
                           text=True, timeout=60, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        if r.returncode != 0 and "Operation not permitted" in r.stderr:
            pytest.skip("cannot drop privileges here: " + r.stderr.strip().splitlines()[-1])
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert result["error"] == {"code": "inspect.permission", "path": str(lib),
                                   "message": "permission denied"}
        assert result["cli"] == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(lib) in lines[0] and "inspect.permission" in lines[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- truncated libraries -------------------------------------------------------------------


def _truncations(data: bytes, dense: int, step: int) -> list[int]:
    return sorted({*range(1, min(dense, len(data))), *range(dense, len(data), step),
                   len(data) - 1})


def _expect_truncated(name: str, data: bytes, cuts: list[int]) -> None:
    wrong = []
    with time_bound(60):
        for n in cuts:
            try:
                relib_pure.inspect_bytes(data[:n], f"{name}[:{n}]")
            except InspectionError as e:
                magic = 2 if data.startswith(b"MZ") else 4
                expected = {"inspect.unknown-format"} if n < magic else BROKEN
                if e.code not in expected or e.path != f"{name}[:{n}]":
                    wrong.append((n, e.code, e.path))
                continue
            wrong.append((n, "no error", None))
    assert not wrong, wrong[:20]


@pytest.mark.parametrize("fixture,dense,step", [
    ("c_plain", 4096, 3),
    ("cxx_unique", 1024, 41),
    ("cross_foreign", 1024, 101),
    ("inspect_elf32", 1024, 37),
    ("inspect_be64", 1024, 37),
    ("pe_dll", 0x600, 53),
    ("pe_dll_minimal", 0x400, 7),
])
def test_truncated_at_many_offsets(native: Callable[[str], Path], fixture: str, dense: int,
                                   step: int) -> None:
    data = native(fixture).read_bytes()
    _expect_truncated(fixture, data, _truncations(data, dense, step))


@pytest.mark.parametrize("fixture", ["rust_plain", "relib_0_7"])
def test_truncated_big_library(native: Callable[[str], Path], fixture: str) -> None:
    """Cuts at every structure the reader trusts, and evenly through the file."""
    data = native(fixture).read_bytes()
    cuts = {max(1, f.offset + d) for f in fuzz_fields.elf_fields(data) for d in (0, 1)}
    cuts |= set(range(1, len(data), len(data) // 150))
    _expect_truncated(fixture, data, sorted(c for c in cuts if c < len(data)))


def test_truncated_file_on_disk(native: Callable[[str], Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The file path route (read or mapped, CLI) too, for ELF and PE files cut mid-file."""
    for fixture in ("c_plain", "pe_dll", "rust_plain"):  # rust_plain: > 1 MB, mapped
        data = native(fixture).read_bytes()
        path = tmp_path / f"cut-{fixture}"
        path.write_bytes(data[:len(data) // 2])
        everywhere(path, {"inspect.truncated"}, capsys)


# -- corrupted headers and tables ----------------------------------------------------------


def _patch(data: bytes, field: fuzz_fields.Field, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(field.endian + fuzz_fields.STRUCT_CODES[field.size], out, field.offset,
                     value & ((1 << (8 * field.size)) - 1))
    return bytes(out)


def _fields(data: bytes) -> dict[str, fuzz_fields.Field]:
    return {f.name: f for f in fuzz_fields.elf_fields(data) or fuzz_fields.pe_fields(data)}


def _section(fields: dict[str, fuzz_fields.Field], kind: str) -> str:
    """``shdr[i:KIND]`` label of the first section of ``kind``."""
    return next(n.rsplit(".", 1)[0] for n in fields if n.startswith("shdr[")
                and n.split(":", 1)[1].startswith(kind + "]"))


def _dyn(data: bytes, fields: dict[str, fuzz_fields.Field], tag: int) -> fuzz_fields.Field:
    """The ``d_val`` field of the first dynamic entry with ``tag``."""
    for name, f in fields.items():
        if name.endswith(".d_tag") and fuzz_fields.read_field(data, f) == tag:
            return fields[name.replace(".d_tag", ".d_val")]
    raise AssertionError(f"no dynamic tag {tag:#x}")


def _index(label: str) -> int:
    return int(label.split("[", 1)[1].split(":", 1)[0])


DT_NEEDED, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_VERNEEDNUM = 1, 5, 6, 10, 0x6FFFFFFF

# case -> (fixture, corruption, expected codes)
Corruption = Callable[[bytes, dict[str, fuzz_fields.Field]], bytes]
ELF_CASES: dict[str, tuple[str, Corruption, set[str]]] = {
    "e_shoff-beyond-eof": ("c_plain", lambda d, f: _patch(d, f["e_shoff"], len(d) + 64),
                           {"inspect.truncated"}),
    "e_shoff-2^63": ("c_plain", lambda d, f: _patch(d, f["e_shoff"], 1 << 63), BROKEN),
    "e_phoff-beyond-eof": ("c_plain", lambda d, f: _patch(d, f["e_phoff"], len(d) + 64),
                           {"inspect.truncated"}),
    "e_phoff-max": ("c_plain", lambda d, f: _patch(d, f["e_phoff"], -1), BROKEN),
    "e_shnum-huge": ("c_plain", lambda d, f: _patch(d, f["e_shnum"], 0xFFFE),
                     {"inspect.truncated"}),
    "e_phnum-xnum": ("c_plain", lambda d, f: _patch(d, f["e_phnum"], 0xFFFF),
                     BROKEN | {"inspect.not-a-library"}),
    "e_shentsize-0": ("c_plain", lambda d, f: _patch(d, f["e_shentsize"], 0), BROKEN),
    "e_phentsize-7": ("c_plain", lambda d, f: _patch(d, f["e_phentsize"], 7), BROKEN),
    "section-name-table-index-out-of-range": (
        "c_plain", lambda d, f: _patch(d, f["e_shstrndx"], fuzz_fields.read_field(d, f["e_shnum"]) + 5),
        {"inspect.malformed"}),
    "section-names-beyond-eof": (
        "c_plain", lambda d, f: _patch(d, f[f"shdr[{fuzz_fields.read_field(d, f['e_shstrndx'])}"
                                            f":STRTAB].sh_offset"], len(d) + 8),
        {"inspect.truncated"}),
    "section-names-huge": (
        "c_plain", lambda d, f: _patch(d, f[f"shdr[{fuzz_fields.read_field(d, f['e_shstrndx'])}"
                                            f":STRTAB].sh_size"], 1 << 40), BROKEN),
    "section-name-offset-outside-table": (
        "c_plain", lambda d, f: _patch(d, f[_section(f, "DYNSYM") + ".sh_name"], 0xFFFFFF),
        {"inspect.malformed"}),
    "dynamic-beyond-eof": (
        "c_plain", lambda d, f: _patch(d, _dynamic_phdr(d, f, "p_offset"), len(d) + 8),
        {"inspect.truncated"}),
    "dynamic-size-huge": ("c_plain", lambda d, f: _patch(d, _dynamic_phdr(d, f, "p_filesz"),
                                                         1 << 40), BROKEN),
    "dt-strtab-unmapped": ("c_plain", lambda d, f: _patch(d, _dyn(d, f, DT_STRTAB), 1 << 36),
                           {"inspect.malformed"}),
    "dt-strsz-huge": ("c_plain", lambda d, f: _patch(d, _dyn(d, f, DT_STRSZ), 1 << 40),
                      BROKEN),
    "dt-strsz-zero": ("c_plain", lambda d, f: _patch(d, _dyn(d, f, DT_STRSZ), 0), BROKEN),
    "dt-symtab-unmapped": ("c_plain", lambda d, f: _patch(d, _dyn(d, f, DT_SYMTAB), 1 << 36),
                           {"inspect.malformed"}),
    "symbol-name-outside-strtab": ("c_plain",
                                   lambda d, f: _patch(d, f["dynsym[1].st_name"], 0xFFFFFFF0),
                                   {"inspect.malformed"}),
    "needed-name-outside-strtab": ("rust_plain",
                                   lambda d, f: _patch(d, _dyn(d, f, DT_NEEDED), 0xFFFFFFF),
                                   {"inspect.malformed"}),
    "1e9-symbols-in-dynsym-header": (
        "c_plain", lambda d, f: _patch(d, f[_section(f, "DYNSYM") + ".sh_size"], 24 * 10**9),
        BROKEN),
    "1e9-symbols-in-gnu-hash": ("c_plain", lambda d, f: _gnu_hash_huge(d, f), BROKEN),
    "1e9-version-needs": ("rust_plain",
                          lambda d, f: _patch(d, _dyn(d, f, DT_VERNEEDNUM), 10**9), BROKEN),
    "version-need-count-huge": ("rust_plain",
                                lambda d, f: _patch(d, f["verneed[0].vn_cnt"], 0xFFFF), BROKEN),
    "version-need-chain-loops-back": (
        "rust_plain", lambda d, f: _patch(d, f["verneed[0].vn_next"], 0), BROKEN),
    "version-need-aux-points-outside": (
        "rust_plain", lambda d, f: _patch(d, f["verneed[0].vn_aux"], 0x7FFFFFF0), BROKEN),
    "version-definition-aux-outside": (
        "c_versioned", lambda d, f: _patch(d, f["verdef[0].vd_aux"], 0xFFFFFFFF), BROKEN),
}


def _dynamic_phdr(data: bytes, fields: dict[str, fuzz_fields.Field],
                  what: str) -> fuzz_fields.Field:
    for name, f in fields.items():
        if name.startswith("phdr[") and name.endswith(".p_type") and \
                fuzz_fields.read_field(data, f) == 2:  # PT_DYNAMIC
            return fields[name.replace(".p_type", "." + what)]
    raise AssertionError("no PT_DYNAMIC")


def _gnu_hash_huge(data: bytes, fields: dict[str, fuzz_fields.Field]) -> bytes:
    """No section headers, so the symbol count must come from the GNU hash
    table, whose bucket count then claims 2^32 - 1 buckets."""
    out = _patch(data, fields["e_shoff"], 0)
    out = _patch(out, fields["e_shnum"], 0)
    out = _patch(out, fields["e_shstrndx"], 0)
    hash_at = fuzz_fields.read_field(data, fields[_section(fields, "GNU_HASH") + ".sh_offset"])
    return _patch(out, fuzz_fields.Field("nbuckets", hash_at, 4), 0xFFFFFFFF)


@pytest.mark.parametrize("case", sorted(ELF_CASES))
def test_corrupted_elf(case: str, native: Callable[[str], Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    fixture, corrupt, codes = ELF_CASES[case]
    data = native(fixture).read_bytes()
    bad = corrupt(data, _fields(data))
    assert bad != data and len(bad) == len(data)
    path = tmp_path / f"{case}.so"
    path.write_bytes(bad)
    everywhere(path, codes, capsys)


# Section-header fields the loader never reads: the reader locates tables
# through the dynamic section as ld.so does, so corrupting them must either be
# reported or change nothing; a silent half-read is the failure.
IGNORED_CASES: dict[str, Corruption] = {
    "dynsym-links-to-itself": lambda d, f: _patch(
        d, f[_section(f, "DYNSYM") + ".sh_link"], _index(_section(f, "DYNSYM"))),
    "dynsym-links-out-of-range": lambda d, f: _patch(
        d, f[_section(f, "DYNSYM") + ".sh_link"], 0xFFFF),
    "link-cycle-dynsym-dynstr": lambda d, f: _patch(
        d, f[next(n for n in f if n.startswith("shdr[") and n.endswith(":STRTAB].sh_link"))],
        _index(_section(f, "DYNSYM"))),
    "versym-links-to-itself": lambda d, f: _patch(
        d, f[_section(f, "VERSYM") + ".sh_link"], _index(_section(f, "VERSYM"))),
    "dynsym-entsize-zero": lambda d, f: _patch(d, f[_section(f, "DYNSYM") + ".sh_entsize"], 0),
}


def _facts(info: relib_pure.LibraryInfo) -> dict[str, Any]:
    d = info.to_dict()
    for volatile in ("path", "sha256"):
        d.pop(volatile)
    return d


@pytest.mark.parametrize("case", sorted(IGNORED_CASES))
def test_corrupted_section_links(case: str, native: Callable[[str], Path],
                                 tmp_path: Path) -> None:
    data = native("c_versioned").read_bytes()
    bad = IGNORED_CASES[case](data, _fields(data))
    assert bad != data
    path = tmp_path / f"{case}.so"
    path.write_bytes(bad)
    try:
        with time_bound():
            got = relib_pure.inspect(path)
    except InspectionError as e:
        assert e.code in BROKEN and e.path == str(path)
        return
    assert _facts(got) == _facts(relib_pure.inspect(native("c_versioned")))


PE_CASES: dict[str, tuple[Callable[[bytes, dict[str, fuzz_fields.Field]], bytes], set[str]]] = {
    "e_lfanew-beyond-eof": (lambda d, f: _patch(d, f["e_lfanew"], len(d) + 8),
                            {"inspect.truncated"}),
    "e_lfanew-max": (lambda d, f: _patch(d, f["e_lfanew"], 0xFFFFFFF0), {"inspect.truncated"}),
    "sections-65535": (lambda d, f: _patch(d, f["NumberOfSections"], 0xFFFF),
                       {"inspect.truncated"}),
    "sections-0": (lambda d, f: _patch(d, f["NumberOfSections"], 0), BROKEN),
    "optional-header-size-huge": (lambda d, f: _patch(d, f["SizeOfOptionalHeader"], 0xFFFF),
                                  BROKEN),
    "optional-header-magic": (lambda d, f: _patch(d, f["Magic"], 0x107), {"inspect.malformed"}),
    "unknown-machine": (lambda d, f: _patch(d, f["Machine"], 0x1234), {"inspect.unsupported"}),
    "1e9-export-names": (lambda d, f: _patch(d, f["export.NumberOfNames"], 10**9), BROKEN),
    "1e9-export-functions": (lambda d, f: _patch(d, f["export.NumberOfFunctions"], 10**9),
                             BROKEN),
    "export-names-unmapped": (lambda d, f: _patch(d, f["export.AddressOfNames"], 0x7FFFFFF0),
                              BROKEN),
    "export-ordinals-unmapped": (
        lambda d, f: _patch(d, f["export.AddressOfNameOrdinals"], 0xFFFFFF00), BROKEN),
    "export-dll-name-unmapped": (lambda d, f: _patch(d, f["export.Name"], 0xFFFFFFF), BROKEN),
    "import-dll-name-unmapped": (lambda d, f: _patch(d, f["import[0].Name"], 0xFFFFFFF),
                                 BROKEN),
    "import-thunks-unmapped": (lambda d, f: _patch(d, f["import[1].OriginalFirstThunk"],
                                                   0xFFFFFFF), BROKEN),
    "import-without-address-table": (lambda d, f: _patch(d, f["import[0].FirstThunk"], 0),
                                     BROKEN),
    "export-directory-unmapped": (lambda d, f: _patch(d, f["dir[EXPORT].VirtualAddress"],
                                                      0xFFFFF000), BROKEN),
    "import-directory-unmapped": (lambda d, f: _patch(d, f["dir[IMPORT].VirtualAddress"],
                                                      0xFFFFF000), BROKEN),
    "section-raw-data-beyond-eof": (
        lambda d, f: _patch(d, f[next(n for n in f if n.endswith("PointerToRawData"))],
                            len(d)), {"inspect.truncated"}),
    "certificate-table-beyond-eof": (
        lambda d, f: _patch(_patch(d, f["dir[SECURITY].VirtualAddress"], len(d) - 8),
                            f["dir[SECURITY].Size"], 64), {"inspect.truncated"}),
    "exe-not-dll": (lambda d, f: _patch(d, f["Characteristics"],
                                        fuzz_fields.read_field(d, f["Characteristics"]) & ~0x2000),
                    {"inspect.not-a-library"}),
    "ne-signature": (lambda d, f: d[:fuzz_fields.read_field(d, f["e_lfanew"])] + b"NE"
                     + d[fuzz_fields.read_field(d, f["e_lfanew"]) + 2:], {"inspect.unsupported"}),
}


@pytest.mark.parametrize("case", sorted(PE_CASES))
def test_corrupted_pe(case: str, native: Callable[[str], Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    data = native("pe_dll").read_bytes()
    corrupt, codes = PE_CASES[case]
    bad = corrupt(data, _fields(data))
    assert bad != data and len(bad) == len(data)
    path = tmp_path / f"{case}.dll"
    path.write_bytes(bad)
    everywhere(path, codes, capsys)


# -- real files of the wrong kind ----------------------------------------------------------

MAIN_C = "int answer(void) { return 42; }\nint main(void) { return answer() - 42; }\n"


def _gcc(tmp_path: Path, *args: str, compiler: str = "gcc") -> Path:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} missing")
    src = tmp_path / "main.c"
    src.write_text(MAIN_C)
    out = tmp_path / "out"
    r = subprocess.run([compiler, *args, "-o", str(out), str(src)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0 and "-static" in args:
        pytest.skip(f"no static libc: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("kind,args", [
    ("executable", ("-no-pie",)),
    ("static-executable", ("-static",)),
    ("relocatable-object", ("-c",)),
])
def test_elf_that_is_not_a_shared_library(kind: str, args: tuple[str, ...], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _gcc(tmp_path, *args)
    assert path.read_bytes()[:4] == b"\x7fELF"
    err = everywhere(path, {"inspect.not-a-library"}, capsys)
    assert "librar" in err.message


def test_pie_executable_is_read_and_marked(tmp_path: Path) -> None:
    """A PIE is ET_DYN like a library; it is read (documented in the ELF
    reader) and shows its interpreter and the PIE flag so checks can refuse it."""
    path = _gcc(tmp_path, "-pie", "-fPIE")
    with time_bound():
        info = relib_pure.inspect(path)
    assert info.elf_type == "DYN"
    assert info.interpreter and "ld-linux" in info.interpreter
    assert "PIE" in info.dynamic_flags_1
    # check() refuses what dlopen refuses, and still resolves its dependencies
    with pytest.raises(OSError, match="position-independent executable"):
        ctypes.CDLL(str(path))
    report = relib_pure.check(info)
    assert report.codes("error") == {"arch.executable"}
    assert "resolve.ok" in report.codes("info")


def test_coff_object_is_not_pe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _gcc(tmp_path, "-c", compiler="x86_64-w64-mingw32-gcc")
    everywhere(path, {"inspect.unknown-format"}, capsys)
