"""The relib fixture module behaves as shared/relib-abi.md says (§1.5-§1.6, §4).

Each test runs the minimal ctypes host of ``test_relib_fixture_support`` in a child
process (several scenarios abort by design) and checks what it reports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_relib_fixture_support import GENS, IIMP, IMPORT_CONV, RELIB_VERSION, drive

@pytest.mark.parametrize("gen", GENS)
def test_full_cycle(native: Callable[[str], Path], gen: str) -> None:
    code, r, out, err = drive(native(f"relib_{gen}"), gen)
    assert code == 0, err
    # init reserves the cache (hashbrown, 40-byte entries) and the transport (20,000 x 32)
    assert sorted(size for _, size, _, _ in r["on_alloc"]) == [640_000, 1_343_504]
    assert all(module == 1 and on_owner for module, _, _, on_owner in r["on_alloc"])
    assert r["main"] == [True, None] and "[module] main" in out
    assert r["empty"] == [True, None] and r["primitive"] == [True, None]
    assert r["primitive_bad"] == [False, None]
    assert r["primitive_ret"] == [True, -2**31]
    assert r["add"] == [True, 1]
    assert r["ref_"] == [True, None]
    assert r["ref_owned_ret"] == [True, "1" * 100]
    assert r["ref_ret"] == [True, "1" * 99]
    assert r["ref_ret2"] == [True, "111"]
    assert r["point"] == [True, [7, -8]]
    assert r["alloc_mem"] == [True, [4096, [0x2A]]]
    assert r["call_imports"] == [True, True]
    expected_imports = {"empty", "primitive", "primitive_ret", "ref_"}
    if IMPORT_CONV[gen] != "plain":
        expected_imports |= {"ref_ret", "point"}
    assert set(r["imports_called"]) == expected_imports
    assert r["once"] == [True, False]
    assert r["counter"] == [1, 2, 3]
    assert r["panic"] == [False, None]
    if gen in ("0_1_8", "0_2", "0_2_3", "0_3"):
        # the module's panic hook sends the text through the eprintln import
        assert len(r["eprintln"]) == 2 and 'the export "panic" panics on purpose' in r["eprintln"][1]
    else:
        assert r["eprintln"] == [] and 'the export "panic" panics on purpose' in err
    assert r["tls_drops_during_calls"] == 0
    assert r["threads_running"] == 1 and r["threads_after_join"] == 0
    # 25,000 distinct leaks: the first batch is exactly the cache size
    assert r["batches"][0] == 20_000 and all(n <= 20_000 for n in r["batches"])
    if gen == "0_7":
        assert r["is_ptr_allocated_calls"] > 0  # dealloc_validation asks about flushed pointers
    u = r["unload"]
    assert u["before_unload"] is True and "[module] before_unload" in out
    assert u["threads"] == 0
    # the 3 owner-thread TLS values were dropped by run_thread_local_dtors, on the owner thread
    assert u["tls_drops_in_dtors"] == [True, True, True]
    assert u["final_batches"] == 1
    assert u["live_allocations"] >= 25_001 and 3 << 20 in u["live_sizes"]
    assert u["live_sizes"].count(24) >= 25_000
    assert r["churn"] == [True, 10_000] and u["live_sizes"].count(64) >= 10_000
    assert u["dlclose"] == 0 and u["maps_after_dlclose"] == 0


@pytest.mark.parametrize("gen", ["0_2", "0_7"])
def test_nounload_module_runs_without_internals(native: Callable[[str], Path], gen: str) -> None:
    code, r, out, err = drive(native(f"relib_{gen}_nounload"), gen, "nounload")
    assert code == 0, err
    assert r["info"].endswith(f"|{RELIB_VERSION[gen]}|0")
    assert r["main"] == [True, None] and "[module] main" in out
    assert r["add"] == [True, 42] and r["call_imports"] == [True, True]


@pytest.mark.parametrize("gen", ["0_1_8", "0_7"])
def test_panic_main(native: Callable[[str], Path], gen: str) -> None:
    code, r, _out, err = drive(native(f"relib_{gen}_panic_main"), gen, "main")
    assert code == 0, err
    assert r["main"] == [False, None]
    text = "main panics on purpose"
    assert (text in r["eprintln"][0]) if gen == "0_1_8" else (r["eprintln"] == [] and text in err)
    assert r["unload"]["maps_after_dlclose"] == 0


@pytest.mark.parametrize("gen", ["0_1_8", "0_7"])
def test_before_unload_panic(native: Callable[[str], Path], gen: str) -> None:
    code, r, _out, err = drive(native(f"relib_{gen}_before_unload_panic"), gen, "main")
    assert code == 0, err
    assert r["main"] == [True, None]
    assert r["unload"] == {"before_unload": False}


@pytest.mark.parametrize("gen", ["0_1_8", "0_7"])
def test_threads_check(native: Callable[[str], Path], gen: str) -> None:
    code, r, _out, err = drive(native(f"relib_{gen}_threads_check"), gen, "main")
    assert code == 0, err
    assert r["unload"] == {"before_unload": True, "threads": 1}


def test_ret_primitive_main(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7_ret_primitive_main"), "0_7", "main", restype="u64")
    assert code == 0, err
    assert r["main"] == [True, 2**64 - 1]


def test_ret_heap_main(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7_ret_heap_main"), "0_7", "main", restype="rstring",
                               boxed=True)
    assert code == 0, err
    assert r["main"] == [True, "ret_heap_main"]
    assert r["unload"]["maps_after_dlclose"] == 0


@pytest.mark.parametrize("name, value", [("relib_0_7_code_change_a", 1), ("relib_0_7_code_change_b", 2)])
def test_code_change_mains(native: Callable[[str], Path], name: str, value: int) -> None:
    code, r, _out, err = drive(native(name), "0_7", "main", restype="u64")
    assert code == 0, err
    assert r["main"] == [True, value]


def test_backtrace_mappings_are_removed_by_misc_cleanup(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7_backtrace"), "0_7", "main")
    assert code == 0, err
    u = r["unload"]
    assert r["main"] == [True, None]
    # std's symbolizer mapped the file again on top of the loader's mappings
    assert u["maps_before_cleanup"] > u["maps_after_cleanup"] > 0
    assert u["maps_after_dlclose"] == 0


def test_backtrace_mappings_pin_the_file_without_cleanup(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7_backtrace"), "0_7", "main", cleanup=False)
    assert code == 0, err
    assert r["main"] == [True, None]
    assert r["unload"]["maps_after_dlclose"] > 0


def test_dealloc_validation_aborts(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7_dealloc_validation"), "0_7", "main")
    assert code == -6 and r == {}
    assert ("[module id: 1] something unrecoverable happened: invalid pointer was passed to "
            "dealloc of global allocator") in err


def test_import_panic_aborts_with_upstream_text(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7_import_panic"), "0_7", "main")
    assert code == -6 and r == {}
    assert '[relib] host panicked while executing import "panic" of module, aborting' in err


def test_locked_allocator_aborts_other_threads(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7"), "0_7", "locked")
    assert code == -6 and r == {}
    assert "module allocator was invoked while module was in the process of unloading" in err


@pytest.mark.parametrize("gen", ["0_4_1", "0_7"])
def test_misc_cleanup_deletes_the_modules_pthread_keys(native: Callable[[str], Path], gen: str) -> None:
    code, r, _out, err = drive(native(f"relib_{gen}"), gen, "keys")
    assert code == 0, err
    einval = 22
    assert r == {"create": 0, "direct": 0, "set_before": 0, "set_hooked_after": einval,
                 "set_direct_after": 0}


@pytest.mark.parametrize("slot", [IIMP + "on_alloc", "__relib__Imports_empty"])
def test_unset_slot_aborts(native: Callable[[str], Path], slot: str) -> None:
    code, r, _out, err = drive(native("relib_0_7"), "0_7", "unset", slot=slot)
    assert code == -6 and r == {}
    assert "called before the host set it" in err


@pytest.mark.parametrize("gen, text", [
    ("0_2_3", "[relib] host panicked while executing an import of module, aborting"),
    ("0_3", '[relib] host panicked while executing import "primitive_ret" of module, aborting'),
    ("0_7", '[relib] host panicked while executing import "primitive_ret" of module, aborting'),
])
def test_failing_import_aborts(native: Callable[[str], Path], gen: str, text: str) -> None:
    code, r, _out, err = drive(native(f"relib_{gen}"), gen, "import_fails", failing="primitive_ret")
    assert code == -6 and r == {}
    assert text in err


def test_import_that_leaves_the_success_flag_alone_aborts(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7"), "0_7", "import_fails", silent="empty")
    assert code == -6 and r == {}
    assert 'host did not set the success flag of import "empty" (byte 0xa5)' in err


def test_set_dealloc_callback_is_unrecoverable_on_linux(native: Callable[[str], Path]) -> None:
    code, r, _out, err = drive(native("relib_0_7"), "0_7", "dealloc_callback")
    assert code == -6 and r == {}
    assert "[module id: 1] something unrecoverable happened: set_dealloc_callback called on linux" in err
