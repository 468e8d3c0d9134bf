"""The inspection fuzzer: a bounded run over real fixtures, and proof that it
catches what it claims to catch (crashes, hangs, dead workers, untyped errors)
with a reproducer that replays."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "tools" / "fuzz_inspect.py"
sys.path.insert(0, str(REPO / "tools"))

import build_fixtures  # noqa: E402
import fuzz_inspect  # noqa: E402

#: ELF (C, C++, Rust, relib over each relocation flavour, foreign arch, ELF32,
#: big-endian) and PE.
CORPUS = ("c_plain", "c_versioned", "c_static_tls", "cxx_unique", "cross_foreign", "pe_dll",
          "pe_dll_minimal", "rust_plain", "relib_0_7", "relib_0_7_bfd", "relib_0_7_relr",
          "relib_0_1_8", "inspect_elf32", "inspect_be64")
SEED = 20261126


@pytest.fixture(scope="module")
def corpus_names(native: Callable[[str], Path]) -> list[str]:
    # an ELF and a PE fixture are required (native() skips, or fails on CI, without
    # gcc or MinGW); the others join when this machine can build them
    names = [name for name in ("c_plain", "pe_dll") if native(name)]
    for name in CORPUS:
        if name in names or name not in build_fixtures.variants():
            continue
        try:
            build_fixtures.build(name)
        except build_fixtures.FixtureUnavailable:
            continue
        names.append(name)
    return sorted(names)


def run_fuzzer(*args: str, env_path: Path | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = None
    if env_path is not None:
        import os
        env = {**os.environ, "PYTHONPATH": str(env_path)}
    return subprocess.run([sys.executable, str(FUZZ), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def outcomes(stdout: str) -> dict[str, int]:
    line = re.search(r"^outcomes: (.*)$", stdout, re.M)
    assert line, stdout
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line[1])}


def test_bounded_run_has_no_crash_or_hang(corpus_names: list[str]) -> None:
    r = run_fuzzer("--count", "600", "--seed", str(SEED), "--time-limit", "10",
                   "--fixtures", ",".join(corpus_names), timeout=170)
    assert r.returncode == 0, r.stdout + r.stderr
    got = outcomes(r.stdout)
    assert got["crash"] == 0 and got["hang"] == 0
    assert sum(got.values()) == 600
    # the mutations both break files (typed errors) and leave some readable
    assert got["typed"] >= 100 and got["ok"] >= 50, r.stdout
    codes = re.search(r"^error codes: (.*)$", r.stdout, re.M)[1]  # type: ignore[index]
    assert "inspect.truncated" in codes and "inspect.malformed" in codes


def test_sparse_mutants_stay_within_time_and_memory(corpus_names: list[str]) -> None:
    """Every mutant extended to a 64 GiB sparse file, field overwrites aimed at
    that size: 0 untyped errors, 0 runs over 10 s or over 1 GiB of memory."""
    r = run_fuzzer("--count", "300", "--seed", str(SEED), "--time-limit", "10",
                   "--sparse-size", "64G", "--fixtures", ",".join(corpus_names), timeout=170)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "files extended to 68719476736 bytes" in r.stdout
    got = outcomes(r.stdout)
    assert got["crash"] == 0 and got["hang"] == 0, r.stdout
    assert sum(got.values()) == 300
    assert got["typed"] >= 50 and got["ok"] >= 50, r.stdout


MEMORY_HOG = """
import mmap

