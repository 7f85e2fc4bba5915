"""DistributedDataParallel on real processes: N ranks x batch B == 1 process x batch N*B."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "distributed"))
from dist_harness import run_ranks  # noqa: E402  (F's real multi-process harness)

STEPS = 3
BATCH = 4


def _model():
    import ember.nn as nn

    return nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def _data(world):
    rng = np.random.default_rng(123)
    x = rng.standard_normal((STEPS, world * BATCH, 5)).astype(np.float32)
    y = rng.standard_normal((STEPS, world * BATCH, 3)).astype(np.float32)
    return x, y


def _train(world, use_ddp, rank=0, optim="sgd", bucket_cap_mb=25.0, accumulate=False):
    import ember
    import ember.nn.functional as F
    from ember.distributed.parallel.ddp import DistributedDataParallel

    ember.manual_seed(0)
    model = _model()
    if use_ddp and rank != 0:
        with ember.no_grad():  # DDP must broadcast rank 0's weights at wrap time
            for p in model.parameters():
                p.add_(1.0)
    net = DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb) if use_ddp else model
    opt = (
        ember.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        if optim == "sgd"
        else ember.optim.Adam(net.parameters(), lr=1e-2)
    )
    x, y = _data(world)
    lo, hi = (rank * BATCH, (rank + 1) * BATCH) if use_ddp else (0, world * BATCH)
    for s in range(STEPS):
        opt.zero_grad()
        xb, yb = ember.tensor(x[s, lo:hi]), ember.tensor(y[s, lo:hi])
        if accumulate:  # two half-batches, the first under no_sync
            half = (hi - lo) // 2
            with net.no_sync() if use_ddp else _null():
                (F.mse_loss(net(xb[:half]), yb[:half]) / 2).backward()
            (F.mse_loss(net(xb[half:]), yb[half:]) / 2).backward()
        else:
            F.mse_loss(net(xb), yb).backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _in_group(rank, fn, *args):
    """Runs in a fresh process per rank: join the group, run ``fn``, leave."""
    import ember.distributed as dist

    dist.init_process_group("auto")
    try:
        return fn(*args)
    finally:
        dist.destroy_process_group()


def _ranks(fn, world, *args):
    outcomes = run_ranks(_in_group, world, fn, *args, timeout=120)
    return [outcomes[r] for r in range(world)]


def _ddp_rank(world, optim, bucket_cap_mb, accumulate):
    import ember.distributed as dist

    return _train(world, True, dist.get_rank(), optim, bucket_cap_mb, accumulate)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("optim,bucket_cap_mb", [("sgd", 25.0), ("adam", 0.0005)])
def test_ddp_matches_single_process_on_the_global_batch(world, optim, bucket_cap_mb):
    expected = _train(world, False, optim=optim)
    for o in _ranks(_ddp_rank, world, world, optim, bucket_cap_mb, False):
        assert o is not None and o.ok, o and o.traceback
        for got, want in zip(o.value, expected):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_ddp_no_sync_accumulation_matches():
    # half-batch accumulation with the first backward under no_sync equals the full batch
    expected = _train(2, False)
    for o in _ranks(_ddp_rank, 2, 2, "sgd", 25.0, True):
        assert o is not None and o.ok, o and o.traceback
        for got, want in zip(o.value, expected):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def _wide_train(world, rank, use_ddp, hold_all=False):
    """SGD with momentum on a model whose buckets exceed the direct-path threshold (so on one
    host they are reduced in shared memory); with DDP also reports where the buckets live, the
    overlap choice, and whether gradients held from one step survive the next."""
    import ember
    import ember.nn as nn
    import ember.nn.functional as F
    from ember.distributed.parallel.ddp import DistributedDataParallel

    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.Tanh(), nn.Linear(512, 64))
    net = DistributedDataParallel(model, bucket_cap_mb=0.15) if use_ddp else model
    # (not Adam: its normalised update magnifies float32 noise in near-zero gradients)
    opt = ember.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((STEPS, world * BATCH, 64)).astype(np.float32)
    y = rng.standard_normal((STEPS, world * BATCH, 64)).astype(np.float32)
    lo, hi = (rank * BATCH, (rank + 1) * BATCH) if use_ddp else (0, world * BATCH)
    held, facts, blocks = None, {}, set()
    arena = None
    if use_ddp:
        from ember.distributed._runtime._state import resolve_group

        arena = resolve_group(None).comm.arena
    for s in range(STEPS):
        opt.zero_grad()
        F.mse_loss(net(ember.tensor(x[s, lo:hi])), ember.tensor(y[s, lo:hi])).backward()
        if s == 0:
            held = [(p.grad, p.grad.numpy().copy()) for p in model.parameters()]
        elif hold_all:
            held += [(p.grad, p.grad.numpy().copy()) for p in model.parameters()]
        elif arena is not None:  # where the gradients (the buckets' storage) lie
            blocks.add(arena.offset_of(next(model.parameters()).grad._data))
        opt.step()
    weights = [p.detach().numpy().copy() for p in model.parameters()]
    if use_ddp:
        facts = {
            "buckets": len(net._buckets),
            "overlap": net._overlap,
            "shared": arena is not None
            and all(arena.offset_of(s) is not None for s in net._storages),
            # gradients dropped by zero_grad return their block, which the buckets take
            # again at the next forward: one block from the second step on
            "blocks": len(blocks),
            "grads_in_arena": arena is not None
            and all(arena.offset_of(p.grad._data) is not None for p in model.parameters()),
            "held_kept": all(np.array_equal(g.numpy(), v) for g, v in held),
        }
    return weights, facts


def _wide_rank(world):
    import ember.distributed as dist

    return _wide_train(world, dist.get_rank(), True)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(
    "env,shared,overlap",
    [
        ({"EMBER_DDP_OVERLAP": "0"}, True, False),  # buckets reduced together after backward
        ({"EMBER_DDP_OVERLAP": "1"}, True, True),  # PyTorch's overlap on the comm thread
        ({"EMBER_SHM_ARENA_BYTES": "0", "EMBER_DDP_OVERLAP": "1"}, False, True),  # private + ring
    ],
    ids=["deferred", "overlap", "private"],
)
def test_ddp_bucket_paths_match_single_process(world, env, shared, overlap):
    expected, _ = _wide_train(world, 0, False)
    outcomes = run_ranks(_in_group, world, _wide_rank, world, env=env, timeout=120)
    for r in range(world):
        o = outcomes[r]
        assert o is not None and o.ok, o and o.traceback
        weights, facts = o.value
        assert facts["buckets"] == 2 and facts["overlap"] is overlap
        assert facts["shared"] is shared and facts["grads_in_arena"] is shared
        assert facts["held_kept"]  # a later step never overwrites gradients still held
        assert facts["blocks"] == (1 if shared else 0)
        for got, want in zip(weights, expected):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def _hold_all_rank(world):
    import ember.distributed as dist

    return _wide_train(world, dist.get_rank(), True, hold_all=True)


def test_ddp_keeps_held_gradients_when_the_arena_runs_out_of_blocks():
    # Every step's gradients are kept, so no bucket block is ever returned; the arena holds
    # the first storage and the rebuilt one and no more: from then on the gradients get
    # copies and the buckets stay where they are.
    expected, _ = _wide_train(2, 0, False)
    storage = (64 * 512 + 512 + 512 * 64 + 64) * 4
    env = {"EMBER_SHM_ARENA_BYTES": str(2 * storage + 4096), "EMBER_DDP_OVERLAP": "0"}
    outcomes = run_ranks(_in_group, 2, _hold_all_rank, 2, env=env, timeout=120)
    for r in range(2):
        o = outcomes[r]
        assert o is not None and o.ok, o and o.traceback
        weights, facts = o.value
        assert facts["shared"] and facts["held_kept"]
        for got, want in zip(weights, expected):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_ddp_falls_back_to_private_buckets_when_one_rank_has_no_room():
    # rank 1's arena is too small for the buckets: every rank must keep them private
    expected, _ = _wide_train(2, 0, False)
    env = lambda r: {"EMBER_SHM_ARENA_BYTES": "4096"} if r == 1 else {}  # noqa: E731
    outcomes = run_ranks(_in_group, 2, _wide_rank, 2, env=env, timeout=120)
    for r in range(2):
        o = outcomes[r]
        assert o is not None and o.ok, o and o.traceback
        weights, facts = o.value
        assert facts["shared"] is False and facts["grads_in_arena"] is False
        for got, want in zip(weights, expected):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_overlap_policy_defaults():
    from ember.distributed.parallel.ddp import _overlap_policy

    class _PG:
        def __init__(self, hosts, size):
            self.hosts, self._size = hosts, size

        def size(self):
            return self._size

    import ember.nn as nn

    m = nn.Linear(2, 2)
    cores = len(os.sched_getaffinity(0))
    assert _overlap_policy(_PG([[0, 1]], cores), m) is False  # one host, cores all busy
    assert _overlap_policy(_PG([[0], [1]], 2), m) is True  # across hosts: overlap
    if cores > 2:
        assert _overlap_policy(_PG([[0, 1]], 2), m) is True  # spare cores on one host
    os.environ["EMBER_DDP_OVERLAP"] = "sometimes"
    try:
        with pytest.raises(ValueError, match="EMBER_DDP_OVERLAP must be auto, 1 or 0"):
            _overlap_policy(_PG([[0, 1]], 2), m)
    finally:
        del os.environ["EMBER_DDP_OVERLAP"]


def _unused_params(find_unused):
    import ember
    import ember.distributed as dist
    import ember.nn as nn
    from ember.distributed.parallel.ddp import DistributedDataParallel

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 2)
            self.unused = nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    ember.manual_seed(0)
    net = DistributedDataParallel(Net(), find_unused_parameters=find_unused)
    x = ember.ones(4, 3) * (dist.get_rank() + 1)
    net(x).sum().backward()
    return net.module.used.weight.grad.numpy().copy(), net.module.unused.weight.grad


def test_find_unused_parameters():
    outcomes = _ranks(_unused_params, 2, True)
    assert all(o is not None and o.ok for o in outcomes), [o and o.traceback for o in outcomes]
    # mean over ranks of the per-rank gradients (inputs 1 and 2): 1.5 * 4 per element
    np.testing.assert_allclose(outcomes[0].value[0], np.full((2, 3), 6.0))
    assert outcomes[0].value[1] is None or not outcomes[0].value[1].numpy().any()


def test_unused_parameters_without_the_flag_raise_a_clear_error():
    for o in _ranks(_unused_params, 2, False):
        assert o is not None and not o.ok and "did not receive gradients" in o.error[1]
        assert "unused.weight" in o.error[1] and "find_unused_parameters=True" in o.error[1]


def _buffers_and_state_dict():
    import ember
    import ember.distributed as dist
    import ember.nn as nn
    from ember.distributed.parallel.ddp import DistributedDataParallel

    ember.manual_seed(dist.get_rank())
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with ember.no_grad():
        model[1].running_mean.fill_(float(dist.get_rank()))
    net = DistributedDataParallel(model)
    sd = net.state_dict()
    net.load_state_dict({"module." + k: v for k, v in sd.items()})  # PyTorch-style keys too
    with pytest.raises(RuntimeError, match="already wrapped"):
        DistributedDataParallel(model)
    return sorted(sd), model[1].running_mean.numpy().copy(), model[0].weight.detach().numpy().copy()


def test_buffers_broadcast_and_state_dict_has_no_prefix():
    outcomes = _ranks(_buffers_and_state_dict, 2)
    assert all(o is not None and o.ok for o in outcomes), [o and o.traceback for o in outcomes]
    keys, mean0, w0 = outcomes[0].value
    assert keys == [
        "0.bias",
        "0.weight",
        "1.bias",
        "1.num_batches_tracked",
        "1.running_mean",
        "1.running_var",
        "1.weight",
    ]
    _, mean1, w1 = outcomes[1].value
    np.testing.assert_array_equal(mean0, np.zeros(4))
    np.testing.assert_array_equal(mean1, mean0)
    np.testing.assert_array_equal(w1, w0)


def _uneven(steps_by_rank):
    import time

    import ember
    import ember.distributed as dist
    import ember.nn.functional as F
    from ember.distributed.parallel.ddp import DistributedDataParallel

    ember.manual_seed(0)
    net = DistributedDataParallel(_model())
    t0 = time.monotonic()
    try:
        for _ in range(steps_by_rank[dist.get_rank()]):
            F.mse_loss(net(ember.ones(2, 5)), ember.zeros(2, 3)).backward()
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc), time.monotonic() - t0)
    return ("finished", "", "", time.monotonic() - t0)


def test_uneven_inputs_fail_fast_instead_of_hanging():
    # rank 1 runs out of batches first and leaves; rank 0's next allreduce must raise promptly
    outcomes = _ranks(_uneven, 2, [3, 2])
    assert outcomes[1] is not None and outcomes[1].ok and outcomes[1].value[0] == "finished"
    status, kind, msg, seconds = (
        outcomes[0].value if outcomes[0].ok else ("raised", *outcomes[0].error, 0.0)
    )
    assert status == "raised", outcomes[0]
    assert seconds < 30, f"took {seconds:.1f} s to notice the departed peer"


def test_a_storage_block_is_held_while_anything_refers_to_its_memory():
    import ember
    from ember.distributed.parallel._ddp_storage import SharedStorage

    def slicer(root):
        flat = root[8:60]
        return [(flat, [flat[0:20].reshape(4, 5), flat[20:52]])]

    made = []  # ids: a reference here would hold the block

    def allocate():
        root = np.zeros(64, np.float32)
        made.append(id(root))
        return root

    pool = SharedStorage(np.zeros(64, np.float32), slicer, allocate)
    block = pool.current
    assert not block.held  # DDP's own references only
    for make in (
        lambda v: v,  # the view itself (a gradient)
        lambda v: v[1:],  # a view of it
        memoryview,  # a buffer export
        lambda v: ember.Tensor._wrap(v),  # a tensor on it
        lambda v: ember.Tensor._wrap(v).view(-1),
    ):  # a tensor view of that
        ref = make(block.slices[0][1][0])
        assert block.held
        del ref
        assert not block.held
    grad = block.slices[0][1][1]  # the last step's gradient, still held
    assert block.held
    assert pool.ensure_spare() and len(made) == 1  # so the next step gets a second block
    assert pool.settle() is not block and id(pool.current.root) == made[0]
    del grad
    assert pool.ensure_spare() and len(made) == 1  # the first block is free again
    assert pool.settle() is block


def _reassigned_buffer_rank():
    import ember
    import ember.distributed as dist
    import ember.nn as nn
    from ember.distributed.parallel.ddp import DistributedDataParallel

    rank = dist.get_rank()
    model = nn.Linear(2, 2)
    model.register_buffer("scale", ember.ones(3))
    net = DistributedDataParallel(model)
    model.scale = ember.full((3,), float(rank + 5))  # reassigned after wrapping
    net(ember.ones(1, 2))
    return model.scale.numpy().tolist()


def test_ddp_broadcasts_a_buffer_reassigned_after_wrapping():
    for o in _ranks(_reassigned_buffer_rank, 2):
        assert o is not None and o.ok, o and o.traceback
        assert o.value == [5.0, 5.0, 5.0]  # rank 0's new buffer, as PyTorch does


def _buffer_added_after_wrapping_rank():
    import ember
    import ember.distributed as dist
    import ember.nn as nn
    from ember.distributed.parallel.ddp import DistributedDataParallel

    rank = dist.get_rank()
    model = nn.Linear(2, 2)
    net = DistributedDataParallel(model)  # no buffers at wrap time
    model.register_buffer("scale", ember.full((3,), float(rank + 5)))
    net(ember.ones(1, 2))
    return model.scale.numpy().tolist()


def test_ddp_without_buffers_at_wrap_time_broadcasts_none():
    # PyTorch's rule (its ``modules_buffers``, found at wrap time): a module wrapped without
    # buffers skips the broadcast, so each rank keeps a buffer it adds later
    outs = _ranks(_buffer_added_after_wrapping_rank, 2)
    for o in outs:
        assert o is not None and o.ok, o and o.traceback
    assert [o.value for o in outs] == [[5.0] * 3, [6.0] * 3]
