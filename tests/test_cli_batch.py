"""``check``/``inspect``/``tree`` over many paths: directories, wheels, linker scripts,
parallel workers, --strict, SARIF, GitHub annotations, the manylinux summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from relib_pure.cli.main import main

LINKER_SCRIPT = ("/* GNU ld script\n   Use the shared library.  */\n"
                 "OUTPUT_FORMAT(elf64-x86-64)\nGROUP ( /lib/x86_64-linux-gnu/libc.so.6 )\n")


def _schema(name: str) -> dict:
    data = json.loads(resources.files("relib_pure").joinpath(f"schemas/{name}").read_text())
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def libdir(tmp_path: Path, native) -> Path:
    """A library directory as CI meets one: libraries, a symlink chain, a
    linker script, a subdirectory, non-library files."""
    d = tmp_path / "lib"
    (d / "sub").mkdir(parents=True)
    shutil.copy(native("c_plain"), d / "libc_plain.so.1.0")
    os.symlink("libc_plain.so.1.0", d / "libc_plain.so.1")
    os.symlink("libc_plain.so.1", d / "libc_plain.so")
    shutil.copy(native("c_nodelete"), d / "sub" / "libc_nodelete.so")
    shutil.copy(native("compat_unresolved"), d / "sub" / "libcompat_unresolved.so")
    (d / "libfake.so").write_text(LINKER_SCRIPT)
    (d / "README").write_text("not a library")
    (d / "pkgconfig.pc").write_text("prefix=/usr")
    return d


@pytest.fixture
def wheel(tmp_path: Path, native) -> Path:
    """A wheel whose extension finds a sibling library through RUNPATH $ORIGIN."""
    path = tmp_path / "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(native("compat_runpath"), "demo/libcompat_runpath.so")
        zf.write(native("compat_base"), "demo/libcompat_base.so")
        zf.writestr("demo/__init__.py", "")
        zf.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


def test_directory_needs_recursive(capsys, libdir) -> None:
    code, out, err = run(capsys, "check", str(libdir))
    assert code == 2 and "pass -r" in err


def test_recursive_directory_batch_json(capsys, libdir) -> None:
    code, out, _ = run(capsys, "check", "-r", str(libdir), "--json", "--jobs", "1")
    doc = json.loads(out)
    jsonschema.validate(doc, _schema("check.json"))
    paths = [r["path"] for r in doc["reports"]]
    # the symlink chain names one file: read once; README and .pc are no library names
    assert paths == [str(libdir / "libc_plain.so"), str(libdir / "sub" / "libc_nodelete.so"),
                     str(libdir / "sub" / "libcompat_unresolved.so")]
    assert doc["skipped"] == [{"path": str(libdir / "libfake.so"),
                               "reason": "GNU ld linker script, not a shared library"}]
    assert doc["counts"] == {"libraries": 3, "failed": 1, "unreadable": 0, "skipped": 1}
    assert code == 1 and doc["ok"] is False
    (failed,) = [r for r in doc["reports"] if not r["ok"]]
    assert failed["path"].endswith("libcompat_unresolved.so")


def test_parallel_matches_serial(capsys, libdir) -> None:
    serial = run(capsys, "check", "-r", str(libdir), "--json", "--jobs", "1")
    parallel = run(capsys, "check", "-r", str(libdir), "--json", "--jobs", "3")
    assert serial[0] == parallel[0]
    assert json.loads(serial[1]) == json.loads(parallel[1])
    # inspect too: the same libraries, in the order given
    a = run(capsys, "inspect", "-r", str(libdir), "--json", "-j", "1")
    b = run(capsys, "inspect", "-r", str(libdir), "--json", "-j", "2")
    assert a[0] == b[0] == 0 and json.loads(a[1]) == json.loads(b[1])


def test_text_batch_notes_the_linker_script(capsys, libdir) -> None:
    code, out, _ = run(capsys, "check", "-r", str(libdir))
    assert code == 1
    assert f"{libdir / 'libfake.so'}: skipped (GNU ld linker script" in out
    assert out.rstrip().splitlines()[-1] == \
        "3 libraries checked: 2 ok, 1 failed, 1 skipped"


def test_inspect_skips_linker_scripts(capsys, libdir) -> None:
    code, out, err = run(capsys, "inspect", "-r", str(libdir), "--json")
    doc = json.loads(out)
    jsonschema.validate(doc, _schema("inspect.json"))
    assert code == 0 and not doc["errors"]
    assert len(doc["libraries"]) == 3
    assert [s["path"] for s in doc["skipped"]] == [str(libdir / "libfake.so")]


def test_wheel_members_are_checked_with_their_layout(capsys, wheel, tmp_path) -> None:
    before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    # a fresh process: in this one, other tests may have loaded libcompat_base.so,
    # which a dlopen here (and so the check) would rightly reuse by its SONAME
    proc = subprocess.run([sys.executable, "-m", "relib_pure", "check", str(wheel), "--json"],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    code, doc = proc.returncode, json.loads(proc.stdout)
    jsonschema.validate(doc, _schema("check.json"))
    assert code == 0, doc
    by_path = {r["path"]: r for r in doc["reports"]}
    member = f"{wheel}!demo/libcompat_runpath.so"
    assert set(by_path) == {member, f"{wheel}!demo/libcompat_base.so"}
    (ok,) = [f for f in by_path[member]["findings"] if f["code"] == "resolve.ok"]
    # found beside it through $ORIGIN, and named as the wheel member, not the temp copy
    assert ok["details"]["libraries"]["libcompat_base.so"] == f"{wheel}!demo/libcompat_base.so"
    after = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    # (other tests make relib-pure-* folders too: only this wheel's count)
    assert not {n for n in after - before if n.startswith("relib-pure-demo-1.0-")}


def test_strict_turns_warnings_into_failures(capsys, native) -> None:
    lib = str(native("c_nodelete"))
    code, out, _ = run(capsys, "check", lib, "--json")
    assert code == 0
    assert [f["severity"] for f in json.loads(out)["findings"]
            if f["code"] == "hazard.nodelete"] == ["warning"]
    code, out, _ = run(capsys, "check", lib, "--json", "--strict")
    assert code == 1
    assert [f["severity"] for f in json.loads(out)["findings"]
            if f["code"] == "hazard.nodelete"] == ["error"]
    # --relax still wins for the codes it names
    code, _, _ = run(capsys, "check", lib, "--strict", "--relax", "hazard.nodelete")
    assert code == 0


def test_sarif(capsys, libdir, tmp_path) -> None:
    missing = tmp_path / "gone.so"
    code, out, _ = run(capsys, "check", "-r", str(libdir), str(missing), "--format", "sarif")
    assert code == 2
    log = json.loads(out)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run_,) = log["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert run_["tool"]["driver"]["name"] == "relib-pure"
    by_rule = {}
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning")
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        by_rule.setdefault(result["ruleId"], []).append((result["level"], uri))
    assert by_rule["inspect.not-found"] == [("error", "file://" + str(missing))]
    assert by_rule["resolve.undefined-symbol"] == [
        ("error", "file://" + str(libdir / "sub" / "libcompat_unresolved.so"))]
    assert ("warning", "file://" + str(libdir / "sub" / "libc_nodelete.so")) in \
        by_rule["hazard.nodelete"]
    assert "resolve.ok" not in by_rule  # infos are no results
    assert all(r["shortDescription"]["text"] for r in rules)


def test_github_annotations(capsys, native, tmp_path) -> None:
    lib = tmp_path / "a,b:c.so"  # characters the annotation syntax must escape
    shutil.copy(native("compat_unresolved"), lib)
    code, out, _ = run(capsys, "check", str(lib), str(native("c_plain")), "--format", "github")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 1
    m = re.match(r"^::error file=(.*),title=resolve\.undefined-symbol::(.*)$", lines[0])
    assert m, lines[0]
    assert m.group(1) == str(lib).replace(":", "%3A").replace(",", "%2C")
    assert "compat_nobody_defines_this" in m.group(2)


#: glibc versions of the manylinux policies auditwheel defines for x86_64
X86_POLICIES = [(2, 5), (2, 12), (2, 17), (2, 24), (2, 26), (2, 27), (2, 28), (2, 31), (2, 34),
                (2, 35), (2, 36), (2, 37), (2, 38), (2, 39), (2, 40), (2, 41)]


def test_policy_is_the_oldest_that_allows_every_version() -> None:
    """Expectations from auditwheel 6.8's policy table (``auditwheel show`` on real
    wheels gave the same tags: 13 installed binary wheels, see the commit)."""
    from relib_pure.compat.manylinux import Requirements, summarize

    def tag(machine: str = "x86_64", **highest: str) -> str | None:
        req = Requirements("/x/lib.so", "elf", machine, 64, "little", ("lib.so",), (),
                           highest)
        return summarize("g", [req]).tag

    assert tag(GLIBC="2.2.5") == "manylinux_2_5_x86_64"
    assert tag(GLIBC="2.14") == "manylinux_2_17_x86_64"      # no policy between 2.12 and 2.17
    assert tag(GLIBC="2.17") == "manylinux_2_17_x86_64"
    assert tag(GLIBC="2.14", GLIBCXX="3.4.21") == "manylinux_2_24_x86_64"
    assert tag(GLIBC="2.17", CXXABI="1.3.11") == "manylinux_2_27_x86_64"
    assert tag(GLIBC="2.29") == "manylinux_2_31_x86_64"
    assert tag(GLIBC="2.45") == "manylinux_2_45_x86_64"      # newer than any defined policy
    assert tag("aarch64", GLIBC="2.5") == "manylinux_2_17_aarch64"
    assert tag() == "manylinux_2_5_x86_64"


def _readelf_highest_glibc(path: str) -> tuple[int, ...] | None:
    text = subprocess.run(["readelf", "-V", "-W", path], capture_output=True, text=True,
                          check=True).stdout
    if ".gnu.version_r" not in text:
        return None
    need = text.split(".gnu.version_r")[1]
    versions = re.findall(r"Name: GLIBC_([0-9.]+)", need)
    return max(tuple(int(p) for p in v.split(".")) for v in versions)


def test_manylinux_summary_follows_highest_glibc(capsys, native, tmp_path) -> None:
    if shutil.which("readelf") is None:
        pytest.skip("readelf not installed")
    libs = [str(native("c_plain")), str(native("c_versioned")), str(native("cxx_unique")),
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"]
    libs = [lib for lib in libs if os.path.exists(lib)]
    code, out, _ = run(capsys, "check", *libs, "--manylinux", "--json")
    doc = json.loads(out)
    jsonschema.validate(doc, _schema("check.json"))
    assert [p["group"] for p in doc["platforms"]] == libs
    versioned = 0
    for lib, platform in zip(libs, doc["platforms"]):
        highest = _readelf_highest_glibc(lib)
        if highest is None:
            assert platform["glibc"] is None and platform["tag"] == "manylinux_2_5_x86_64"
            continue
        versioned += 1
        assert platform["glibc"] == ".".join(map(str, highest))
        if "GLIBCXX" not in platform["highest"]:
            # the oldest defined policy at or above the glibc version (PEP 600 / auditwheel)
            major, minor = min(p for p in X86_POLICIES if p >= highest[:2])
            assert platform["tag"] == f"manylinux_{major}_{minor}_x86_64"
    assert versioned >= 1
    if libs[-1].endswith("libstdc++.so.6"):
        # libgcc_s's versions are reported too, without lowering the tag
        assert "GCC" in doc["platforms"][-1]["highest"] and doc["platforms"][-1]["glibc"]


def test_manylinux_external_libraries(capsys, native, tmp_path) -> None:
    consumer = str(native("compat_plain_needed"))
    code, out, _ = run(capsys, "check", consumer, "--manylinux", "--no-resolve")
    assert code == 0
    assert "needs libraries outside the manylinux policy: libcompat_base.so" in out
    # inside one group (a directory, a wheel) the provider is part of the package
    d = tmp_path / "pkg"
    d.mkdir()
    shutil.copy(consumer, d)
    shutil.copy(native("compat_base"), d)
    code, out, _ = run(capsys, "check", "-r", str(d), "--manylinux", "--json", "--no-resolve")
    (platform,) = json.loads(out)["platforms"]
    assert platform["external"] == [] and platform["libraries"] == 2


def _installed_manylinux_dists() -> list[tuple[Path, list[str], list[Path]]]:
    """(dist-info, manylinux tags, native files) of installed binary wheels."""
    import site
    found = []
    for base in {*site.getsitepackages(), site.getusersitepackages()}:
        for wheel in sorted(Path(base).glob("*.dist-info/WHEEL")):
            tags = re.findall(r"^Tag: .*-(manylinux_\d+_\d+_x86_64)$", wheel.read_text(), re.M)
            record = wheel.parent / "RECORD"
            if not tags or not record.exists():
                continue
            files = [Path(base) / line.split(",")[0] for line in record.read_text().splitlines()
                     if re.search(r"\.so(\.\d+)*,", line)]
            files = [f for f in files if f.exists()]
            if files:
                found.append((wheel.parent, tags, files))
    return found[:4]


def test_manylinux_agrees_with_installed_wheel_tags(capsys) -> None:
    """A wheel tagged manylinux_2_X (by auditwheel or maturin) must not need a
    newer glibc: the computed tag is at most the lowest declared one."""
    dists = _installed_manylinux_dists()
    if not dists:
        pytest.skip("no installed manylinux wheel with native files")
    for dist, tags, files in dists:
        code, out, _ = run(capsys, "check", *map(str, files), "--manylinux", "--json",
                           "--no-resolve")
        doc = json.loads(out)
        glibc = max((tuple(map(int, p["glibc"].split("."))) for p in doc["platforms"]
                     if p["glibc"]), default=(2, 5))
        lowest = min(tuple(map(int, t.split("_")[1:3])) for t in tags)
        assert glibc[:2] <= lowest, (dist.name, glibc, tags)


def test_tree_agrees_with_ldd(capsys, native, tmp_path) -> None:
    if shutil.which("ldd") is None:
        pytest.skip("ldd not installed")
    for name in ("compat_chain", "compat_unresolved", "compat_runpath", "compat_base"):
        shutil.copy(native(name), tmp_path)
    lib = str(tmp_path / "libcompat_chain.so")
    code, out, _ = run(capsys, "tree", lib, "--json")
    doc = json.loads(out)
    jsonschema.validate(doc, _schema("tree.json"))
    (tree,) = doc["trees"]
    assert tree["path"] == lib and code == 0
    seen: dict[str, str] = {}

    def walk(node: dict) -> None:
        for child in node["children"]:
            seen.setdefault(child["name"], os.path.realpath(child["path"]))
            walk(child)

    walk(tree)
    ldd = subprocess.run(["ldd", lib], capture_output=True, text=True, check=True).stdout
    expected = {m.group(1): os.path.realpath(m.group(2))
                for m in re.finditer(r"^\s*(\S+) => (/\S+)", ldd, re.M)}
    for m in re.finditer(r"^\s*(/\S*ld-linux\S*) ", ldd, re.M):
        expected[os.path.basename(m.group(1))] = os.path.realpath(m.group(1))
    assert seen == expected
    code, text, _ = run(capsys, "tree", lib)
    lines = text.splitlines()
    assert lines[0] == lib
    # nesting: the runpath library's own dependency is one level deeper
    i = lines.index(f"    libcompat_runpath.so => {tmp_path / 'libcompat_runpath.so'}")
    assert lines[i + 1] == f"        libcompat_base.so => {tmp_path / 'libcompat_base.so'}"


def test_tree_expands_each_library_once(capsys) -> None:
    lib = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
    if not os.path.exists(lib):
        pytest.skip("no libstdc++")
    code, text, _ = run(capsys, "tree", lib)
    assert code == 0
    libc = [line for line in text.splitlines() if line.strip().startswith("libc.so.6 => ")]
    # needed by libstdc++, libm and libgcc_s: shown each time, expanded once
    assert len(libc) >= 2 and sum("(see above)" not in line for line in libc) == 1


def test_tree_missing_dependency_exits_1(capsys, native, tmp_path) -> None:
    lib = tmp_path / "libcompat_plain_needed.so"
    shutil.copy(native("compat_plain_needed"), lib)
    code, out, _ = run(capsys, "tree", str(lib))
    assert code == 1 and "libcompat_base.so => not found" in out


def test_cli_runs_as_a_subprocess_with_workers(libdir) -> None:
    """The default (every core) through the real entry point."""
    proc = subprocess.run([sys.executable, "-m", "relib_pure", "check", "-r", str(libdir),
                           "--json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["counts"]["libraries"] == 3


def test_a_named_linker_script_is_an_error_among_others(capsys, libdir, native) -> None:
    code, out, err = run(capsys, "check", str(libdir / "libfake.so"), str(native("c_plain")),
                         "--json")
    doc = json.loads(out)
    assert code == 2 and doc["counts"]["libraries"] == 1 and not doc["skipped"]
    assert [(e["code"], e["path"]) for e in doc["errors"]] == \
        [("inspect.unknown-format", str(libdir / "libfake.so"))]
    assert "linker script" in doc["errors"][0]["message"]