def target(path):
    # touches 1.25 GiB of the (sparse) file: its pages count in the peak RSS
    with open(path, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    total = 0
    for offset in range(0, min(len(view), 1280 << 20), 4096):
        total += view[offset]
    return None
"""


def test_fuzzer_reports_a_run_over_the_memory_bound(tmp_path: Path) -> None:
    """The 1 GiB bound is enforced on the peak RSS, file-backed pages included."""
    (tmp_path / "memory_hog.py").write_text(textwrap.dedent(MEMORY_HOG))
    r = run_fuzzer("--count", "1", "--seed", "3", "--no-check", "--sparse-size", "2G",
                   "--target", "memory_hog:target", "--fixtures", "c_plain",
                   env_path=tmp_path, timeout=170)
    assert r.returncode == 1, r.stdout + r.stderr
    assert outcomes(r.stdout)["crash"] == 1
    assert re.search(r"peak RSS \d+ MiB \(bound 1024 MiB\)", r.stdout), r.stdout


def test_mutants_are_deterministic_and_varied(corpus_names: list[str]) -> None:
    corpus, missing = fuzz_inspect.build_corpus(corpus_names)
    assert not missing
    first = [fuzz_inspect.make_mutant(corpus, 5, i) for i in range(300)]
    again = [fuzz_inspect.make_mutant(corpus, 5, i) for i in range(300)]
    assert [m.data for m in first] == [m.data for m in again]
    assert [m.description for m in first] == [m.description for m in again]
    other_seed = fuzz_inspect.make_mutant(corpus, 6, 0)
    assert (other_seed.base, other_seed.data) != (first[0].base, first[0].data)
    base = {s.name: s.data for s in corpus}
    changed = sum(m.data != base[m.base] for m in first)
    assert changed == 300
    assert set(Counter(m.kind for m in first)) == {"bitflip", "byteset", "truncate", "splice",
                                                   "field"}
    fields = " ".join(m.description for m in first if m.kind == "field")
    # structure-aware overwrites reach both formats' headers and tables
    assert re.search(r"\b(e_shoff|e_shnum|e_phoff|shdr\[\d+:\w+\]\.sh_\w+)=", fields)
    assert re.search(r"\b(dynsym\[\d+\]|dyn\[\d+\])\.\w+=", fields)
    assert re.search(r"\b(export\.\w+|import\[\d\]\.\w+|section\[\d+:[.\w]+\]\.\w+|"
                     r"e_lfanew|NumberOfSections)=", fields)


def test_structural_fields_are_found(corpus_names: list[str]) -> None:
    corpus, _ = fuzz_inspect.build_corpus(["c_plain", "c_versioned", "pe_dll", "rust_plain"])
    by_name = {s.name: s for s in corpus}
    elf, pe = by_name["c_plain"], by_name["pe_dll"]
    elf_names = {f.name for f in elf.fields}
    assert {"e_shoff", "e_shnum", "e_shstrndx", "e_phoff"} <= elf_names
    assert any(n.startswith("shdr[") and n.endswith("DYNSYM].sh_size") for n in elf_names)
    assert any(n.startswith("dyn[") for n in elf_names)
    assert any(n.startswith("verdef[0].") for n in (f.name for f in by_name["c_versioned"].fields))
    assert any(n.startswith("verneed[0].") for n in (f.name for f in by_name["rust_plain"].fields))
    # the e_shoff the fuzzer found is the one in the header
    shoff = next(f for f in elf.fields if f.name == "e_shoff")
    assert fuzz_inspect.read_field(elf.data, shoff) == int.from_bytes(elf.data[0x28:0x30], "little")
    pe_names = {f.name for f in pe.fields}
    assert {"e_lfanew", "NumberOfSections", "export.NumberOfNames",
            "export.AddressOfNames", "import[0].Name", "dir[EXPORT].VirtualAddress"} <= pe_names


BROKEN_TARGET = """
import os, signal, time, zlib
from relib_pure.errors import InspectionError

class Unwritable:
    def to_dict(self):
        return {"name": "lone surrogate \\udcff"}

def target(path):
    print("noise on stdout")  # must not break the worker protocol
    os.write(1, b"noise from C-level stdout\\n")
    with open(path, "rb") as f:
        kind = zlib.crc32(f.read()) % 6
    if kind == 0:
        time.sleep(600)
    if kind == 1:
        raise TypeError("boom")
    if kind == 2:  # dies by a signal, as a segfault would (SIGKILL: no core file)
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == 3:
        raise InspectionError("lost its path", path="elsewhere")
    if kind == 4:
        return Unwritable()
    raise InspectionError("fine", path=path)
"""


def test_fuzzer_reports_crash_hang_and_reproducer(tmp_path: Path,
                                                  corpus_names: list[str]) -> None:
    """A deliberately broken target: every failure class must be reported, the
    exit status must be 1, and the printed reproducer must replay the crash."""
    (tmp_path / "broken_target.py").write_text(textwrap.dedent(BROKEN_TARGET))
    findings = tmp_path / "findings"
    args = ("--count", "48", "--seed", "3", "--time-limit", "0.5", "--no-check",
            "--target", "broken_target:target", "--fixtures", "c_plain,pe_dll",
            "--findings-dir", str(findings))
    r = run_fuzzer(*args, env_path=tmp_path, timeout=170)
    assert r.returncode == 1, r.stdout + r.stderr
    got = outcomes(r.stdout)
    assert got["hang"] >= 1 and got["crash"] >= 4 and got["typed"] >= 1, r.stdout
    assert "TypeError: boom" in r.stdout
    assert "worker died with status" in r.stdout
    assert "without the file's path" in r.stdout
    assert "result cannot be written as JSON: UnicodeEncodeError" in r.stdout
    assert "no answer within 0.5 s" in r.stdout
    crash = re.search(r"^CRASH mutant (\d+) .*\n  TypeError: boom.*\n  reproduce: python3 "
                      r"tools/fuzz_inspect\.py (.*)$", r.stdout, re.M)
    assert crash, r.stdout
    saved = tmp_path / "replayed.bin"
    replay_args = crash[2].split()
    replay_args[replay_args.index("--save") + 1] = str(saved)
    again = run_fuzzer(*replay_args, "--no-check", "--target", "broken_target:target",
                       env_path=tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "crash: TypeError: boom" in again.stdout
    assert zlib.crc32(saved.read_bytes()) % 6 == 1
    # every finding was also written out, and the saved crash is the replayed mutant
    kept = {p.name.split("-")[1]: p for p in findings.iterdir()}
    assert len(kept) == got["crash"] + got["hang"]
    assert kept[f"mutant{crash[1]}"].read_bytes() == saved.read_bytes()


def test_relib_decoding_path_is_targeted(corpus_names: list[str]) -> None:
    """The fuzzer finds the compilation-info struct and what relocates its
    pointer (RELA entry, RELR words, PE base relocation) on its own; its
    length field agrees with the string the inspector decodes."""
    import relib_pure

    wanted = {"relib_0_7": "relib_info.rela.r_addend", "relib_0_7_bfd": "relib_info.rela.r_addend",
              "relib_0_7_relr": "relr.word[0]", "pe_dll": "basereloc.relib_info_entry"}
    corpus, _ = fuzz_inspect.build_corpus([n for n in wanted if n in corpus_names])
    assert {s.name for s in corpus} >= {"relib_0_7", "pe_dll"}
    for sample in corpus:
        fields = {f.name: f for f in sample.fields}
        assert wanted[sample.name] in fields, sample.name
        info = relib_pure.inspect(sample.path)
        assert info.relib is not None and info.relib.compilation_info is not None
        length = fuzz_inspect.read_field(sample.data, fields["relib_info.len"])
        assert length == len(info.relib.compilation_info.raw.encode())
