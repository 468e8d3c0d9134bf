"""The fixture builder's cache: reuse when nothing changed, a new key when anything did.

Each test works on a copy of ``fixtures/c`` in ``tmp_path`` with
``RELIB_PURE_FIXTURE_CACHE`` pointed there too, so editing sources never
touches the repository or the shared cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import build_fixtures  # put on sys.path by tests/conftest.py

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture
def sandbox(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``fixtures/`` tree (holding a copy of ``fixtures/c``) and cache."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(repo_root / "fixtures" / "c", fixtures / "c")
    monkeypatch.setattr(build_fixtures, "REPO", tmp_path)
    monkeypatch.setattr(build_fixtures, "FIXTURES", fixtures)
    monkeypatch.setenv("RELIB_PURE_FIXTURE_CACHE", str(tmp_path / "cache"))
    build_fixtures.variants.cache_clear()
    yield fixtures
    # the variant table is cached per process: forget the sandbox's one
    build_fixtures.variants.cache_clear()


def exported(lib: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_build_goes_into_the_configured_cache(sandbox: Path, tmp_path: Path) -> None:
    lib = build_fixtures.build("c_plain")
    assert lib.parent.parent == tmp_path / "cache"
    assert lib.name == "libc_plain.so"
    name, _, key = lib.parent.name.partition("-")
    assert name == "c_plain" and len(key) == 16 and int(key, 16) >= 0
    assert "plain_add" in exported(lib)


def test_second_build_reuses_the_file_without_recompiling(sandbox: Path) -> None:
    first = build_fixtures.build("c_plain")
    before = first.stat()
    second = build_fixtures.build("c_plain")
    after = second.stat()
    assert second == first
    # a rebuild would os.replace() a fresh file: new inode, new mtime
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no leftover temp dirs


def test_edited_source_gets_a_new_key_and_a_fresh_build(sandbox: Path) -> None:
    old = build_fixtures.build("c_plain")
    source = sandbox / "c" / "plain.c"
    source.write_text(source.read_text() + "int plain_extra(void) { return 99; }\n")
    new = build_fixtures.build("c_plain")
    assert new.parent != old.parent
    assert old.exists()  # the old entry stays: a revert is a cache hit again
    assert "plain_extra" in exported(new)
    assert "plain_extra" not in exported(old)


def test_reverting_an_edit_hits_the_old_entry(sandbox: Path) -> None:
    source = sandbox / "c" / "plain.c"
    original = source.read_text()
    first = build_fixtures.build("c_plain")
    source.write_text(original + "int plain_extra(void) { return 99; }\n")
    assert build_fixtures.build("c_plain") != first
    source.write_text(original)
    assert build_fixtures.build("c_plain") == first


def test_a_sibling_file_in_the_folder_is_part_of_the_key(sandbox: Path) -> None:
    # Rust roots may include!() siblings, so every file in the folder counts
    before = build_fixtures.build("c_plain")
    (sandbox / "c" / "shared.h").write_text("#define SHARED 1\n")
    assert build_fixtures.build("c_plain").parent != before.parent


def test_changed_compiler_args_change_the_key(sandbox: Path) -> None:
    before = build_fixtures.build("c_plain")
    spec_file = sandbox / "c" / "fixture.json"
    spec = json.loads(spec_file.read_text())
    for v in spec["variants"]:
        if v["name"] == "c_plain":
            v["args"] = [*v.get("args", []), "-DPLAIN_VARIANT=2"]
    spec_file.write_text(json.dumps(spec))
    build_fixtures.variants.cache_clear()
    after = build_fixtures.build("c_plain")
    assert after.parent != before.parent


def test_other_variants_of_the_folder_build_from_the_copy(sandbox: Path) -> None:
    built, missing = build_fixtures.build_all(["c_versioned", "c_nodelete"])
    assert missing == {}
    assert "vers_get@@VERS_2" in exported(built["c_versioned"])
    assert built["c_nodelete"].parent.parent == build_fixtures.cache_dir()


def test_missing_cross_compilers_make_the_fixture_unavailable(sandbox: Path) -> None:
    folder = sandbox / "nocc"
    folder.mkdir()
    (folder / "f.c").write_text("int f(void) { return 1; }\n")
    (folder / "fixture.json").write_text(json.dumps({"variants": [
        {"name": "no_cc", "lang": "cross-c", "sources": ["f.c"],
         "compilers": ["relib-pure-no-such-cc", "relib-pure-no-such-cc2 -m32"]}]}))
    build_fixtures.variants.cache_clear()
    with pytest.raises(build_fixtures.FixtureUnavailable, match="no_cc"):
        build_fixtures.build("no_cc")
    built, missing = build_fixtures.build_all(["no_cc", "c_plain"])
    assert set(built) == {"c_plain"} and set(missing) == {"no_cc"}


def test_a_source_that_does_not_compile_fails_and_leaves_nothing_behind(sandbox: Path) -> None:
    folder = sandbox / "broken"
    folder.mkdir()
    (folder / "bad.c").write_text("int f(void) { return ; syntax error }\n")
    (folder / "fixture.json").write_text(json.dumps({"variants": [
        {"name": "broken", "lang": "c", "sources": ["bad.c"]}]}))
    build_fixtures.variants.cache_clear()
    with pytest.raises(build_fixtures.FixtureBuildFailed, match="bad.c"):
        build_fixtures.build("broken")
    entries = list(build_fixtures.cache_dir().glob("broken-*/*"))
    assert entries == []


def test_duplicate_fixture_names_are_rejected(sandbox: Path) -> None:
    folder = sandbox / "dup"
    folder.mkdir()
    (folder / "fixture.json").write_text(json.dumps({"variants": [
        {"name": "c_plain", "lang": "c", "sources": ["x.c"]}]}))
    build_fixtures.variants.cache_clear()
    with pytest.raises(ValueError, match="duplicate fixture name 'c_plain'"):
        build_fixtures.variants()


def test_unknown_fixture_name_lists_the_known_ones(sandbox: Path) -> None:
    with pytest.raises(KeyError, match="c_plain"):
        build_fixtures.build("no_such_fixture")


def test_cli_lists_and_builds(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_fixtures.main(["--list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"c_plain", "c_nodelete", "c_static_tls", "c_versioned", "c_initfini"} <= listed
    assert build_fixtures.main(["c_plain"]) == 0
    name, path = capsys.readouterr().out.split()
    assert name == "c_plain" and Path(path) == build_fixtures.build("c_plain")
