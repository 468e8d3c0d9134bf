"""Bounded soak (200 reload cycles) and a smoke run of the cycle benchmark, each in a child."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("library,owner", [("rust_tls", "thread"), ("rt_basic", "caller")])
def test_soak_200_cycles_leaves_process_unchanged(native, library: str, owner: str) -> None:
    native(library)  # build (or skip) before timing anything
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "soak.py"), "--cycles", "200",
                           "--library", library, "--owner", owner, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)
    start, end = result["start"], result["end"]
    assert result["cycles"] == 200
    assert end["rss_kb"] - start["rss_kb"] < 2048, result
    assert (end["fds"], end["threads"], end["mappings"]) == \
        (start["fds"], start["threads"], start["mappings"]), result
    assert result["ok"] is True and proc.returncode == 0


def test_bench_cycle_runs_and_prints_ratios(native) -> None:
    native("c_plain")
    native("rust_plain")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_cycle.py"),
                           "--cycles", "5", "--calls", "200", "--rounds", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.startswith(("c_plain", "rust_plain"))]
    # c_plain, Rust with libgcc_s loaded per cycle, Rust with it pinned; two owner modes each
    assert [(r[0], r[1], r[4]) for r in rows] == [
        (lib, gcc, owner) for lib, gcc in (("c_plain", "n/a"), ("rust_plain", "cycled"),
                                           ("rust_plain", "pinned"))
        for owner in ("thread", "caller")]
    for row in rows:
        c_us, bare_us, py_us = float(row[2]), float(row[3]), float(row[5])
        ratio, bound = float(row[6].rstrip("x")), float(row[7].rstrip("x"))
        assert c_us > 0 and bare_us > 0 and py_us > 0 and bound > 0
        # the printed figures are rounded to 0.1
        assert abs(ratio - py_us / c_us) <= 0.01 * ratio + 0.06
        assert row[8] == ("yes" if ratio <= 3.0 else "no")
    assert "verification floor: one full /proc/self/maps read" in proc.stdout
    assert "target <= 3x: met for" in proc.stdout
    assert "owner=thread" in proc.stdout and "bare ctypes" in proc.stdout
