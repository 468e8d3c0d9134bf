"""Shared by the relib fixture tests: the expected interface and a minimal ctypes host.

The tables below are written down from shared/relib-abi.md §0/§1 and
docs/fixture-module.md, not taken from relib_pure (which is written against the
same fixture at the same time). The ctypes host is run as a child process
(``python test_relib_fixture_support.py SCENARIO PATH GEN [JSON kwargs]``)
because several scenarios abort the process by design. No tests live here.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------
# Expected interface per generation, written down from the notes (not from relib_pure).

GENS = ["0_1_8", "0_2", "0_2_3", "0_3", "0_4_0", "0_4_1", "0_7"]
RELIB_VERSION = {"0_1_8": "0.1.8", "0_2": "0.2.0", "0_2_3": "0.2.3", "0_3": "0.3.0",
                 "0_4_0": "0.4.0", "0_4_1": "0.4.1", "0_7": "0.7.0"}
EXPORT_CONV = {g: ("A" if g in ("0_1_8", "0_2", "0_2_3") else "B") for g in GENS}
IMPORT_CONV = {g: {"0_1_8": "plain", "0_2": "plain", "0_2_3": "A"}.get(g, "B") for g in GENS}

IEXP = "__relib_____Internal___Exports____"
IIMP = "__relib_____Internal___Imports____"


def internal_exports(gen: str) -> set[str]:
    names = {"init", "exit", "take_cached_allocs_before_exit", "lock_module_allocator",
             "spawned_threads_count", "run_thread_local_dtors"}
    if gen == "0_4_0":
        names.add("unmap_all_mmaps")
    if gen in ("0_4_1", "0_7"):
        names.add("misc_cleanup")
    if gen in ("0_4_0", "0_4_1", "0_7"):
        names.add("set_dealloc_callback")
    return {IEXP + n for n in names}


def internal_imports(gen: str) -> set[str]:
    names = {"on_alloc", "on_cached_allocs", "unrecoverable"}
    if gen in ("0_1_8", "0_2", "0_2_3", "0_3"):
        names.add("eprintln")
    if gen == "0_7":
        names.add("is_ptr_allocated")
    return {IIMP + n for n in names}


def hooks(gen: str) -> set[str]:
    names = {"__cxa_thread_atexit_impl", "pthread_create"}
    if gen in ("0_4_0", "0_4_1", "0_7"):
        names |= {"mmap64", "munmap"}
    if gen in ("0_4_1", "0_7"):
        names |= {"pthread_key_create", "pthread_key_delete"}
    return names


EXPORTS = ["empty", "primitive", "primitive_ret", "add", "ref_", "ref_owned_ret", "ref_ret",
           "ref_ret2", "point", "alloc_mem", "leak", "thread_locals", "call_imports",
           "only_called_once", "panic", "spawn_thread", "join_threads", "counter", "alloc_churn"]
BOXED_EXPORTS = ["ref_owned_ret", "ref_ret", "ref_ret2", "point", "alloc_mem"]


def public_exports(gen: str) -> set[str]:
    names = {f"__relib__Exports_{f}" for f in EXPORTS} | {"__relib__main", "__relib__before_unload"}
    if EXPORT_CONV[gen] == "B":
        names |= {f"__post__relib__Exports_{f}" for f in BOXED_EXPORTS}
    return names


def public_imports(gen: str) -> set[str]:
    fns = ["empty", "primitive", "primitive_ret", "ref_", "on_tls_drop", "panic"]
    boxed = [] if IMPORT_CONV[gen] == "plain" else ["ref_ret", "point"]
    names = {f"__relib__Imports_{f}" for f in fns + boxed}
    if IMPORT_CONV[gen] == "B":
        names |= {f"__post__relib__Imports_{f}" for f in boxed}
    return names



# ---------------------------------------------------------------------------------------
# A minimal ctypes host (runs in a child process: see ``main`` at the bottom)


class RawSlice(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class StableLayout(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("align", ctypes.c_size_t)]


class RStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class RString(ctypes.Structure):
    """abi_stable 0.11's RString/RVec<u8> (32 bytes): buffer, length, capacity, vtable."""
    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t), ("cap", ctypes.c_size_t),
                ("vtable", ctypes.c_void_p)]


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32)]


