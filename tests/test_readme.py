"""The README's Python tour runs as written (paths swapped for built fixtures)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def _python_blocks(readme: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme, flags=re.S)


def test_readme_tour_runs(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """As written: no path is swapped. Its material is the example the package
    ships (built into a fresh cache here) and a library it compiles itself."""
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("cc is not installed")
    blocks = _python_blocks((repo_root / "README.md").read_text())
    assert blocks, "README lost its Python tour"
    code = blocks[0]
    assert "target/" not in code and "example_path()" in code
    monkeypatch.setenv("RELIB_PURE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "x86_64" in out and "0.7.0 0.7" in out
    assert "clean" in out          # the plain library's unload report
    assert "42" in out             # m.exports.add(2, 40)
    assert "module says" in out    # main logged through the import
    # the check passed with the interface it asked for, and said nothing failed
    assert "error " not in out
    assert list((tmp_path / "cache").iterdir()), "the example was not built into the cache"


def test_readme_reload_loop_runs(repo_root: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The Reloader snippet on the example module (C: the fastest build), edited while
    the snippet waits for events: the new version is loaded and the state handed over."""
    import shutil
    import subprocess
    import sys
    import threading
    import time

    from relib_pure.examples import source_path

    if shutil.which("cc") is None:
        pytest.skip("cc is not installed")
    (block,) = [b for b in _python_blocks((repo_root / "README.md").read_text())
                if "Reloader(" in b]
    src = tmp_path / "src"
    src.mkdir()
    source = src / "example_relib.c"
    shutil.copyfile(source_path("c"), source)
    lib = tmp_path / "out" / "libexample_relib.so"
    lib.parent.mkdir()
    build = [sys.executable, "-m", "relib_pure.examples.build", "--lang", "c", "--source",
             str(source), "--cache", str(tmp_path / "cache"), "-o", str(lib)]
    subprocess.run(build, check=True, capture_output=True)
    code = block
    for old, new in (('"target/debug/libmy_module.so"', repr(str(lib))),
                     ('["cargo", "build"]', repr(build)), ('src="src"', f"src={str(src)!r}"),
                     ("timeout=10", "timeout=2")):
        assert old in code, old
        code = code.replace(old, new)

    def edit() -> None:
        time.sleep(0.3)
        source.write_text(source.read_text().replace("(uint32_t)a + (uint32_t)b",
                                                     "(uint32_t)a * (uint32_t)b"))
    editor = threading.Thread(target=edit)
    editor.start()
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    editor.join()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines.count("module says hello from the example module") == 2
    assert "42" in lines and lines.index("42") < lines.index(
        "loaded; state from the previous version: 42")
    assert "loaded; state from the previous version: None" in lines
    assert any(ln.startswith("v1 loaded in ") for ln in lines)
    assert any(ln.startswith("v2 loaded in ") and ln.endswith("previous version clean")
               for ln in lines), out
