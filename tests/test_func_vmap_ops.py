"""``ember.func.vmap`` over the ops that mix samples when called on the physical array or take
per-sample index tensors (renorm, block_diag, histc, searching, x[i, :, j], x[:, i] = v,
index_put, put, masked_scatter), against ``torch.func.vmap``; data-dependent shapes stay
errors, as in torch."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.func import grad, vmap

torch = pytest.importorskip("torch")
tf = pytest.importorskip("torch.func")

V = 3
RNG = np.random.default_rng(0)
X = RNG.standard_normal((V, 4, 5, 3))
IDX = RNG.integers(0, 4, (V, 2))
IDX3 = RNG.integers(-3, 3, (V, 2))
SORTED = np.sort(RNG.standard_normal((V, 2, 6)), -1)
PROBES = RNG.standard_normal((V, 2, 4))


def _clone_set(m, x, i, v):
    y = x.clone()
    y[:, i] = v
    return y


# name -> (fn(module, *args), args as numpy arrays, in_dims)
CASES = {
    "getitem_inner": (lambda m, x, i: x[:, i], (X, IDX), 0),
    "getitem_ellipsis": (lambda m, x, i: x[..., i, None], (X, IDX3), 0),
    "getitem_separated": (lambda m, x, i, j: x[i, :, j], (X, IDX, IDX3), 0),
    "getitem_int_and_tensor": (lambda m, x, i: x[1, :, i], (X, IDX3), 0),
    "getitem_shared_x": (lambda m, x, i, j: x[i, j], (X[0], IDX, IDX3), (None, 0, 0)),
    "setitem_inner": (_clone_set, (X, IDX, X[:, :, :2]), 0),
    "index_put_acc": (
        lambda m, x, i, j, v: m.index_put(x[:, :, 0], (i, j), v, True),
        (X, IDX, IDX3, X[:, 0, :2, 0]),
        0,
    ),
    "put": (lambda m, x, i, s: m.put(x, i, s), (X, IDX3 * 7, X[:, 0, 0, :2]), 0),
    "masked_scatter": (
        lambda m, x, s: m.masked_scatter(x[0], x[0] > 0, s),
        (X, X[:, :2].reshape(V, -1)),
        0,
    ),
    "renorm": (lambda m, x: m.renorm(x, 2.0, 1, 1.5), (X,), 0),
    "block_diag": (
        lambda m, a, b, c: m.block_diag(a, b, c),
        (X[:, 0], X[:, 1, 0], X[:, 0, 0, 0]),
        0,
    ),
    "histc_data_range": (lambda m, x: m.histc(x, bins=6), (X,), 0),
    "histogram_density": (lambda m, x: m.cat(m.histogram(x, 5, density=True)), (X,), 0),
    "combinations_r3": (lambda m, x: m.combinations(x, 3), (X[:, 0, :, 0],), 0),
    "combinations_replacement": (lambda m, x: m.combinations(x, 2, True), (X[:, 0, 0],), 0),
    "searchsorted_nd_right": (
        lambda m, s, v: m.searchsorted(s, v, right=True),
        (SORTED, PROBES),
        0,
    ),
    "searchsorted_shared_seq": (
        lambda m, s, v: m.searchsorted(s[0], v),
        (SORTED[0], PROBES),
        (None, 0),
    ),
    "bucketize_right": (lambda m, v, b: m.bucketize(v, b[0], right=True), (PROBES, SORTED), 0),
    "isin_invert": (lambda m, a, b: m.isin(a, b, invert=True), (IDX3, IDX), 0),
    "tensorinv": (
        lambda m, a: m.linalg.tensorinv(a.reshape(4, 2, 2), 1),
        (RNG.standard_normal((V, 4, 4)),),
        0,
    ),
    "cov_batched_weights": (
        lambda m, x, f, a: m.cov(x, fweights=f, aweights=a),
        (X[:, 0], IDX[:, :1].repeat(3, 1) + 1, X[:, 1, 0] ** 2),
        0,
    ),
    "as_strided": (lambda m, x: m.as_strided(x[0], (3, 2), (1, 2), 1), (X,), 0),
    "as_strided_scatter": (
        lambda m, x, s: m.as_strided_scatter(x[0, :, 0].contiguous(), s, (2, 2), (1, 2)),
        (X, X[:, 1, :2, :2]),
        0,
    ),
    "diff_prepend": (lambda m, x, p: m.diff(x, prepend=p, dim=0), (X, X[:, :1]), 0),
}

# torch.func.vmap raises "shape mismatch: value tensor of shape [3, 4, 2, 3] cannot be broadcast
# to indexing result of shape [3, 2, 4, 3]" on y[:, i] = v with a batched i, and "Batching rule
# not implemented for aten::equal" on cov with batched fweights, and "aten::as_strided_scatter
# requires special handling, and does not yet have a batching rule" (torch 2.13)
TORCH_VMAP_FAILS = {"setitem_inner", "cov_batched_weights", "as_strided_scatter"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_vmap(name):
    fn, arrays, in_dims = CASES[name]
    got = vmap(lambda *a: fn(ember, *a), in_dims=in_dims)(*[ember.tensor(a) for a in arrays])
    if name in TORCH_VMAP_FAILS:  # a per-sample loop of torch instead
        dims = in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(arrays)
        want = torch.stack(
            [
                fn(torch, *[torch.tensor(a if d is None else a[v]) for a, d in zip(arrays, dims)])
                for v in range(V)
            ]
        )
    else:
        want = tf.vmap(lambda *a: fn(torch, *a), in_dims=in_dims)(
            *[torch.tensor(a) for a in arrays]
        )
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "name", ["getitem_inner", "renorm", "block_diag", "masked_scatter", "as_strided"]
)
def test_per_sample_gradients_match_torch(name):
    fn, arrays, in_dims = CASES[name]

    def loss(m):
        return lambda x, *rest: (fn(m, x, *rest) ** 2).sum()

    got = vmap(grad(loss(ember)), in_dims=in_dims)(*[ember.tensor(a) for a in arrays])
    want = tf.vmap(tf.grad(loss(torch)), in_dims=in_dims)(*[torch.tensor(a) for a in arrays])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x[x > 0],
        lambda x: ember.masked_select(x, x > 0),
        lambda x: ember.unique(x),
        lambda x: ember.nonzero(x > 0),
    ],
    ids=["getitem_mask", "masked_select", "unique", "nonzero"],
)
def test_data_dependent_shapes_raise(fn):
    with pytest.raises(RuntimeError, match="vmap"):
        vmap(fn)(ember.tensor(X[:, 0]))