def maps_lines(path: str) -> int:
    with open("/proc/self/maps") as f:
        return sum(path in line for line in f)


class Driver:
    """Host side of one module, every call on the thread that created it (§4.1, §4.2)."""

    def __init__(self, path: str, gen: str, unloading: bool = True,
                 unset: tuple[str, ...] = (), failing: str = "", silent: str = "") -> None:
        self.path, self.gen, self.unloading = path, gen, unloading
        self.unset = unset  # slots left holding the module's placeholder
        self.failing = failing  # this import reports failure (a "host panic")
        self.silent = silent  # this import never writes the success flag (a host bug)
        self.owner = threading.get_ident()
        self.store: dict[int, tuple[int, int]] = {}
        self.store_lock = threading.Lock()
        self.events: dict[str, Any] = {"on_alloc": [], "batches": [], "eprintln": [],
                                       "tls_drop_threads": [], "is_ptr_allocated": 0,
                                       "imports": []}
        self.keep: list[Any] = []          # callbacks and boxes stay alive while mapped
        self.boxes: dict[int, Any] = {}
        libc = ctypes.CDLL(None)
        self.libc = libc
        libc.dlopen.restype = ctypes.c_void_p
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.dlclose.argtypes = [ctypes.c_void_p]
        mode = os.RTLD_NOW | os.RTLD_LOCAL | (os.RTLD_DEEPBIND if unloading else 0)
        self.handle = libc.dlopen(path.encode(), mode)
        assert self.handle, "dlopen failed"
        self.lib = ctypes.CDLL(path, handle=self.handle)
        info = RawSlice.in_dll(self.lib, "__RELIB__CRATE_COMPILATION_INFO__")
        self.info = ctypes.string_at(info.ptr, info.len).decode()
        self.module_id = 1
        self._wire_imports()
        if unloading:
            self._wire_internal()
            init = getattr(self.lib, IEXP + "init")
            if gen == "0_7":
                init.argtypes = [ctypes.c_size_t, ctypes.c_uint64, ctypes.c_bool]
                init(self.owner, self.module_id, True)
            else:
                init.argtypes = [ctypes.c_size_t, ctypes.c_uint64]
                init(self.owner, self.module_id)

    # ---- slots ----------------------------------------------------------------------

    def _set_slot(self, name: str, cfunc: Any) -> None:
        if name in self.unset:
            return
        self.keep.append(cfunc)
        ctypes.c_void_p.in_dll(self.lib, name).value = ctypes.cast(cfunc, ctypes.c_void_p).value

    def _wire_internal(self) -> None:
        v07 = self.gen == "0_7"

        def on_alloc(module: int, ptr: int, layout: StableLayout) -> None:
            with self.store_lock:
                self.store[ptr] = (layout.size, layout.align)
            self.events["on_alloc"].append((module, layout.size, layout.align,
                                            threading.get_ident() == self.owner))

        def on_cached_allocs(module: int, ops: RawSlice) -> None:
            raw = ctypes.string_at(ops.ptr, 32 * ops.len) if ops.len else b""
            with self.store_lock:
                for tag, ptr, size, align in struct.iter_unpack("<I4xQQQ", raw):
                    if tag == 0:
                        self.store[ptr] = (size, align)
                    else:
                        self.store.pop(ptr, None)
            self.events["batches"].append((module, ops.len))

        def unrecoverable(*args: Any) -> None:
            try:
                msg = args[-1]
                text = ctypes.string_at(msg.ptr, msg.len).decode()
                prefix = f"[module id: {args[0]}]" if v07 else "[module]"
                sys.stderr.write(f"{prefix} something unrecoverable happened: {text}\naborting\n")
                sys.stderr.flush()
            finally:
                os.abort()

        def eprintln(msg: RawSlice) -> None:
            text = ctypes.string_at(msg.ptr, msg.len).decode()
            self.events["eprintln"].append(text)
            sys.stderr.write(text + "\n")

        def is_ptr_allocated(module: int, ptr: int) -> bool:
            self.events["is_ptr_allocated"] += 1
            with self.store_lock:
                return ptr in self.store

        cf = ctypes.CFUNCTYPE
        u64, vp = ctypes.c_uint64, ctypes.c_void_p
        self._set_slot(IIMP + "on_alloc", cf(None, u64, vp, StableLayout)(on_alloc))
        self._set_slot(IIMP + "on_cached_allocs", cf(None, u64, RawSlice)(on_cached_allocs))
        if v07:
            self._set_slot(IIMP + "unrecoverable", cf(None, u64, RawSlice)(unrecoverable))
            self._set_slot(IIMP + "is_ptr_allocated", cf(ctypes.c_bool, u64, vp)(is_ptr_allocated))
        else:
            self._set_slot(IIMP + "unrecoverable", cf(None, RawSlice)(unrecoverable))
        if self.gen in ("0_1_8", "0_2", "0_2_3", "0_3"):
            self._set_slot(IIMP + "eprintln", cf(None, RawSlice)(eprintln))

    def _import(self, name: str, restype: Any, argtypes: list[Any], fn: Callable[..., Any],
                boxed: bool = False) -> None:
        conv = IMPORT_CONV[self.gen]
        slot = f"__relib__Imports_{name}"
        events = self.events["imports"]
        if name == self.failing:
            def fail(*_args: Any) -> Any:
                raise RuntimeError(f"import {name} fails on purpose")
            fn = fail

        if conv == "plain":
            def plain(*args: Any) -> Any:
                events.append(name)
                return fn(*args)
            self._set_slot(slot, ctypes.CFUNCTYPE(restype, *argtypes)(plain))
        elif conv == "A":
            def conv_a(ret: int, *args: Any) -> bool:
                events.append(name)
                try:
                    value = fn(*args)
                except Exception:
                    return False
                if restype is not None:
                    ctypes.memmove(ret, ctypes.byref(restype(value) if not isinstance(value, ctypes.Structure)
                                                     else value), ctypes.sizeof(restype))
                return True
            self._set_slot(slot, ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, *argtypes)(conv_a))
        else:
            def conv_b(success: Any, *args: Any) -> Any:
                events.append(name)
                if name == self.silent:
                    return None if restype is None else 0
                try:
                    value = fn(*args)
                except Exception:
                    success[0] = False
                    return 0 if restype is not None else None
                success[0] = True
                if boxed:
                    box = value if isinstance(value, ctypes.Structure) else restype(value)
                    self.boxes[ctypes.addressof(box)] = box
                    return ctypes.addressof(box)
                return value

            def post(ptr: int) -> None:
                self.boxes.pop(ptr)
            ret = ctypes.c_void_p if boxed else restype
            self._set_slot(slot, ctypes.CFUNCTYPE(ret, ctypes.POINTER(ctypes.c_bool), *argtypes)(conv_b))
            if boxed:
                self._set_slot(f"__post__relib__Imports_{name}", ctypes.CFUNCTYPE(None, ctypes.c_void_p)(post))

    def _wire_imports(self) -> None:
        ones = b"1" * 100

        def raise_it() -> None:
            raise RuntimeError("the host import panics on purpose")

        def check_ref(s: RStr) -> None:
            assert ctypes.string_at(s.ptr, s.len) == ones

        def tls_drop() -> None:
            self.events["tls_drop_threads"].append(threading.get_ident() == self.owner)

        self._import("empty", None, [], lambda: None)
        self._import("primitive", None, [ctypes.c_int32], lambda x: None if x == 2**31 - 1 else raise_it())
        self._import("primitive_ret", ctypes.c_int32, [ctypes.c_int32], lambda x: x)
        self._import("ref_", None, [RStr], check_ref)
        self._import("on_tls_drop", None, [], tls_drop)
        self._import("panic", None, [], raise_it)
        if IMPORT_CONV[self.gen] != "plain":
            self._import("ref_ret", RStr, [RStr], lambda s: RStr(s.ptr + 1, s.len - 1), boxed=True)
            self._import("point", Point, [ctypes.c_int32, ctypes.c_int32], lambda x, y: Point(x, y),
                         boxed=True)

    # ---- calls --------------------------------------------------------------------------

    def call(self, symbol: str, restype: Any = None, argtypes: tuple = (), args: tuple = (),
             boxed: bool = False) -> tuple[bool, Any]:
        """(ok, value) of a public export; boxed values are copied out, then post is called."""
        f = getattr(self.lib, symbol)
        if EXPORT_CONV[self.gen] == "A":
            f.restype = ctypes.c_bool
            f.argtypes = [ctypes.c_void_p, *argtypes]
            out = (restype or ctypes.c_char)()
            ok = f(ctypes.byref(out), *args)
            return ok, (copy_out(out) if ok and restype is not None else None)
        success = ctypes.c_bool(False)
        f.argtypes = [ctypes.POINTER(ctypes.c_bool), *argtypes]
        f.restype = ctypes.c_void_p if boxed else restype
        value = f(ctypes.byref(success), *args)
        if not success.value:
            return False, None
        if boxed:
            copied = copy_out(restype.from_address(value))
            post = getattr(self.lib, "__post" + symbol)
            post.argtypes = [ctypes.c_void_p]
            post.restype = None
            post(value)
            return True, copied
        return True, value

    def internal(self, name: str, restype: Any = None) -> Any:
        f = getattr(self.lib, IEXP + name)
        f.restype = restype
        f.argtypes = []
        return f()

    def unload(self, cleanup: bool = True) -> dict[str, Any]:
        """§4.2 on the owner thread; returns what happened at each step."""
        assert threading.get_ident() == self.owner
        report: dict[str, Any] = {}
        report["before_unload"] = self.call("__relib__before_unload")[0]
        if not report["before_unload"]:
            return report  # BeforeUnloadPanicked
        report["threads"] = self.internal("spawned_threads_count", ctypes.c_uint64)
        if report["threads"]:
            return report  # ThreadsStillRunning
        self.internal("lock_module_allocator")
        drops_before = len(self.events["tls_drop_threads"])
        self.internal("run_thread_local_dtors")
        report["tls_drops_in_dtors"] = self.events["tls_drop_threads"][drops_before:]
        report["maps_before_cleanup"] = maps_lines(self.path)
        if cleanup and self.gen in ("0_4_0", "0_4_1", "0_7"):
            self.internal("unmap_all_mmaps" if self.gen == "0_4_0" else "misc_cleanup")
        report["maps_after_cleanup"] = maps_lines(self.path)
        batches_before = len(self.events["batches"])
        self.internal("take_cached_allocs_before_exit")
        report["final_batches"] = len(self.events["batches"]) - batches_before
        with self.store_lock:
            live = dict(self.store)
            self.store.clear()
        report["live_allocations"] = len(live)
        report["live_sizes"] = sorted(size for size, _ in live.values())
        packed = bytearray(24 * len(live))
        for i, (ptr, (size, align)) in enumerate(live.items()):
            struct.pack_into("<QQQ", packed, 24 * i, ptr, size, align)
        buf = (ctypes.c_char * max(len(packed), 1)).from_buffer(packed if packed else bytearray(1))
        exit_ = getattr(self.lib, IEXP + "exit")
        exit_.argtypes = [RawSlice]
        exit_.restype = None
        exit_(RawSlice(ctypes.addressof(buf), len(live)))
        del buf
        report["dlclose"] = self.libc.dlclose(self.handle)
        report["maps_after_dlclose"] = maps_lines(self.path)
        return report


