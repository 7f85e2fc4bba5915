"""The shared-memory arena: its allocator, and the in-place allreduce of buffers that live in it
(what DDP's buckets use on one host). Real processes, real shared memory."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from ember.distributed._runtime import _shm_arena


def test_blocks_are_reserved_reused_and_freed_with_their_last_view():
    arena = _shm_arena.Arena(size=1 << 20)
    try:
        a = arena.block(1000, np.float32)
        b = arena.block(10, np.float64)
        assert a.dtype == np.float32 and a.shape == (1000,) and a.base is not None
        assert arena.offset_of(a) == 0 and arena.offset_of(b) == 4032  # 64-byte aligned
        assert arena.offset_of(np.zeros(3)) is None  # private memory is not in the arena
        view = a[10:20].reshape(2, 5)
        del a
        gc.collect()
        assert arena.alloc(64) == 4032 + 128  # a's block is still held by its view
        del view
        gc.collect()
        assert arena.alloc(4000) == 0  # freed with its last view, and reused first-fit
        assert arena.block(2 << 20, np.uint8) is None  # larger than the arena: no room
    finally:
        arena.close()


def test_holes_coalesce():
    arena = _shm_arena.Arena(size=1 << 16)
    try:
        offs = [arena.alloc(1024) for _ in range(4)]
        assert offs == [0, 1024, 2048, 3072]
        arena.free(1024, 1024)
        arena.free(2048, 1024)
        assert arena.alloc(2048) == 1024  # the two neighbouring holes merged
        arena.free(0, 1024)
        arena.free(1024, 2048)
        arena.free(3072, 1024)
        assert arena._free == [(0, 1 << 16)]
    finally:
        arena.close()


# ---- the allreduce, on every rank of a pool ---------------------------------------------------
def _arena_case(count: int, dtype: str, op: str):
    """All-reduce the same data twice: once in an arena block (in place, no messages) and
    once in private memory (the ring). Both must agree bitwise."""
    import ember
    import ember.distributed as dist
    from ember.distributed._runtime._state import resolve_group

    rank = dist.get_rank()
    rng = np.random.default_rng(rank)
    data = (rng.standard_normal(count) * 10).astype(dtype)
    pg = resolve_group(None)
    block = pg.shared_block(count, dtype)
    assert block is not None and pg.comm.arena.offset_of(block) is not None
    block[...] = data
    private = ember.from_numpy(data.copy())
    dist.all_reduce(ember.Tensor._wrap(block), op=getattr(dist.ReduceOp, op))
    dist.all_reduce(private, op=getattr(dist.ReduceOp, op))
    return block.tobytes() == private._data.tobytes(), block.copy()


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("op", ["SUM", "AVG", "MAX"])
def test_arena_all_reduce_matches_the_ring_bitwise(pools, world_size, op):
    pool = pools(world_size, "shm")
    count = 100_003  # above the direct-path threshold, not a multiple of the rank count
    out = pool.run(_arena_case, count, "float32", op)
    want = np.stack(
        [
            (np.random.default_rng(r).standard_normal(count) * 10).astype(np.float32)
            for r in range(world_size)
        ]
    )
    want = {"SUM": want.sum(0), "AVG": want.mean(0), "MAX": want.max(0)}[op]
    for rank in range(world_size):
        same, got = out[rank]
        assert same, f"rank {rank}: arena and ring results differ"
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        assert got.tobytes() == out[0][1].tobytes()  # every rank holds the same bits


def _no_arena_case():
    from ember.distributed._runtime._state import resolve_group

    pg = resolve_group(None)
    return pg.comm.arena is None, pg.shared_block(10, "float32") is None


def test_arena_can_be_turned_off(pools):
    pool = pools(2, "shm", env=(("EMBER_SHM_ARENA_BYTES", "0"),))
    assert pool.run(_no_arena_case) == [(True, True), (True, True)]


# ---- shared-memory signals: a communicator's later calls ----------------------------------------
def _repeat_case():
    """Several allreduces on one communicator, of blocks of several sizes (the first call
    introduces the signal blocks through the sockets, the later ones use them). Each must
    agree bitwise with the ring on the same data."""
    import ember
    import ember.distributed as dist
    from ember.distributed._runtime._state import resolve_group

    rank = dist.get_rank()
    pg = resolve_group(None)
    keep = pg.shared_block(70_001, "float32")
    same = []
    for step, count in enumerate([70_001, 200_000, 70_001, 150_000, 70_001]):
        data = np.random.default_rng(100 * step + rank).standard_normal(count).astype("float32")
        block = keep if count == 70_001 else pg.shared_block(count, "float32")
        block[...] = data
        private = ember.from_numpy(data.copy())
        dist.all_reduce(ember.Tensor._wrap(block), op=dist.ReduceOp.AVG)
        dist.all_reduce(private, op=dist.ReduceOp.AVG)
        same.append(block.tobytes() == private._data.tobytes())
    sig = pg.comm.arena.signals[(pg.comm.channel, tuple(pg.comm.ranks))]
    return same, None if sig is None else sig.calls


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("signals", ["1", "0"])
def test_repeated_arena_all_reduce_with_and_without_signals(pools, world_size, signals):
    from ember.distributed._runtime import _futex

    pool = pools(world_size, "shm", env=(("EMBER_SHM_SIGNALS", signals),))
    used = signals == "1" and _futex.available()
    for same, calls in pool.run(_repeat_case):
        assert same == [True] * 5
        # the first call went through the sockets; the four after it through the signals
        assert calls == (4 if used else None)


def test_futex_wait_returns_on_wake_and_on_a_changed_word():
    import mmap
    import threading
    import time

    from ember.distributed._runtime import _futex

    if not _futex.available():
        pytest.skip("signals are used on x86-64 Linux only")
    m = mmap.mmap(-1, 4096)
    word = np.frombuffer(m, dtype=np.int32, count=1)
    addr = word.__array_interface__["data"][0]
    start = time.perf_counter()
    _futex.wait(addr, 1, 5.0)  # the word holds 0, not 1: returns at once
    assert time.perf_counter() - start < 1.0

    def post():
        time.sleep(0.05)
        word[0] = 7
        _futex.wake(addr)

    threading.Thread(target=post).start()
    start = time.perf_counter()
    _futex.wait(addr, 0, 5.0)  # sleeps until the wake, not the 5 s timeout
    assert word[0] == 7 and time.perf_counter() - start < 2.0
    start = time.perf_counter()
    _futex.wait(addr, 7, 0.05)  # nobody wakes: the timeout ends it
    assert 0.04 < time.perf_counter() - start < 2.0


def _two_groups_case():
    """Arena allreduces on the world and on a subgroup, interleaved: each communicator has its
    own signal blocks and call count."""
    import ember
    import ember.distributed as dist
    from ember.distributed._runtime._state import resolve_group

    rank = dist.get_rank()
    sub = dist.new_group([0, 2])
    world = resolve_group(None)
    key = (world.comm.channel, tuple(world.comm.ranks))
    signals = world.comm.arena.signals
    before = signals[key].calls if signals.get(key) is not None else None  # (a reused pool)
    results = []
    for step in range(4):
        for group, members in ((None, [0, 1, 2]), (sub, [0, 2])):
            if rank not in members:
                continue
            pg = resolve_group(group)
            block = pg.shared_block(50_000, "float32")
            block[...] = rank + step
            dist.all_reduce(ember.Tensor._wrap(block), group=group)
            results.append(
                float(block[0]) == sum(r + step for r in members)
                and bool((block == block[0]).all())
            )
    subgroup = resolve_group(sub) if rank != 1 else None
    if signals[key] is None:  # signals are not used on this machine
        return all(results), None
    calls = [signals[key].calls - (before if before is not None else -1)]
    if subgroup is not None:
        calls.append(signals[(subgroup.comm.channel, tuple(subgroup.comm.ranks))].calls + 1)
    return all(results), calls


def test_arena_signals_are_kept_per_communicator(pools):
    from ember.distributed._runtime import _futex

    pool = pools(3, "shm")
    out = pool.run(_two_groups_case)
    for rank, (ok, calls) in enumerate(out):
        assert ok, rank
        if _futex.available():  # four calls on each communicator (a first one by socket)
            assert calls == ([4, 4] if rank != 1 else [4]), (rank, calls)
