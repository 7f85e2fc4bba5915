"""DDP with activation checkpointing inside the model, on 2 real ranks: gradients equal the
single-process run on the full batch and torch's DDP + ``torch.utils.checkpoint`` on gloo."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "distributed"))
from dist_harness import run_ranks  # noqa: E402

WORLD, BATCH, STEPS = 2, 4, 2
MODES = ["none", "non_reentrant", "reentrant"]


def _data():
    rng = np.random.default_rng(11)
    shapes = [(16, 6), (16,), (16, 16), (16,), (16, 16), (16,), (3, 16), (3,)]
    w = [(rng.standard_normal(s) * 0.4).astype(np.float32) for s in shapes]
    x = rng.standard_normal((STEPS, WORLD * BATCH, 6)).astype(np.float32)
    y = rng.standard_normal((STEPS, WORLD * BATCH, 3)).astype(np.float32)
    return w, x, y


def _net(lib, nn, checkpoint, mode, dropout=0.0):
    """Linear -> [checkpointed block] -> [checkpointed block] -> Linear, in either library."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)
            self.drop = nn.Dropout(dropout)

        def forward(self, h):
            return h + self.drop(lib.tanh(self.fc(h)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(6, 16)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            h = lib.relu(self.inp(x))
            for b in self.blocks:
                h = (
                    b(h)
                    if mode == "none"
                    else checkpoint(b, h, use_reentrant=(mode == "reentrant"))
                )
            return self.out(h)

    return Net()


def _train(lib, nn, F, checkpoint, wrap, mode, rank, world, dropout=0.0, seed=None):
    w, x, y = _data()
    model = _net(lib, nn, checkpoint, mode, dropout)
    with lib.no_grad():
        for p, a in zip(model.parameters(), w):
            p.copy_(lib.tensor(a))
    net = wrap(model)
    opt = lib.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    if seed is not None:
        lib.manual_seed(seed + rank)
    # a DDP rank takes its share of the global batch; the single-process reference all of it
    per_rank = BATCH if wrap is not _same else world * BATCH
    lo, hi = rank * BATCH, rank * BATCH + per_rank
    grads = []
    for s in range(STEPS):
        opt.zero_grad()
        F.mse_loss(net(lib.tensor(x[s, lo:hi])), lib.tensor(y[s, lo:hi])).backward()
        grads.append([p.grad.detach().numpy().copy() for p in model.parameters()])
        opt.step()
    return grads


def _same(m):
    return m


def _ember_rank(rank):
    import ember
    import ember.distributed as dist
    import ember.nn as nn
    import ember.nn.functional as F
    from ember.nn.parallel import DistributedDataParallel as DDP
    from ember.utils.checkpoint import checkpoint

    dist.init_process_group("gloo")
    try:
        out = {m: _train(ember, nn, F, checkpoint, DDP, m, rank, WORLD) for m in MODES}
        # with dropout: the checkpointed blocks recompute the same masks under DDP, so the
        # gradients equal the run without checkpointing from the same seed
        out["dropout"] = {
            m: _train(ember, nn, F, checkpoint, DDP, m, rank, WORLD, 0.3, seed=7) for m in MODES
        }
        return out
    finally:
        dist.destroy_process_group()


def _torch_rank(rank):
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.checkpoint import checkpoint

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        return {m: _train(torch, nn, F, checkpoint, DDP, m, rank, WORLD) for m in MODES}
    finally:
        dist.destroy_process_group()


def _group(fn):
    outcomes = run_ranks(fn, WORLD, timeout=120)
    for r in range(WORLD):
        o = outcomes[r]
        assert o is not None and o.ok, o and o.traceback
    return [outcomes[r].value for r in range(WORLD)]


@pytest.fixture(scope="module")
def runs():
    pytest.importorskip("torch")  # (here: the spawned ranks import this module by name)
    with ThreadPoolExecutor(2) as pool:
        ember_runs, torch_runs = pool.map(_group, [_ember_rank, _torch_rank])
    return ember_runs, torch_runs


@pytest.mark.parametrize("mode", MODES)
def test_ddp_checkpoint_matches_single_process_and_torch(runs, mode):
    import ember
    import ember.nn as nn
    import ember.nn.functional as F
    from ember.utils.checkpoint import checkpoint

    ember_runs, torch_runs = runs
    # the reference: one process, the full batch, no DDP, no checkpointing
    reference = _train(ember, nn, F, checkpoint, _same, "none", 0, WORLD)
    for rank in range(WORLD):
        for step in range(STEPS):
            for got, ref, tor in zip(
                ember_runs[rank][mode][step], reference[step], torch_runs[rank][mode][step]
            ):
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(got, tor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["non_reentrant", "reentrant"])
def test_ddp_checkpoint_recomputes_dropout_identically(runs, mode):
    ember_runs, _ = runs
    for rank in range(WORLD):
        plain = ember_runs[rank]["dropout"]["none"]
        for step in range(STEPS):
            for got, want in zip(ember_runs[rank]["dropout"][mode][step], plain[step]):
                np.testing.assert_array_equal(got, want)
    # the ranks drew different masks, yet DDP left them the same averaged gradients
    a, b = (ember_runs[r]["dropout"][mode] for r in range(WORLD))
    assert all(np.array_equal(x, y) for x, y in zip(a[-1], b[-1]))