def copy_out(value: Any) -> Any:
    if isinstance(value, RVecU8):
        data = ctypes.string_at(value.ptr, value.len)
        return [len(data), sorted(set(data))]
    if isinstance(value, (RString, RStr)):
        return ctypes.string_at(value.ptr, value.len).decode()
    if isinstance(value, Point):
        return [value.x, value.y]
    return value.value if hasattr(value, "value") else value


class RVecU8(RString):
    pass


def scenario_full(path: str, gen: str) -> dict[str, Any]:
    """Load, main, every export kind, 25,000 leaks (one full batch), TLS, unload."""
    d = Driver(path, gen)
    r: dict[str, Any] = {"info": d.info, "on_alloc": list(d.events["on_alloc"])}
    ones = b"1" * 100
    s = RStr(ctypes.cast(ctypes.c_char_p(ones), ctypes.c_void_p).value, 100)
    u64, i32, sz = ctypes.c_uint64, ctypes.c_int32, ctypes.c_size_t
    r["main"] = d.call("__relib__main")
    r["empty"] = d.call("__relib__Exports_empty")
    r["primitive"] = d.call("__relib__Exports_primitive", None, (i32,), (2**31 - 1,))
    r["primitive_bad"] = d.call("__relib__Exports_primitive", None, (i32,), (5,))
    r["primitive_ret"] = d.call("__relib__Exports_primitive_ret", i32, (i32,), (-2**31,))
    r["add"] = d.call("__relib__Exports_add", u64, (u64, u64), (2**64 - 1, 2))
    r["ref_"] = d.call("__relib__Exports_ref_", None, (RStr,), (s,))
    r["ref_owned_ret"] = d.call("__relib__Exports_ref_owned_ret", RString, (RStr,), (s,), True)
    r["ref_ret"] = d.call("__relib__Exports_ref_ret", RStr, (RStr,), (s,), True)
    r["ref_ret2"] = d.call("__relib__Exports_ref_ret2", RStr, (RStr, RStr),
                           (RStr(s.ptr, 3), s), True)
    r["point"] = d.call("__relib__Exports_point", Point, (i32, i32), (7, -8), True)
    r["alloc_mem"] = d.call("__relib__Exports_alloc_mem", RVecU8, (sz,), (4096,), True)
    r["call_imports"] = d.call("__relib__Exports_call_imports", ctypes.c_bool)
    r["imports_called"] = sorted(set(d.events["imports"]))
    r["once"] = [d.call("__relib__Exports_only_called_once", ctypes.c_bool)[1] for _ in range(2)]
    r["counter"] = [d.call("__relib__Exports_counter", u64)[1] for _ in range(3)]
    r["panic"] = d.call("__relib__Exports_panic")
    r["eprintln"] = list(d.events["eprintln"])
    d.call("__relib__Exports_thread_locals", None, (sz,), (1 << 20,))
    r["tls_drops_during_calls"] = len(d.events["tls_drop_threads"])
    d.call("__relib__Exports_spawn_thread", None, (u64,), (50,))
    r["threads_running"] = d.internal("spawned_threads_count", ctypes.c_uint64)
    d.call("__relib__Exports_join_threads")
    r["threads_after_join"] = d.internal("spawned_threads_count", ctypes.c_uint64)
    for _ in range(25_000):
        d.call("__relib__Exports_leak", None, (sz,), (24,))
    d.call("__relib__Exports_leak", None, (sz,), (3 << 20,))
    r["churn"] = d.call("__relib__Exports_alloc_churn", sz, (sz, sz), (100_000, 10))
    r["batches"] = [n for _, n in d.events["batches"]]
    r["is_ptr_allocated_calls"] = d.events["is_ptr_allocated"]
    r["unload"] = d.unload()
    return r


