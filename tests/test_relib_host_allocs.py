"""Allocation tracking with full 20,000-op batches (relib-abi.md §4.3).

The bench variant of the fixture makes ``n`` small allocations, keeps every
``keep_every``-th and frees the rest, so the host receives dozens of full
batches (allocs, then deallocs of pointers flushed long before). Unload must
hand back exactly the kept blocks: compared with a run that keeps nothing, the
freed count and bytes differ by exactly the kept blocks (32 bytes each). With
``dealloc_validation`` every free of a flushed pointer asks ``is_ptr_allocated``,
which must see batches still queued for the background fold.
"""

from __future__ import annotations

import ctypes
import shutil

import pytest

from relib_pure.relib import load_module

BENCH = {"bench_allocs": (ctypes.c_uint64, [ctypes.c_uint64, ctypes.c_uint64])}
N = 200_000


def _run(path, keep_every: int, owner: str) -> tuple[int, dict]:
    m = load_module(path, exports=BENCH, owner=owner)
    kept = m.exports.bench_allocs(N, keep_every)
    store = m.driver.store
    report = m.unload()
    assert report.unloaded, report
    assert store.batches >= N // 20_000  # full batches really went through the host
    return kept, report.extra


@pytest.mark.parametrize("variant,owner", [("relib_bench_0_7", "caller"),
                                           ("relib_bench_0_7_validation", "thread"),
                                           ("relib_bench_0_1_8", "thread")])
def test_exit_gets_exactly_the_kept_blocks(native, tmp_path, variant: str, owner: str) -> None:
    path = tmp_path / "libbench.so"
    shutil.copyfile(native(variant), path)
    none_kept, base = _run(path, 0, owner)
    kept, extra = _run(path, 10, owner)
    assert (none_kept, kept) == (0, N // 10)
    assert extra["freed_allocations"] - base["freed_allocations"] == kept
    assert extra["freed_bytes"] - base["freed_bytes"] == kept * 32


def test_store_counts_ops_and_folds_before_answering(native) -> None:
    m = load_module(native("relib_bench_0_7_validation"), exports=BENCH)
    try:
        kept = m.exports.bench_allocs(60_000, 3)
        store = m.driver.store
        assert store.ops >= 60_000  # 60k allocs were flushed in full batches
        live = m.live_allocations()  # folds whatever is still queued
        # 60,001 allocs then 40,001 frees flush in full batches of 20,000, so the
        # module's cache keeps only a few frees back: the host knows the kept blocks,
        # init's two buffers and those few (an unfolded batch would be 20,000 off)
        assert kept == 20_000 and kept + 2 <= live <= kept + 10
        assert store.ops == 20_000 * store.batches  # every flush was a full batch
        assert store.is_ptr_allocated(0) is False
    finally:
        assert m.unload().unloaded


def _ops(*ops: tuple[int, int, int, int]) -> ctypes.Array:
    """A module-style AllocatorOp array: tag, 4 garbage padding bytes, ptr, size, align."""
    import struct

    raw = b"".join(struct.pack("<I4sQQQ", tag, b"\xde\xad\xbe\xef", ptr, size, align)
                   for tag, ptr, size, align in ops)
    return ctypes.create_string_buffer(raw, len(raw))


def test_store_applies_batches_in_order_with_odd_layouts() -> None:
    from relib_pure.relib.allocs import AllocStore

    store = AllocStore(999)
    store.on_alloc(0x1000, 4096, 8)
    first = _ops((0, 0x2000, 32, 8), (0, 0x2040, 32, 8), (0, 0x3000, 1024, 1),
                 (0, 0x4000, 48, 16), (1, 0x1000, 4096, 8), (1, 0x9990, 32, 8))
    second = _ops((1, 0x2000, 32, 8),        # freed in a later batch
                  (0, 0x2040, 64, 16),       # re-allocated: its Dealloc was cancelled
                  (0, 0x5000, 32, 8))
    for batch in (first, second):
        store.on_cached_allocs(ctypes.addressof(batch), len(batch.raw) // 32)
    store.on_cached_allocs(8, 0)  # an empty flush carries a dangling pointer
    packed = store.pack()
    import struct

    entries = sorted(struct.iter_unpack("<QQQ", bytes(packed.buffer)))
    assert entries == [(0x2040, 64, 16), (0x3000, 1024, 1), (0x4000, 48, 16), (0x5000, 32, 8)]
    assert packed.count == 4 and packed.total_bytes == 64 + 1024 + 48 + 32
    assert store.is_ptr_allocated(0x3000) and not store.is_ptr_allocated(0x2000)
    assert (store.batches, store.ops) == (3, 9)


def test_store_entries_from_before_the_main_layout_was_chosen() -> None:
    # init reports through on_alloc and small flushes come before the first big
    # batch fixes the store's main layout; their entries must still be removable
    import struct

    from relib_pure.relib.allocs import AllocStore

    store = AllocStore(998)
    store.on_alloc(0x10, 32, 8)  # will be the main layout's size later
    small = _ops((0, 0x20, 32, 8), (0, 0x30, 24, 8))
    store.on_cached_allocs(ctypes.addressof(small), 2)
    big = _ops(*[(0, 0x100000 + 64 * i, 32, 8) for i in range(1000)],
               (1, 0x10, 32, 8), (1, 0x20, 32, 8), (0, 0x40, 32, 8))
    store.on_cached_allocs(ctypes.addressof(big), 1003)
    # 0x30 comes back with the main layout (its Dealloc was cancelled in the cache)
    late = _ops((1, 0x100000, 32, 8), (0, 0x30, 32, 8))
    store.on_cached_allocs(ctypes.addressof(late), 2)
    packed = store.pack()
    live = {ptr: (size, align) for ptr, size, align in struct.iter_unpack("<QQQ",
                                                                          bytes(packed.buffer))}
    assert 0x10 not in live and 0x20 not in live and 0x100000 not in live
    assert live[0x30] == (32, 8) and live[0x40] == (32, 8)
    assert len(live) == packed.count == 999 + 2
    assert packed.total_bytes == 32 * packed.count


def test_bench_relib_smoke() -> None:
    # the benchmark (tools/bench_relib.py) and its C baseline host still build and agree
    # on the work done; figures are not judged here (benchmarks are not timed tests)
    import json
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "tools" / "bench_relib.py"
    proc = subprocess.run([sys.executable, str(tool), "--runs", "1", "--n", "40000",
                           "--keep-every", "8", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["version"] == 1 and figures["leaked"] == 5_000
    assert figures["ops_per_run"] >= 40_000 + 35_000  # every alloc and free reached the host
    # both hosts freed the leaked blocks plus init's two buffers (relib_pure also frees
    # the stdout buffer before_unload's println made; the C host never calls it)
    assert figures["c"]["freed_allocations"] == 5_000 + 2
    assert figures["python"]["freed_allocations"] in (5_000 + 2, 5_000 + 3)
    assert figures["ratio_total"] > 0 and figures["python"]["python_share"] > 0


def test_unload_drops_the_host_side_live_set(native) -> None:
    # once exit freed them, the host holds neither the live set nor the exit list
    # (megabytes for a big leak) for a module that is gone; the figures stay
    m = load_module(native("relib_bench_0_7"), exports=BENCH)
    kept = m.exports.bench_allocs(N, 10)
    assert m.live_allocations() >= kept
    report = m.unload()
    assert report.unloaded, report
    assert report.extra["freed_allocations"] >= kept
    assert report.extra["freed_bytes"] >= kept * 32
    assert m.live_allocations() == 0
    assert len(m.driver.freed.buffer) == 0 and m.driver.freed.count >= kept
