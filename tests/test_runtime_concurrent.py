"""Concurrent loads and unloads of clean libraries: no report may blame a module
for the host's own activity (its descriptors: /proc/self/task and /proc/self/fd
listings, pidfds, the inspector's files) or for another module's (its file
mappings while it loads, its owner thread's stack).

Each worker thread reloads its own copy of a clean fixture in a loop while
another thread inspects and validates other files; every report must be
clean. ``tools/stress_unload.py`` is the long run (10,000 cycles).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import stress_unload  # noqa: E402


@pytest.mark.parametrize("threads,cycles", [(2, 150), (8, 40)])
def test_concurrent_cycles_of_clean_libraries_report_no_leak(native, tmp_path: Path,
                                                              threads: int, cycles: int) -> None:
    sources = [native("rt_basic"), native("c_plain")]
    inspected = native("rust_plain")  # > 1 MiB: mapped and hashed on a helper thread
    libs, names = [], {}
    for i in range(threads):
        source = sources[i % len(sources)]
        lib = tmp_path / f"libclean{i}.so"
        shutil.copy(source, lib)
        libs.append(lib)
        names[lib] = source.name
    result = stress_unload.run(libs, cycles=cycles, inspect_path=inspected,
                               scratch=tmp_path / "scratch", seed=threads, source_names=names)
    assert result.cycles == threads * cycles
    assert result.inspections > 0
    assert result.errors == [], result.errors[:3]
    assert result.false_leaks == [], "\n".join(result.false_leaks[:5])