def scenario_main_only(path: str, gen: str, restype: str = "", boxed: bool = False,
                       cleanup: bool = True) -> dict[str, Any]:
    d = Driver(path, gen)
    types = {"": None, "u64": ctypes.c_uint64, "rstring": RString}
    r: dict[str, Any] = {"main": d.call("__relib__main", types[restype], (), (), boxed)}
    r["eprintln"] = list(d.events["eprintln"])
    r["maps_after_main"] = maps_lines(path)
    r["unload"] = d.unload(cleanup=cleanup)
    return r


def scenario_locked_allocator(path: str, gen: str) -> dict[str, Any]:
    """A module thread that frees memory after lock_module_allocator must abort (§4.3)."""
    d = Driver(path, gen)
    d.call("__relib__Exports_spawn_thread", None, (ctypes.c_uint64,), (300,))
    d.internal("lock_module_allocator")
    threading.Event().wait(3)
    return {"survived": True}


def scenario_nounload(path: str, gen: str) -> dict[str, Any]:
    d = Driver(path, gen, unloading=False)
    r: dict[str, Any] = {"info": d.info, "main": d.call("__relib__main")}
    r["add"] = d.call("__relib__Exports_add", ctypes.c_uint64, (ctypes.c_uint64,) * 2, (40, 2))
    r["call_imports"] = d.call("__relib__Exports_call_imports", ctypes.c_bool)
    return r


