"""Upstream relib's test host, in Python: the import implementations and export checks of
``testing/host/src/shared.rs`` and ``unloading.rs`` (relib 0.7.0), on relib_pure's public API.

Used in-process by ``tests/test_upstream_relib.py`` and, for scenarios that
abort the process or leave a module loaded for good, run as a script in a child::

    python tests/upstream_relib.py SCENARIO MODULE_PATH
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import relib_kit  # noqa: E402

from relib_pure.interface import Interface  # noqa: E402
from relib_pure.relib import RStr, load_module  # noqa: E402

SIZE_200_MB = 1024 * 1024 * 200
ONES = "1" * 100


def interface() -> Interface:
    """Upstream's own trait files, parsed as a user would."""
    shared = relib_kit.source_root() / "testing" / "shared" / "src"
    return Interface.from_rust(shared / "exports.rs", "Exports").merge(
        Interface.from_rust(shared / "imports.rs", "Imports"))


class HostImports:
    """``impl Imports for ModuleImportsImpl`` of upstream's host, with the same assertions.

    An assertion failing inside an import is a host panic: relib_pure reports it
    and the module aborts, as upstream's module does.
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        #: DropCallState per thread: None / "not-called" / "called"
        self.drop_state: dict[int, str] = {}
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def implementations(self) -> dict[str, Any]:
        def empty() -> None:
            self._count("empty")

        def empty_default() -> None:
            self._count("empty_default")

        def dbg_default() -> None:
            self._count("dbg_default")

        def ref_(r: RStr) -> None:
            assert r.to_str() == ONES, r.to_str()
            self._count("ref_")

        def ref_owned_ret(r: RStr) -> str:
            self._count("ref_owned_ret")
            return r.to_str()

        def ref_ret(r: RStr) -> RStr:
            self._count("ref_ret")
            return RStr(r.ptr + 1, r.len - 1)  # str.slice(1..): a view into the caller's str

        def ref_ret2(r: RStr, _r2: RStr) -> RStr:
            self._count("ref_ret2")
            return r

        def params_lt(_a: RStr, _b: RStr) -> str:
            raise AssertionError("unreachable")

        def primitive(p: int) -> None:
            assert p == 2**31 - 1, p
            self._count("primitive")

        def primitive_ret(p: int) -> int:
            assert p == -(2**31), p
            self._count("primitive_ret")
            return p

        def alloc_mem() -> bytes:
            self._count("alloc_mem")
            return b"\x01" * SIZE_200_MB

        def panic() -> None:
            self._count("panic")
            raise RuntimeError("expected panic")

        def thread_local_drop_called() -> None:
            ident = threading.get_ident()
            with self._lock:
                current = self.drop_state.get(ident)
                assert current == "not-called", f"drop state {current!r} on thread {ident}"
                self.drop_state[ident] = "called"
            self._count("thread_local_drop_called")

        return {"empty": empty, "empty_default": empty_default, "dbg_default": dbg_default,
                "ref_": ref_, "ref_owned_ret": ref_owned_ret, "ref_ret": ref_ret,
                "ref_ret2": ref_ret2, "_params_lt_and_output_without": params_lt,
                "primitive": primitive, "primitive_ret": primitive_ret, "alloc_mem": alloc_mem,
                "panic": panic, "thread_local_drop_called": thread_local_drop_called}


def vm_size() -> int:
    """VmSize in bytes: what upstream's ``memory_stats().virtual_mem`` reads on Linux."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def load(path: str | os.PathLike[str], host: HostImports | None = None, **kw: Any) -> Any:
    host = host or HostImports()
    return load_module(path, interface=interface(), imports=host.implementations(), **kw)


def check_exports(m: Any, host: HostImports) -> None:
    """upstream ``test_exports`` (unloading.rs), every export and the same assertions."""
    e = m.exports
    e.empty()
    e.empty_default()
    e.dbg_default()
    e.ref_(ONES)
    assert e.ref_owned_ret(ONES) == ONES
    assert e.ref_ret(ONES) == ONES[1:]
    assert e.ref_ret2(ONES, ONES) == ONES
    e.primitive(2**31 - 1)
    assert e.primitive_ret(-(2**31)) == -(2**31)
    host.drop_state[m.module.owner_ident] = "not-called"
    e.thread_locals()
    before = vm_size()
    assert len(e.alloc_mem()) == SIZE_200_MB
    assert vm_size() == before, f"VmSize {before} -> {vm_size()} around alloc_mem"
    e.leak()
    e.call_imports()
    assert e.only_called_once() is True
    assert e.only_called_once() is False


def child_main(scenario: str, path: str) -> int:
    """Scenarios that end the process or keep the module: print one JSON line of results."""
    host = HostImports()
    out: dict[str, Any] = {}
    if scenario == "no_unloading":
        m = load(path, host)
        m.call_main()
        try:
            m.unload()
        except Exception as e:  # the typed refusal is the result
            out["unload_error"] = getattr(e, "code", type(e).__name__)
        out["unloading"] = m.unloading
    elif scenario.startswith("exportify"):
        m = load(path, host)
        restype: Any = None
        if "ret_primitive_main" in scenario:
            restype = ctypes.c_uint64
        elif "ret_heap_main" in scenario:
            from relib_pure.relib import RString
            restype = RString
        try:
            out["main"] = m.call_main(restype)
        except Exception as e:
            out["main_error"] = getattr(e, "code", type(e).__name__)
    elif scenario == "panic_in_interface_module":
        m = load(path, host)
        m.call_main()
        try:
            m.exports.panic()
        except Exception as e:
            out["panic_error"] = getattr(e, "code", type(e).__name__)
        out["still_callable"] = m.exports.only_called_once()
    elif scenario == "panic_in_interface_host":
        m = load(path, host)
        m.call_main()
        print(json.dumps({"before_abort": True}), flush=True)
        m.exports.call_host_panic()
        out["returned"] = True  # must not be reached: the module aborts
    elif scenario == "dealloc_validation":
        m = load(path, host)
        print(json.dumps({"before_abort": True}), flush=True)
        m.call_main()
        out["returned"] = True
    elif scenario == "parallel_module_loading":
        results: list[str] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                m = load(path)
                m.call_main()
                what = "ok"
            except Exception as e:
                what = getattr(e, "code", type(e).__name__)
            with lock:
                results.append(what)
        threads = [threading.Thread(target=one) for _ in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["results"] = {r: results.count(r) for r in set(results)}
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], sys.argv[2]))


def mapped_bytes() -> tuple[int, int]:
    """``(bytes mapped outside [heap], bytes of [heap])`` from /proc/self/maps.

    VmSize is their sum, less the pages of the host's own ctypes callbacks
    (libffi maps them on demand; ``relib_pure.runtime.hostcode`` knows them). The
    brk heap is shared with the interpreter, whose own objects (the 200 MB
    ``alloc_mem`` reply among them) move its top, so the two are told apart.
    """
    from relib_pure.runtime import hostcode

    other = heap = 0
    with open("/proc/self/maps") as f:
        for line in f:
            span = line.split(None, 1)[0]
            start, end = (int(x, 16) for x in span.split("-"))
            if line.rstrip().endswith("[heap]"):
                heap += end - start
            elif line.split()[1] == "rwxp" and hostcode.host_code_in(start, end):
                continue
            else:
                other += end - start
    return other, heap
