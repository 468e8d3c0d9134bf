"""Shared declarations for the relib host tests: the fixture module's interface
(docs/fixture-module.md) and a recorder of host import calls. No tests here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from ctypes import Structure, c_bool, c_int32, c_size_t, c_uint64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relib_pure.relib import RStr, RString, RVecU8

REPO = Path(__file__).resolve().parent.parent

#: generation label (abi.GENERATIONS name) -> base fixture variant
GENERATION_FIXTURES = {
    "0.1.8": "relib_0_1_8",
    "0.2": "relib_0_2",
    "0.2.3": "relib_0_2_3",
    "0.3": "relib_0_3",
    "0.4.0": "relib_0_4_0",
    "0.4.1-0.6": "relib_0_4_1",
    "0.7": "relib_0_7",
}
#: generations whose imports can return structures (out-pointer or box)
STRUCT_IMPORTS = {"0.2.3", "0.3", "0.4.0", "0.4.1-0.6", "0.7"}
I32_MAX = 2**31 - 1
I32_MIN = -(2**31)
ONES = "1" * 100


class Point(Structure):
    _fields_ = [("x", c_int32), ("y", c_int32)]


EXPORTS: dict[str, tuple[Any, list[Any]]] = {
    "empty": (None, []),
    "primitive": (None, [c_int32]),
    "primitive_ret": (c_int32, [c_int32]),
    "add": (c_uint64, [c_uint64, c_uint64]),
    "ref_": (None, [RStr]),
    "ref_owned_ret": (RString, [RStr]),
    "ref_ret": (RStr, [RStr]),
    "ref_ret2": (RStr, [RStr, RStr]),
    "point": (Point, [c_int32, c_int32]),
    "alloc_mem": (RVecU8, [c_size_t]),
    "leak": (None, [c_size_t]),
    "thread_locals": (None, [c_size_t]),
    "call_imports": (c_bool, []),
    "only_called_once": (c_bool, []),
    "panic": (None, []),
    "spawn_thread": (None, [c_uint64]),
    "join_threads": (None, []),
    "counter": (c_uint64, []),
    "alloc_churn": (c_size_t, [c_size_t, c_size_t]),
}


def import_types(generation: str) -> dict[str, tuple[Any, list[Any]]]:
    """The fixture's import slots for one generation."""
    types: dict[str, tuple[Any, list[Any]]] = {
        "empty": (None, []),
        "primitive": (None, [c_int32]),
        "primitive_ret": (c_int32, [c_int32]),
        "ref_": (None, [RStr]),
        "on_tls_drop": (None, []),
        "panic": (None, []),
    }
    if generation in STRUCT_IMPORTS:
        types["ref_ret"] = (RStr, [RStr])
        types["point"] = (Point, [c_int32, c_int32])
    return types


@dataclass
class HostImports:
    """Python implementations of the fixture's imports that record what they saw."""

    generation: str
    calls: list[tuple[str, Any]] = field(default_factory=list)
    tls_drop_threads: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, name: str, value: Any = None) -> None:
        with self.lock:
            self.calls.append((name, value))

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def implementations(self) -> dict[str, Any]:
        def empty() -> None:
            self._record("empty")

        def primitive(x: int) -> None:
            self._record("primitive", x)

        def primitive_ret(x: int) -> int:
            self._record("primitive_ret", x)
            return x

        def ref_(s: RStr) -> None:
            self._record("ref_", s.to_str())

        def ref_ret(s: RStr) -> RStr:
            self._record("ref_ret", s.len)
            return RStr(s.ptr + 1, s.len - 1)  # a view into the module's own buffer

        def point(x: int, y: int) -> Point:
            self._record("point", (x, y))
            return Point(x, y)

        def on_tls_drop() -> None:
            self._record("on_tls_drop")
            with self.lock:
                self.tls_drop_threads.append(threading.get_ident())

        def panic() -> None:
            self._record("panic")
            raise RuntimeError("host import panics on purpose")

        impls = {"empty": empty, "primitive": primitive, "primitive_ret": primitive_ret,
                 "ref_": ref_, "on_tls_drop": on_tls_drop, "panic": panic}
        if self.generation in STRUCT_IMPORTS:
            impls["ref_ret"] = ref_ret
            impls["point"] = point
        return impls


def load_fixture(path: Path | str, generation: str, *, owner: str = "thread",
                 host: HostImports | None = None, **kwargs: Any) -> Any:
    """``load_module`` with the fixture's full interface."""
    from relib_pure.relib import load_module

    host = host if host is not None else HostImports(generation)
    return load_module(path, exports=EXPORTS, imports=host.implementations(),
                       import_types=import_types(generation), owner=owner, **kwargs)


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (for scenarios that abort or leak a module)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def child_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last stdout line of a child that printed one JSON object at the end."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON from child (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]