def scenario_pthread_keys(path: str, gen: str) -> dict[str, Any]:
    """Keys made through the module's hook die in misc_cleanup; other keys live on."""
    d = Driver(path, gen)
    libc = d.libc
    libc.pthread_setspecific.argtypes = [ctypes.c_uint, ctypes.c_void_p]
    hooked, direct = ctypes.c_uint(), ctypes.c_uint()
    create = d.lib.pthread_key_create
    create.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
    r: dict[str, Any] = {"create": create(ctypes.byref(hooked), None),
                         "direct": libc.pthread_key_create(ctypes.byref(direct), None)}
    r["set_before"] = libc.pthread_setspecific(hooked.value, 1)
    d.internal("misc_cleanup")
    r["set_hooked_after"] = libc.pthread_setspecific(hooked.value, 1)
    r["set_direct_after"] = libc.pthread_setspecific(direct.value, 1)
    return r


def scenario_unset_slot(path: str, gen: str, slot: str) -> dict[str, Any]:
    """Leave one slot holding the module's placeholder, then use it: the process aborts."""
    d = Driver(path, gen, unset=(slot,))
    d.call("__relib__Exports_call_imports", ctypes.c_bool)
    return {"survived": True}


def scenario_import_fails(path: str, gen: str, failing: str = "", silent: str = "") -> dict[str, Any]:
    """call_imports with one import that reports failure or leaves the flag alone."""
    d = Driver(path, gen, failing=failing, silent=silent)
    return {"call_imports": d.call("__relib__Exports_call_imports", ctypes.c_bool)}


