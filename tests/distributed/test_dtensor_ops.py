"""DTensor operators (sharding propagation) on 2 real ranks: each result's placements are
PyTorch's for that case, its ``full_tensor()`` equals the op on the whole tensors (NumPy or
single-process ember), and gradients through chains of ops and redistributions equal the
single-process ones. ``loss_parallel`` is checked against torch's cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest

WORLD = 2


def _rng(seed):
    return np.random.RandomState(seed)


def case_ops():
    import ember
    import ember.nn.functional as F
    from ember.distributed.tensor import (
        DTensor,
        Partial,
        Replicate,
        Shard,
        distribute_tensor,
        init_device_mesh,
        ops,
    )

    mesh = init_device_mesh("cpu", (WORLD,))
    rank = mesh.get_local_rank()
    a_np, b_np = _rng(0).standard_normal((4, 6)), _rng(1).standard_normal((4, 6))
    a, b = ember.tensor(a_np), ember.tensor(b_np)

    def d(t, p):
        return distribute_tensor(t, mesh, [p])

    R, S0, S1 = Replicate(), Shard(0), Shard(1)
    cases = {
        "add_S0_R": (d(a, S0) + d(b, R), a + b),
        "mul_R_S1": (d(a, R) * d(b, S1), a * b),
        "sub_scalar": (d(a, S1) - 2.0, a - 2.0),
        "rdiv": (1.0 / (d(a, S0) * d(a, S0) + 1.0), 1.0 / (a * a + 1.0)),
        "bcast_row": (d(a, S1) + d(b[0], R), a + b[0]),
        "bcast_S0_vs_row": (d(a, S0) * d(b[0], R), a * b[0]),
        "sum0_of_S0": (d(a, S0).sum(0), a.sum(0)),
        "sum1_of_S0": (d(a, S0).sum(1), a.sum(1)),
        "mean_all": (d(a, S1).mean(), a.mean()),
        "mean_keepdim": (d(a, S0).mean(0, keepdim=True), a.mean(0, keepdim=True)),
        "softmax_sharded_dim": (d(a, S1).softmax(1), a.softmax(1)),
        "softmax_other_dim": (d(a, S0).log_softmax(1), a.log_softmax(1)),
        "relu": (d(a, S0).relu(), a.relu()),
        "neg_partial": (-(DTensor.from_local(a, mesh, [Partial()])), -(a * WORLD)),
    }
    c_np = _rng(2).standard_normal((2, 3, 8))
    c = ember.tensor(c_np)
    cases.update({
        "split_heads": (d(c, Shard(2)).view(2, 3, 4, 2), c.view(2, 3, 4, 2)),
        "merge_batch": (d(c, S0).reshape(6, 8), c.reshape(6, 8)),
        "merge_inner_gathers": (d(c, S1).reshape(6, 8), c.reshape(6, 8)),
        "infer_dim": (d(c, Shard(2)).view(2, 3, -1, 4), c.view(2, 3, -1, 4)),
        "transpose": (d(c, Shard(2)).transpose(1, 2), c.transpose(1, 2)),
        "permute": (d(c, S0).permute(2, 0, 1), c.permute(2, 0, 1)),
    })  # fmt: skip
    m1, m2 = (
        ember.tensor(_rng(3).standard_normal((2, 3, 4))),
        ember.tensor(_rng(4).standard_normal((2, 4, 5))),
    )
    cases.update({
        "bmm_batch": (d(m1, S0) @ d(m2, R), m1 @ m2),
        "bmm_cols": (d(m1, R) @ d(m2, Shard(2)), m1 @ m2),
        "bmm_rows": (d(m1, S1) @ d(m2, R), m1 @ m2),
        "bmm_contract": (d(m1, Shard(2)) @ d(m2, S1), m1 @ m2),
    })  # fmt: skip
    w = ember.tensor(_rng(5).standard_normal((6, 4)))
    bias = ember.tensor(_rng(6).standard_normal(6))
    cases["linear_colwise"] = (
        ops.linear(d(b[:, :4], R), d(w, S0), d(bias, S0)),
        F.linear(b[:, :4], w, bias),
    )
    cases["linear_rowwise"] = (
        ops.linear(d(b[:, :4], S1), d(w, S1), d(bias, R)),
        F.linear(b[:, :4], w, bias),
    )
    idx = ember.tensor(np.array([[0, 9, 3], [5, 4, 8]]))
    emb = ember.tensor(_rng(7).standard_normal((10, 4)))
    cases["embedding_vocab"] = (ops.embedding(idx, d(emb, S0)), F.embedding(idx, emb))
    cases["embedding_dim"] = (ops.embedding(idx, d(emb, S1)), F.embedding(idx, emb))
    cases["layer_norm_seq"] = (
        ops.layer_norm(d(c, S1), (8,), d(c[0, 0], R), None),
        F.layer_norm(c, (8,), c[0, 0], None),
    )
    out = {}
    for name, (got, want) in cases.items():
        full = got.full_tensor().numpy()
        out[name] = (
            tuple(str(p) for p in got.placements),
            tuple(got.to_local().shape),
            float(np.abs(full - want.numpy()).max()) if full.shape == tuple(want.shape) else None,
        )
    out["rank"] = rank
    return out


def _grad_chains(ember, dist_fn, leaves):
    """Two chains mixing the propagation rules; ``dist_fn(t, placement)`` makes a DTensor
    leaf (or returns the plain tensor for the single-process run)."""
    from ember.distributed.tensor import Replicate, Shard

    x, w, c, bias = leaves
    # chain 1: batch-sharded matmul, softmax, a replicated weight broadcast over shards
    h = dist_fn(x, Shard(0)) @ dist_fn(w, Replicate())
    loss1 = ((h.tanh().softmax(-1) * dist_fn(c, Replicate())).sum(1) * 3.0).sum()
    # chain 2: contraction-sharded matmul (Partial), + bias (gathers), view and mean
    h2 = dist_fn(x, Shard(1)) @ dist_fn(w, Shard(0))
    loss2 = ((h2 + dist_fn(bias, Replicate())).reshape(2, 2, 8).relu()).mean()
    return loss1, loss2


def case_grads():
    import ember
    from ember.distributed.tensor import DTensor, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (WORLD,))
    arrays = [_rng(10).standard_normal(s) for s in ((4, 6), (6, 8), (4, 8), (8,))]
    # single process
    ref = [ember.tensor(v, requires_grad=True) for v in arrays]
    l1, l2 = _grad_chains(ember, lambda t, p: t, ref)
    (l1 + l2).backward()
    # distributed: every use makes its own DTensor leaf; gradients are gathered and summed
    made = []

    def dist_fn(t, p):
        dt = distribute_tensor(t.detach(), mesh, [p])
        dt._local_tensor.requires_grad_(True)
        made.append((t, dt))
        return dt

    leaves = [ember.tensor(v) for v in arrays]
    d1, d2 = _grad_chains(ember, dist_fn, leaves)
    (d1 + d2).full_tensor().backward()
    grads = {id(t): np.zeros(t.shape) for t in leaves}
    for t, dt in made:
        g = DTensor.from_local(dt._local_tensor.grad, mesh, dt.placements, shape=dt.shape)
        grads[id(t)] += g.full_tensor().numpy()
    return {
        "loss_err": float(abs((d1 + d2).full_tensor().item() - (l1 + l2).item())),
        "grad_err": [
            float(np.abs(grads[id(t)] - r.grad.numpy()).max()) for t, r in zip(leaves, ref)
        ],
    }


def case_loss_parallel(reduction):
    import ember
    import ember.nn.functional as F
    from ember.distributed.tensor import Shard, distribute_tensor, init_device_mesh
    from ember.distributed.tensor.parallel import loss_parallel

    mesh = init_device_mesh("cpu", (WORLD,))
    logits = _rng(20).standard_normal((5, 9))  # 9 classes: shards of 5 and 4
    target = np.array([0, 8, 4, -100, 5])
    dt = distribute_tensor(ember.tensor(logits), mesh, [Shard(1)])
    leaf = dt.to_local().requires_grad_(True)
    with loss_parallel():
        loss = F.cross_entropy(dt, ember.tensor(target), reduction=reduction)
        weights = ember.tensor(_rng(21).standard_normal(loss.shape))
        (loss.to_local() * weights).sum().backward() if reduction == "none" else loss.backward()
    full = type(dt).from_local(leaf.grad, mesh, [Shard(1)], shape=(5, 9)).full_tensor()
    return {
        "loss": loss.full_tensor().detach().numpy(),
        "placements": loss.placements,
        "grad": full.numpy(),
        "restored": F.cross_entropy.__module__,
    }


@pytest.fixture(scope="module")
def op_results(pools):
    return pools(WORLD, "shm").run(case_ops, timeout=120)


# The output placements. torch 2.13's DTensor gives the same (checked on its fake backend)
# except: mean -> Partial(avg) of local means (ember: Partial(sum) of local sums over the
# global count, also right for uneven shards); merging an inner shard -> torch's private
# _StridedShard (ember gathers); vocab-sharded embedding -> _MaskPartial, a Partial sum.
EXPECT = {
    "add_S0_R": "S(0)", "mul_R_S1": "S(1)", "sub_scalar": "S(1)", "rdiv": "S(0)",
    "bcast_row": "S(1)", "bcast_S0_vs_row": "S(0)", "sum0_of_S0": "P(sum)",
    "sum1_of_S0": "S(0)", "mean_all": "P(sum)", "mean_keepdim": "P(sum)",
    "softmax_sharded_dim": "R", "softmax_other_dim": "S(0)", "relu": "S(0)",
    "neg_partial": "P(sum)", "split_heads": "S(2)", "merge_batch": "S(0)",
    "merge_inner_gathers": "R", "infer_dim": "S(2)", "transpose": "S(1)", "permute": "S(1)",
    "bmm_batch": "S(0)", "bmm_cols": "S(2)", "bmm_rows": "S(1)", "bmm_contract": "P(sum)",
    "linear_colwise": "S(1)", "linear_rowwise": "P(sum)", "embedding_vocab": "P(sum)",
    "embedding_dim": "S(2)", "layer_norm_seq": "S(1)",
}  # fmt: skip


def test_op_values_and_placements(op_results):
    for res in op_results:
        for name, want in EXPECT.items():
            placements, _, err = res[name]
            assert placements == (want,), (name, placements)
            assert err is not None and err < 1e-12, (name, err)


def test_local_shapes_are_the_shards(op_results):
    r0, r1 = op_results
    assert r0["split_heads"][1] == r1["split_heads"][1] == (2, 3, 2, 2)
    assert r0["merge_batch"][1] == (3, 8)
    assert r0["embedding_dim"][1] == (2, 3, 2)
    assert r0["sum0_of_S0"][1] == (6,)


def test_gradients_through_op_chains(pools):
    for res in pools(WORLD, "shm").run(case_grads, timeout=120):
        assert res["loss_err"] < 1e-12, res
        assert max(res["grad_err"]) < 1e-12, res


@pytest.mark.parametrize("reduction", ["mean", pytest.param("sum", marks=pytest.mark.full), "none"])
def test_loss_parallel_matches_torch(pools, reduction):
    torch = pytest.importorskip("torch")
    logits = torch.from_numpy(_rng(20).standard_normal((5, 9))).requires_grad_(True)
    target = torch.tensor([0, 8, 4, -100, 5])
    loss = torch.nn.functional.cross_entropy(logits, target, reduction=reduction)
    if reduction == "none":
        (loss * torch.from_numpy(_rng(21).standard_normal(tuple(loss.shape)))).sum().backward()
    else:
        loss.backward()
    for res in pools(WORLD, "shm").run(case_loss_parallel, reduction, timeout=120):
        np.testing.assert_allclose(res["loss"], loss.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(res["grad"], logits.grad.numpy(), rtol=0, atol=1e-12)
        assert [str(p) for p in res["placements"]] == ["R"]
        assert res["restored"] != "ember.distributed.tensor.parallel.loss"
