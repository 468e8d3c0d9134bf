"""The README's Python tour runs as written (paths swapped for built fixtures)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest


def _python_blocks(readme: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme, flags=re.S)


def test_readme_tour_runs(native: Callable[[str], Path], repo_root: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks((repo_root / "README.md").read_text())
    assert blocks, "README lost its Python tour"
    code = blocks[0]
    code = code.replace('"target/debug/libmy_module.so"', repr(str(native("relib_0_7"))))
    code = code.replace('"libplain.so"', repr(str(native("c_plain"))))
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "x86_64" in out and "0.7.0 0.7" in out
    assert "clean" in out          # the plain library's unload report
    assert "42" in out             # m.exports.add(2, 40)