def scenario_set_dealloc_callback(path: str, gen: str) -> dict[str, Any]:
    d = Driver(path, gen)
    f = getattr(d.lib, IEXP + "set_dealloc_callback")
    f.argtypes = [ctypes.c_void_p]
    f(None)
    return {"survived": True}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "full": scenario_full, "main": scenario_main_only, "locked": scenario_locked_allocator,
    "nounload": scenario_nounload, "keys": scenario_pthread_keys, "unset": scenario_unset_slot,
    "dealloc_callback": scenario_set_dealloc_callback, "import_fails": scenario_import_fails,
}


def main(argv: list[str]) -> int:
    """``test_relib_fixture.py SCENARIO PATH GEN [JSON kwargs]``: prints one JSON line."""
    scenario, path, gen = argv[:3]
    kwargs = json.loads(argv[3]) if len(argv) > 3 else {}
    result: dict[str, Any] = {}

    def owner() -> None:
        result.update(SCENARIOS[scenario](path, gen, **kwargs))
    t = threading.Thread(target=owner, name="module-owner")
    t.start()
    t.join()
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------
# Running a scenario in a child process


def drive(path: Path, gen: str, scenario: str = "full", timeout: float = 60,
          **kwargs: Any) -> tuple[int, dict[str, Any], str, str]:
    proc = subprocess.run([sys.executable, __file__, scenario, str(path), gen, json.dumps(kwargs)],
                          capture_output=True, text=True, timeout=timeout)
    result: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    return proc.returncode, result, proc.stdout, proc.stderr


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
