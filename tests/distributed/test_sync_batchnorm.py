"""SyncBatchNorm on real processes: N ranks with batches B_1..B_N (some uneven, one empty)
compute what one BatchNorm computes on their concatenation; convert_sync_batchnorm; the
single-process path against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn

SIZES = {2: [3, 5], 3: [4, 0, 3]}  # per-rank batch sizes


def _data(n: int):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 3, 4, 4)) * 2.0 + 1.5  # float64: exact comparisons
    upstream = rng.standard_normal((n, 3, 4, 4))  # loss = sum(out * upstream)
    affine = rng.standard_normal((2, 3))
    return x, upstream, affine


def _run(layer, x, upstream, affine, steps: int = 2) -> dict:
    """Two training steps of ``layer`` on ``x``, then one in eval mode."""
    layer.double()
    with ember.no_grad():
        layer.weight.copy_(ember.tensor(affine[0]))
        layer.bias.copy_(ember.tensor(affine[1]))
    out = {}
    for _ in range(steps):
        xt = ember.tensor(x, requires_grad=True)
        layer.zero_grad()
        y = layer(xt)
        (y * ember.tensor(upstream)).sum().backward()
    out.update(
        y=y.detach().numpy(),
        gx=xt.grad.numpy(),
        gw=layer.weight.grad.numpy(),
        gb=layer.bias.grad.numpy(),
        mean=layer.running_mean.numpy().copy(),
        var=layer.running_var.numpy().copy(),
        tracked=int(layer.num_batches_tracked),
    )
    layer.eval()
    out["eval"] = layer(ember.tensor(x)).detach().numpy()
    return out


def _reference(world: int, momentum) -> dict:
    x, upstream, affine = _data(sum(SIZES[world]))
    return _run(nn.BatchNorm2d(3, momentum=momentum), x, upstream, affine)


def _rank_run(world: int, momentum) -> dict:
    import ember.distributed as dist

    rank, sizes = dist.get_rank(), SIZES[world]
    lo = sum(sizes[:rank])
    x, upstream, affine = _data(sum(sizes))
    sl = slice(lo, lo + sizes[rank])
    return _run(nn.SyncBatchNorm(3, momentum=momentum), x[sl], upstream[sl], affine)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_ranks_compute_the_concatenated_batch_norm(pools, world, momentum):
    want = _reference(world, momentum)
    got = pools(world, "auto").run(_rank_run, world, momentum)
    np.testing.assert_allclose(
        np.concatenate([g["y"] for g in got]), want["y"], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        np.concatenate([g["gx"] for g in got]), want["gx"], rtol=1e-10, atol=1e-12
    )
    # weight and bias gradients stay local (DDP averages them): their sum is the whole's
    for k in ("gw", "gb"):
        np.testing.assert_allclose(sum(g[k] for g in got), want[k], rtol=1e-10, atol=1e-12)
    for g in got:  # every rank holds the same running statistics, the single process's
        for k in ("mean", "var"):
            np.testing.assert_allclose(g[k], want[k], rtol=1e-12, atol=1e-14)
        assert g["tracked"] == want["tracked"] == 2
    np.testing.assert_allclose(
        np.concatenate([g["eval"] for g in got]), want["eval"], rtol=1e-10, atol=1e-12
    )


def _ddp_train(use_ddp: bool, world: int = 2, batch: int = 4) -> list:
    import ember.distributed as dist
    import ember.nn.functional as F

    ember.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    )
    rank = dist.get_rank() if use_ddp else 0
    if use_ddp:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model)
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, world * batch, 2, 5, 5)).astype(np.float32)
    y = rng.standard_normal((3, world * batch, 3)).astype(np.float32)
    sl = slice(rank * batch, (rank + 1) * batch) if use_ddp else slice(None)
    for s in range(3):
        opt.zero_grad()
        F.mse_loss(model(ember.tensor(x[s, sl])), ember.tensor(y[s, sl])).backward()
        opt.step()
    return [t.detach().numpy().copy() for t in model.state_dict().values()]


def test_ddp_with_sync_batchnorm_trains_like_one_process(pools):
    want = _ddp_train(False)
    for got in pools(2, "auto").run(_ddp_train, True):
        assert len(got) == len(want)  # (same keys: no "module." prefix, same buffers)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def _too_few(world: int) -> str:
    import ember.distributed as dist

    x = ember.ones((1, 2)) if dist.get_rank() == 0 else ember.ones((0, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel") as e:
        nn.SyncBatchNorm(2)(x)
    return str(e.value)


def _no_double_backward() -> str:
    x = ember.randn(4, 2, dtype=ember.float64, requires_grad=True)
    y = nn.SyncBatchNorm(2).double()(x)
    with pytest.raises(RuntimeError, match="double backward") as e:  # (at create_graph)
        ember.autograd.grad((y * y).sum(), x, create_graph=True)
    return str(e.value)


def test_clear_errors_on_every_rank(pools):
    pool = pools(2, "auto")
    assert all("over the group's ranks" in m for m in pool.run(_too_few, 2))
    assert all(pool.run(_no_double_backward))


# ---- one process --------------------------------------------------------------------------------
def test_without_a_process_group_it_is_pytorch_batch_norm():
    torch = pytest.importorskip("torch")
    x, upstream, affine = _data(6)
    got = _run(nn.SyncBatchNorm(3), x, upstream, affine)
    t = torch.nn.SyncBatchNorm(3).double()
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(affine[0]))
        t.bias.copy_(torch.from_numpy(affine[1]))
    for _ in range(2):
        xt = torch.tensor(x, requires_grad=True)
        t.zero_grad()
        y = t(xt)
        (y * torch.from_numpy(upstream)).sum().backward()
    want = dict(
        y=y.detach().numpy(),
        gx=xt.grad.numpy(),
        gw=t.weight.grad.numpy(),
        gb=t.bias.grad.numpy(),
        mean=t.running_mean.numpy(),
        var=t.running_var.numpy(),
    )
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=1e-10, atol=1e-12, err_msg=k)
    assert list(nn.SyncBatchNorm(3).state_dict()) == list(torch.nn.SyncBatchNorm(3).state_dict())


def test_convert_sync_batchnorm_replaces_batch_norms_and_shares_their_state():
    torch = pytest.importorskip("torch")

    def build(lib):
        inner = lib.nn.Sequential(lib.nn.BatchNorm1d(4, affine=False), lib.nn.InstanceNorm1d(4))
        return lib.nn.Sequential(
            lib.nn.Conv2d(1, 4, 3), lib.nn.BatchNorm2d(4, momentum=None), lib.nn.Flatten(), inner
        )

    model = build(ember)
    model[1].eval()
    bn = model[1]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model  # the root is kept; its batch norms are replaced
    assert type(model[1]) is nn.SyncBatchNorm and type(model[3][0]) is nn.SyncBatchNorm
    assert type(model[3][1]) is nn.InstanceNorm1d
    sync = model[1]
    assert sync.weight is bn.weight and sync.bias is bn.bias
    assert sync.running_mean is bn.running_mean and sync.momentum is None
    assert not sync.training and model[3][0].training and model[3][0].weight is None
    tconv = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build(torch))
    assert list(model.state_dict()) == list(tconv.state_dict())
    assert repr(model) == repr(tconv)
    lone = nn.BatchNorm1d(2)
    assert type(nn.SyncBatchNorm.convert_sync_batchnorm(lone)) is nn.SyncBatchNorm


def test_input_checks():
    with pytest.raises(ValueError, match="at least 2D"):
        nn.SyncBatchNorm(3)(ember.ones(3))
    with pytest.raises(ValueError, match="channels should be non-zero"):
        nn.SyncBatchNorm(0)(ember.ones(2, 0))
