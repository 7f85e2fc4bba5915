"""Failures must raise clear errors on every rank, quickly, never hang (real processes).

Each scenario runs in fresh processes (``run_ranks``); collective timeouts are set far above
the time the test allows, so a pass proves the error came from detection, not from a timeout.
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from dist_harness import free_port, run_ranks

BACKENDS = ["shm", "grpc"]
SLOW_TIMEOUT = 60  # collective timeout where detection must beat it by far


def _init(backend, timeout=SLOW_TIMEOUT):
    import ember.distributed as dist

    dist.init_process_group(backend, timeout=timeout)
    return dist


def _errors(results, ranks):
    for r in ranks:
        out = results[r]
        assert out is not None, f"rank {r} never answered (hang?)"
        assert not out.ok, f"rank {r} did not raise: {out}"
    return {r: results[r].error for r in ranks}


# ---- fingerprint mismatches ---------------------------------------------------------------------
def scenario_shape_mismatch(rank, backend):
    import ember

    dist = _init(backend)
    t = ember.ones(5 if rank == 2 else 4)
    dist.all_reduce(t)


def scenario_op_mismatch(rank, backend):
    import ember

    dist = _init(backend)
    t = ember.ones(4)
    if rank == 0:
        dist.all_reduce(t)
    else:
        dist.broadcast(t, src=0)
    dist.barrier()  # a rank whose part of the mismatched op succeeded raises here


def scenario_both_receive(rank, backend):
    import ember

    dist = _init(backend)
    t = ember.ones(4)
    if rank == 0:
        dist.broadcast(t, src=1)  # waits for rank 1's data ...
    else:
        dist.scatter(t, None, src=0)  # ... which waits for rank 0's: no message shows it


def scenario_dtype_mismatch(rank, backend):
    import ember

    dist = _init(backend)
    t = ember.ones(200000, dtype=ember.float64 if rank == 1 else ember.float32)
    dist.all_reduce(t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_mismatch_raises_on_all_ranks_naming_ranks_and_call_sites(backend):
    res = run_ranks(scenario_shape_mismatch, 3, backend, timeout=40)
    errs = _errors(res, range(3))
    for r, (kind, msg) in errs.items():
        assert kind == "DistributedError", (r, kind, msg)
        assert "mismatch" in msg
        assert "shape=[5]" in msg and "shape=[4]" in msg, msg
        assert "rank 2" in msg and "test_failures.py" in msg, msg
        assert res[r].seconds < 15, res[r]


@pytest.mark.parametrize("backend", BACKENDS)
def test_op_mismatch_names_both_ops(backend):
    res = run_ranks(scenario_op_mismatch, 2, backend, timeout=40)
    errs = _errors(res, range(2))
    for r, (kind, msg) in errs.items():
        assert kind == "DistributedError" and "all_reduce" in msg and "broadcast" in msg, msg
        assert res[r].seconds < 15


@pytest.mark.parametrize("backend", BACKENDS)
def test_mismatch_without_messages_is_found_through_the_store(backend):
    res = run_ranks(scenario_both_receive, 2, backend, timeout=40)
    kind, msg = res[0].error
    assert kind == "DistributedError" and "collective mismatch" in msg, msg
    assert "broadcast" in msg and "scatter" in msg, msg
    assert res[0].seconds < 10, res[0]
    assert not res[1].ok  # the other rank raises too


def test_dtype_mismatch_on_the_ring_path():
    res = run_ranks(scenario_dtype_mismatch, 2, "grpc", timeout=40)
    for _kind, msg in _errors(res, range(2)).values():
        assert "float64" in msg and "float32" in msg, msg


# ---- timeouts and stalls ------------------------------------------------------------------------
def scenario_late_rank(rank, backend, stall):
    import ember

    records = []
    handler = logging.Handler()
    handler.emit = lambda rec: records.append(rec.getMessage())
    logging.getLogger("ember.distributed").addHandler(handler)
    os.environ["EMBER_STALL_WARNING_S"] = str(stall)
    dist = _init(backend, timeout=2)
    if rank == 1:
        time.sleep(4.5)  # never reaches the collective in time (alive, so not a dead peer)
        return records
    t0 = time.monotonic()
    try:
        dist.all_reduce(ember.ones(3))
    except dist.DistributedError as e:
        return ("raised", str(e), time.monotonic() - t0, records)
    return ("returned", None, time.monotonic() - t0, records)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_raises_naming_the_missing_rank_after_stall_warnings(backend):
    res = run_ranks(scenario_late_rank, 2, backend, 0.5, timeout=40)
    status, msg, waited, logs = res[0].value
    assert status == "raised", res[0]
    assert "Timed out after 2 s" in msg and "all_reduce" in msg, msg
    assert "ranks that have not arrived: [1]" in msg, msg
    assert 1.5 < waited < 7, waited
    stalls = [m for m in logs if "has waited" in m]
    assert stalls and "[1]" in stalls[0], logs


# ---- dead peers ---------------------------------------------------------------------------------
def scenario_dead_peer(rank, backend, victim):
    import ember

    dist = _init(backend)
    dist.barrier()
    if rank == victim:
        os._exit(3)
    time.sleep(0.3)
    t0 = time.monotonic()
    try:
        dist.all_reduce(ember.ones(100000))
    except dist.DistributedError as e:
        return (type(e).__name__, str(e), time.monotonic() - t0)
    return ("returned", None, 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world_size", [2, 3])
def test_dead_peer_is_noticed(backend, world_size):
    victim = world_size - 1
    res = run_ranks(scenario_dead_peer, world_size, backend, victim, timeout=40)
    assert res[victim] is None  # it exited without answering
    for r in range(world_size - 1):
        kind, msg, secs = res[r].value
        assert kind in ("DistBackendError", "DistributedError"), res[r]
        assert f"rank {victim}" in msg and ("closed" in msg or "lost" in msg), msg
        assert secs < 10, secs


# ---- same-host allreduce in shared memory, once its signals are in use ------------------------
def scenario_arena_second_call(rank, backend, case):
    """One arena allreduce that introduces the signals, then a second call that goes wrong:
    ``size``: rank 1's buffer is larger; ``private``: rank 1's buffer is not in the arena;
    ``op``: rank 1 broadcasts instead; ``dead``: rank 1 exits."""
    import numpy as np

    import ember
    from ember.distributed._runtime._state import resolve_group

    dist = _init(backend)
    pg = resolve_group(None)

    def arena_tensor(n):
        block = pg.shared_block(n, np.float32)
        block[...] = 1
        return ember.Tensor._wrap(block)

    dist.all_reduce(arena_tensor(100_000))
    if rank == 1 and case == "dead":
        os._exit(3)
    t0 = time.monotonic()
    try:
        if rank == 0 or case == "dead":
            dist.all_reduce(arena_tensor(100_000))
        elif case == "size":
            dist.all_reduce(arena_tensor(120_000))
        elif case == "private":
            dist.all_reduce(ember.ones(100_000))
        else:
            dist.broadcast(ember.ones(100_000), src=0)
        dist.barrier()
    except dist.DistributedError as e:
        return (type(e).__name__, str(e), time.monotonic() - t0)
    return ("returned", None, 0)


@pytest.mark.parametrize("case", ["size", "private", "op", "dead"])
def test_shared_memory_signals_report_mismatches_and_dead_peers(case):
    from ember.distributed._runtime import _futex

    if not _futex.available():
        pytest.skip("shared-memory signals are used on x86-64 Linux only")
    res = run_ranks(scenario_arena_second_call, 2, "shm", case, timeout=40)
    ranks = [0] if case == "dead" else [0, 1]
    for r in ranks:
        assert res[r] is not None and res[r].ok, res[r]
        kind, msg, secs = res[r].value
        assert kind in ("DistributedError", "DistBackendError"), res[r]
        assert secs < 10, secs
    msg0 = res[0].value[1]
    want = {
        "size": "shape=[120000]",
        "private": "shared memory",
        "op": "broadcast",
        "dead": "rank 1",
    }[case]
    assert want in msg0, msg0


# ---- rendezvous errors --------------------------------------------------------------------------
def scenario_init(rank, backend, timeout, hold=0.0):
    dist = _init(backend, timeout=timeout)
    dist.barrier()
    time.sleep(hold)  # keep rank 0's store up for processes that are still joining
    dist.destroy_process_group()
    return "ok"


def test_bad_token_is_refused():
    res = run_ranks(
        scenario_init,
        2,
        "grpc",
        3,
        env=lambda r: {"EMBER_TOKEN": "right" if r == 0 else "wrong"},
        timeout=40,
    )
    kind, msg = res[1].error
    assert kind == "DistStoreError" and "token" in msg, res[1]
    # rank 0 learns the real cause from the store's note of the refusal (issue #28)
    assert not res[0].ok and "rank 1 was turned away by the store" in res[0].error[1], res[0]


def test_world_size_mismatch():
    res = run_ranks(
        scenario_init, 2, "shm", 3, env=lambda r: {"WORLD_SIZE": "3"} if r == 1 else {}, timeout=40
    )
    kind, msg = res[1].error
    assert "world size mismatch" in msg and "world_size=3" in msg and "2" in msg, msg
    assert not res[0].ok


def test_rank_out_of_range_is_a_value_error():
    res = run_ranks(scenario_init, 2, "shm", 3, env={"RANK": "5"}, ranks=[0], timeout=20)
    kind, msg = res[0].error
    assert kind == "ValueError" and "Invalid rank 5" in msg and "[0, 1]" in msg


def test_duplicate_rank_is_refused():
    res = run_ranks(
        scenario_init,
        3,
        "shm",
        5,
        3.0,
        env=lambda r: {"RANK": "1", "WORLD_SIZE": "2"} if r == 2 else {"WORLD_SIZE": "2"},
        timeout=40,
    )
    errors = [o.error[1] for o in res.values() if o is not None and not o.ok]
    assert any("already claimed" in m for m in errors), res


def test_unreachable_master():
    port = free_port()
    res = run_ranks(
        scenario_init, 2, "grpc", 1.5, env={"MASTER_PORT": str(port)}, ranks=[1], timeout=20
    )
    kind, msg = res[1].error
    assert kind == "DistNetworkError" and "could not reach the store" in msg, msg
    assert res[1].seconds < 8


# ---- point-to-point size mismatch ---------------------------------------------------------------
def scenario_p2p_size(rank):
    import ember

    dist = _init("grpc")
    if rank == 0:
        dist.send(ember.ones(4), dst=1)
        dist.barrier()
    else:
        dist.recv(ember.zeros(5), src=0)


def test_p2p_size_mismatch_names_both_sides():
    res = run_ranks(scenario_p2p_size, 2, timeout=40)
    for _kind, msg in _errors(res, range(2)).values():
        assert "expected 20 bytes" in msg and "sent 16 bytes" in msg, msg
        assert "shape=[4]" in msg and "shape=[5]" in msg, msg


# ---- bad arguments (raised locally before anything is sent) -------------------------------------
def case_bad_arguments():
    import ember
    import ember.distributed as dist

    n = dist.get_world_size()
    checks = [
        (
            ValueError,
            "output tensor size must be equal to world_size times input",
            lambda: dist.all_gather_into_tensor(ember.zeros(n + 1), ember.zeros(1)),
        ),
        (
            ValueError,
            "input tensor must be the same size as output size times world size",
            lambda: dist.reduce_scatter_tensor(ember.zeros(1), ember.zeros(n + 1)),
        ),
        (
            TypeError,
            "same type",
            lambda: dist.all_gather_into_tensor(ember.zeros(n), ember.zeros(1, dtype=ember.int64)),
        ),
        (ValueError, "Invalid src 7", lambda: dist.broadcast(ember.zeros(1), src=7)),
        (
            ValueError,
            f"has {n + 1} tensors but the group has {n}",
            lambda: dist.all_gather([ember.zeros(1)] * (n + 1), ember.zeros(1)),
        ),
        (
            TypeError,
            "ReduceOp.AVG needs a floating-point",
            lambda: dist.all_reduce(ember.zeros(1, dtype=ember.int64), op=dist.ReduceOp.AVG),
        ),
        (
            TypeError,
            "Expected parameter `tensor` of type ember.Tensor",
            lambda: dist.all_reduce([1.0, 2.0]),
        ),
        (
            TypeError,
            "different dtypes",
            lambda: dist.all_gather([ember.zeros(1, dtype=ember.int64)] * n, ember.zeros(1)),
        ),
        (
            ValueError,
            "should not be the same as the rank of the current process",
            lambda: dist.send(ember.zeros(1), dst=dist.get_rank()),
        ),
    ]
    for exc, text, fn in checks:
        try:
            fn()
        except exc as e:
            assert text in str(e), (text, str(e))
        else:
            raise AssertionError(f"no {exc.__name__} for {text!r}")
    t = ember.ones(1)
    dist.all_reduce(t)  # the group is still usable afterwards
    assert t.item() == n
    return True


def test_bad_arguments_raise_locally(pools):
    pools(2, "shm").run(case_bad_arguments)


def test_api_before_init_raises(monkeypatch):
    import ember.distributed as dist

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="has not been initialized"):
        dist.get_rank()
    with pytest.raises(ValueError, match="Invalid backend"):
        dist.init_process_group("mpi")
    with pytest.raises(ValueError, match="MASTER_ADDR expected"):
        dist.init_process_group("shm", rank=0, world_size=1)


def test_single_process_group_in_process():
    import ember
    import ember.distributed as dist

    dist.init_process_group("auto", init_method="tcp://127.0.0.1:0?rank=0&world_size=1")
    try:
        assert dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
        assert dist.get_backend() == "auto"
        with pytest.raises(ValueError, match="twice"):
            dist.init_process_group("auto", init_method="tcp://127.0.0.1:0?rank=0&world_size=1")
        t = ember.arange(4, dtype=ember.float32)
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
        assert t.tolist() == [0, 1, 2, 3]
        out = ember.zeros(4)
        dist.all_gather_into_tensor(out, t)
        assert out.tolist() == [0, 1, 2, 3]
        dist.barrier()
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()


def test_init_through_a_given_store():
    import ember
    import ember.distributed as dist

    store = dist.HashStore()
    with pytest.raises(ValueError, match="rank and world_size"):
        dist.init_process_group("auto", store=store)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        t = ember.ones(3)
        dist.all_reduce(t, async_op=True).wait()
        assert t.tolist() == [1.0, 1.0, 1.0] and dist.get_backend() == "gloo"
    finally:
        dist.destroy_process_group()
    dist.init_process_group("shm", store=store, rank=0, world_size=1)  # a second generation
    dist.destroy_process_group()
