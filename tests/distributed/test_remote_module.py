"""``ember.distributed.nn``: ``RemoteModule``, DDP inside distributed autograd, and the
differentiable collectives, between real processes.

The main scenario is pytorch/examples' ddp_rpc in small: two trainers each hold a DDP-wrapped
``Linear`` and share a ``RemoteModule`` ``EmbeddingBag`` on a parameter server; every step
is a ``dist_autograd`` backward (DDP's allreduce must run inside it) and a
``DistributedOptimizer`` step over the remote and the local parameters. It must equal the same
computation in one process.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from dist_harness import free_port, run_ranks

import ember
import ember.distributed as dist
import ember.distributed.autograd as dist_autograd
import ember.distributed.rpc as rpc
from ember.distributed.nn import RemoteModule
from ember.distributed.nn import functional as dnf
from ember.distributed.optim import DistributedOptimizer
from ember.nn.parallel import DistributedDataParallel as DDP

NUM_EMB, DIM, OUT, LR = 20, 6, 4, 0.1


def _outcomes(res, n):
    assert len(res) == n and all(o is not None for o in res.values()), res
    for r, o in res.items():
        assert o.ok, f"rank {r}: {o.traceback}"
    return [res[r].value for r in range(n)]


# ---- what the workers build and call (module level: pickled by reference) ---------------------
def seeded_embedding_bag():
    ember.manual_seed(3)
    return ember.nn.EmbeddingBag(NUM_EMB, DIM, mode="sum")


def seeded_linear():
    ember.manual_seed(4)
    return ember.nn.Linear(DIM, OUT)


def batch(rank, step):
    g = np.random.default_rng(100 * rank + step)
    n = int(g.integers(6, 12))
    indices = ember.tensor(g.integers(0, NUM_EMB, n))
    offsets = ember.tensor(np.concatenate([[0], np.sort(g.choice(np.arange(1, n), 2, False))]))
    target = ember.tensor(g.integers(0, OUT, 3))
    return indices, offsets, target


def weight_of(module_rref):
    return module_rref.local_value().weight.detach().clone()


def train(remote_emb, rank, steps):
    """One trainer (runs in an RPC thread of its process, as in the example)."""
    fc = DDP(seeded_linear() if rank == 0 else ember.nn.Linear(DIM, OUT))  # rank 0's weights
    params = remote_emb.remote_parameters()
    params += [rpc.RRef(p) for p in fc.parameters()]
    opt = DistributedOptimizer(ember.optim.SGD, params, lr=LR)
    losses, grad_kept = [], []
    for step in range(steps):
        indices, offsets, target = batch(rank, step)
        with dist_autograd.context() as cid:
            loss = ember.nn.functional.cross_entropy(fc(remote_emb(indices, offsets)), target)
            before = fc.module.weight.grad  # (the last step's, set by the optimizer)
            dist_autograd.backward(cid, [loss])
            grad_kept.append(fc.module.weight.grad is before)
            opt.step(cid)
        # the next forward must see both trainers' updates of the shared embedding
        dist.barrier()
        losses.append(loss.item())
    return {
        "losses": losses,
        "fc": [p.detach().numpy() for p in fc.module.parameters()],
        "grad_kept": grad_kept,
    }


def scenario_ddp_rpc(rank, pg_port, steps):
    if rank < 2:
        dist.init_process_group(
            "gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{pg_port}"
        )
    rpc.init_rpc(
        "ps" if rank == 2 else f"trainer{rank}",
        rank=rank,
        world_size=3,
        rpc_backend_options=rpc.TensorPipeRpcBackendOptions(rpc_timeout=60),
    )
    out = None
    if rank == 2:  # the parameter server is also the master here
        emb = RemoteModule("ps", seeded_embedding_bag)
        futs = [rpc.rpc_async(f"trainer{r}", train, args=(emb, r, steps)) for r in (0, 1)]
        out = {"trainers": [f.wait() for f in futs], "emb": weight_of(emb.get_module_rref())}
        out["emb"] = out["emb"].numpy()
    rpc.shutdown()
    if rank < 2:
        dist.destroy_process_group()
    return out


def test_ddp_rpc_matches_one_process():
    steps = 3
    out = _outcomes(run_ranks(scenario_ddp_rpc, 3, free_port(), steps, timeout=120), 3)[2]
    emb, fc = seeded_embedding_bag(), seeded_linear()
    opt = ember.optim.SGD(list(emb.parameters()) + list(fc.parameters()), lr=LR)
    want_losses = [[], []]
    for step in range(steps):
        opt.zero_grad()
        total = 0
        for r in (0, 1):
            indices, offsets, target = batch(r, step)
            loss = ember.nn.functional.cross_entropy(fc(emb(indices, offsets)), target)
            want_losses[r].append(loss.item())
            total = total + loss
        total.backward()
        # DDP averages the dense part's gradients; each trainer steps the embedding with its own
        for p in fc.parameters():
            p.grad = p.grad / 2
        opt.step()
    for r, got in enumerate(out["trainers"]):
        np.testing.assert_allclose(got["losses"], want_losses[r], rtol=1e-5)
        assert got["grad_kept"] == [True] * steps  # backward's gradients live in the context
        for g, w in zip(got["fc"], fc.parameters()):
            np.testing.assert_allclose(g, w.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["emb"], emb.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


# ---- RemoteModule unit checks in one process (calls to itself go over the same wire) ----------
def not_a_module():
    return 3


def identity(x):
    return x


def forward_on_copy(remote):
    """Another worker (here: the same) uses a RemoteModule that travelled in an RPC."""
    return remote(ember.ones(1, 3))


def test_remote_module_needs_rpc():
    with pytest.raises(AssertionError, match="RemoteModule only works in RPC"):
        RemoteModule("w/cpu", ember.nn.Linear, args=(2, 2))


def test_remote_module_api(rpc_solo):
    ember.manual_seed(0)
    m = RemoteModule("solo/cpu", ember.nn.Linear, args=(3, 2), kwargs={"bias": True})
    local = m.get_module_rref().local_value()
    x = ember.randn(4, 3)
    want = local(x).detach().numpy()
    np.testing.assert_allclose(m(x).detach().numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(m.forward_async(x).wait().detach().numpy(), want, rtol=1e-6)
    prefs = m.remote_parameters()
    assert [r.is_owner() for r in prefs] == [True, True]
    assert prefs[0].local_value() is local.weight
    assert RemoteModule("rank:0/cpu", ember.nn.ReLU).on == "solo"
    # a travelled copy names the same module
    copy = rpc.rpc_sync("solo", identity, args=(m,))
    assert copy.get_module_rref().local_value() is local
    np.testing.assert_allclose(
        rpc.rpc_sync("solo", forward_on_copy, args=(m,)).detach().numpy(),
        local(ember.ones(1, 3)).detach().numpy(),
        rtol=1e-6,
    )
    shared = RemoteModule.init_from_module_rref("solo", m.get_module_rref())
    assert shared.get_module_rref().local_value() is local
    m.eval()
    assert local.training is False and m.training is False
    # distributed autograd reaches the remote parameters
    with dist_autograd.context() as cid:
        dist_autograd.backward(cid, [m(x).sum()])
        grads = dist_autograd.get_gradients(cid)
    np.testing.assert_allclose(grads[local.bias].numpy(), [4.0, 4.0])
    assert local.weight.grad is None
    # PyTorch's errors
    with pytest.raises(ValueError, match="Please use ``remote_parameters`` instead"):
        m.parameters()
    for name in ("to", "state_dict", "named_modules", "zero_grad", "cuda"):
        with pytest.raises(ValueError, match=f"Method ``{name}`` not supported for RemoteModule"):
            getattr(m, name)()
    with pytest.raises(RuntimeError, match="Cannot pickle RemoteModule in python pickler"):
        pickle.dumps(m)
    with pytest.raises(ValueError, match="Expect `module_cls"):
        RemoteModule("solo/cpu", not_a_module)
    for bad in ("solo/cpu/0", "rank:x/cpu", "/cpu", "solo/nodevice"):
        with pytest.raises(ValueError, match="Could not parse remote_device"):
            RemoteModule(bad, ember.nn.ReLU)
    with pytest.raises(ValueError, match="unknown RPC worker name 'nobody'"):
        RemoteModule("nobody/cpu", ember.nn.ReLU)
    with pytest.raises(ValueError, match="needs a worker"):
        RemoteModule("cpu", ember.nn.ReLU)


# ---- differentiable collectives ------------------------------------------------------------
def scenario_functional(rank):
    dist.init_process_group("gloo")
    w = ember.tensor([1.0, 2.0]) * (rank + 1)  # a different loss weight per rank
    x = ember.tensor([3.0, 4.0], requires_grad=True)
    out = {}
    y = dnf.all_reduce(x * (rank + 1))
    (y * w).sum().backward()
    out["all_reduce"] = (y.tolist(), x.grad.tolist())
    x.grad = None
    (dnf.broadcast(x * (rank + 1), src=1) * w).sum().backward()
    out["broadcast"] = x.grad.tolist()
    x.grad = None
    parts = dnf.all_gather(x * (rank + 1))
    (parts[0] * w + parts[1]).sum().backward()
    out["all_gather"] = ([p.tolist() for p in parts], x.grad.tolist())
    x.grad = None
    z = dnf.reduce_scatter(ember.empty(1), list((x * (rank + 1)).split(1)))
    (z * (rank + 5)).sum().backward()
    out["reduce_scatter"] = (z.tolist(), x.grad.tolist())
    x.grad = None
    got = dnf.all_to_all([ember.empty(1), ember.empty(1)], list((x * (rank + 1)).split(1)))
    (got[0] * 10 + got[1]).sum().backward()
    out["all_to_all"] = ([g.tolist() for g in got], x.grad.tolist())
    dist.destroy_process_group()
    return out


def test_differentiable_collectives():
    r0, r1 = _outcomes(run_ranks(scenario_functional, 2, timeout=60), 2)
    # all_reduce: y = 3x on both; dL/dx_r = (r+1) * (w0 + w1) = (r+1) * 3 * [1, 2]
    assert r0["all_reduce"] == ([9.0, 12.0], [3.0, 6.0])
    assert r1["all_reduce"][1] == [6.0, 12.0]
    # broadcast from rank 1: only its input matters; grad = 2 * (w0 + w1)
    assert r0["broadcast"] == [0.0, 0.0] and r1["broadcast"] == [6.0, 12.0]
    # all_gather: d/dx_r = (r+1) * sum over ranks of (w if r == 0 else 1)
    assert r0["all_gather"] == ([[3.0, 4.0], [6.0, 8.0]], [3.0, 6.0])
    assert r1["all_gather"][1] == [4.0, 4.0]
    # reduce_scatter: rank r gets sum_q (q+1) x[r]; grad of x_q[r] = (q+1) * (r + 5)
    assert r0["reduce_scatter"] == ([9.0], [5.0, 6.0])
    assert r1["reduce_scatter"] == ([12.0], [10.0, 12.0])
    # all_to_all: rank r receives piece r of every rank; loss 10 * got[0] + got[1]
    assert r0["all_to_all"] == ([[3.0], [6.0]], [10.0, 10.0])
    assert r1["all_to_all"] == ([[4.0], [8.0]], [2.0, 2.0])
