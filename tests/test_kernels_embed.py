"""Session 16 kernels of issue 23: the embedding's compiled weight gradient (a scatter straight
into the zeroed gradient, split over threads by vocabulary range), the compiled cross-entropy
over class indices (one call forward, one backward), and max pooling's compiled kernels split
over planes. Checked against torch, by float64 gradcheck, and split against one thread
(bitwise)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.backend import threads
from ember.ops import _kernel_split, act_kernels, embedding_ops, pooling

torch = pytest.importorskip("torch")
pytest.importorskip("numba")
F, TF = ember.nn.functional, torch.nn.functional


@pytest.fixture
def compiled(monkeypatch):
    """The compiled kernels loaded afresh, float64 included (skips with EMBER_NUMBA=0)."""
    monkeypatch.setattr(embedding_ops, "_kern", None)
    monkeypatch.setattr(act_kernels, "_numba", None)
    monkeypatch.setattr(
        act_kernels, "_COMPILED_DTYPES", (np.dtype(np.float32), np.dtype(np.float64))
    )
    if embedding_ops.compiled() is None:
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0)")


@pytest.fixture
def split(monkeypatch):
    """Three threads and every slice size allowed; returns the list of pool submissions."""
    if os.environ.get("EMBER_NUMBA", "1") == "0":
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0)")
    monkeypatch.setattr(threads, "_cached", 3)
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1)
    calls = []
    pool = threads.thread_pool()
    monkeypatch.setattr(pool, "submit", lambda *a: calls.append(a) or type(pool).submit(pool, *a))
    return calls


def _pair(a, grad=True):
    return ember.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


# ---- embedding ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kw",
    [{}, {"padding_idx": 3}, {"padding_idx": -2}, {"scale_grad_by_freq": True}, {"sparse": True}],
)
def test_embedding_grad_matches_torch(compiled, dtype, kw):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((40, 6)).astype(dtype)
    idx = rng.integers(0, 40, (5, 7))
    idx[0, :3] = 3  # repeats, and the padding row
    idx[1, 0] = 38
    we, wt = _pair(w)
    g = rng.standard_normal((5, 7, 6)).astype(dtype)
    ye = F.embedding(ember.tensor(idx), we, **kw)
    yt = TF.embedding(torch.tensor(idx), wt, **kw)
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    gt = wt.grad.to_dense() if wt.grad.is_sparse else wt.grad
    np.testing.assert_allclose(we.grad.numpy(), gt.numpy(), rtol=1e-6, atol=1e-6)
    assert we.grad.dtype == we.dtype


def test_embedding_max_norm_matches_torch(compiled):
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((20, 4)) * 3).astype(np.float32)
    idx = np.array([[1, 2, 2], [19, 0, 1]])
    we, wt = _pair(w)
    ye = F.embedding(ember.tensor(idx), we, max_norm=1.5)
    yt = TF.embedding(torch.tensor(idx), wt, max_norm=1.5)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-6)
    (ye * ye).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(we.grad.numpy(), wt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_embedding_split_is_bitwise_one_thread(compiled, monkeypatch):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((50, 8)).astype(np.float32)
    idx = ember.tensor(rng.integers(0, 50, 300))
    g = ember.tensor(rng.standard_normal((300, 8)).astype(np.float32))

    def grad():
        we = ember.tensor(w, requires_grad=True)
        F.embedding(idx, we, padding_idx=7).backward(g)
        return we.grad.numpy()

    one = grad()
    monkeypatch.setattr(threads, "_cached", 3)
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1)
    np.testing.assert_array_equal(grad(), one)
    assert not one[7].any()


def test_embedding_grad_is_adopted_without_copy(compiled):
    # the (V, d) gradient itself becomes .grad (no view, no copy), and double backward works
    w = ember.randn(10, 3, requires_grad=True)
    idx = ember.tensor(np.array([1, 1, 4]))
    F.embedding(idx, w).sum().backward()
    assert w.grad._data.base is None
    np.testing.assert_array_equal(w.grad.numpy()[[1, 4, 0], 0], [2, 1, 0])
    w64 = ember.tensor(np.random.default_rng(4).standard_normal((6, 2)), requires_grad=True)
    i2 = ember.tensor(np.array([0, 5, 5, 2]))
    assert ember.autograd.gradcheck(lambda w: F.embedding(i2, w) ** 2, (w64,))
    assert ember.autograd.gradgradcheck(lambda w: F.embedding(i2, w) ** 2, (w64,))


# ---- cross-entropy ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "m,c,weighted,reduction,ignore",
    [
        (7, 5, False, "mean", None),
        (9, 50, True, "mean", 3),
        (6, 300, True, "sum", -100),
        (5, 9, False, "none", -100),
        (4, 1100, True, "mean", -100),  # long rows: NumPy's row max
    ],
)
def test_cross_entropy_compiled_matches_torch(compiled, dtype, m, c, weighted, reduction, ignore):
    rng = np.random.default_rng(m * c)
    x = (rng.standard_normal((m, c)) * 3 + 20).astype(dtype)  # offset: lse must shift
    t = rng.integers(0, c, m)
    kw = {"reduction": reduction}
    if ignore is not None:
        t[1] = ignore if ignore < 0 else t[1]
        t[2] = ignore
        kw["ignore_index"] = ignore
    w = (rng.random(c) + 0.5).astype(dtype) if weighted else None
    xe, xt = _pair(x)
    ye = F.cross_entropy(xe, ember.tensor(t), None if w is None else ember.tensor(w), **kw)
    yt = TF.cross_entropy(xt, torch.tensor(t), None if w is None else torch.tensor(w), **kw)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    g = rng.standard_normal(yt.shape).astype(dtype)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)
    assert xe.grad.dtype == xe.dtype


def test_cross_entropy_compiled_gradcheck_and_double_backward(compiled):
    rng = np.random.default_rng(5)
    x = ember.tensor(rng.standard_normal((5, 7)), requires_grad=True)
    t = ember.tensor(np.array([0, 6, -100, 2, 2]))
    w = ember.tensor(rng.random(7) + 0.5)
    for kw in ({}, {"weight": w}, {"weight": w, "reduction": "none"}):

        def f(x, kw=kw):
            return F.cross_entropy(x, t, **kw)

        assert ember.autograd.gradcheck(f, (x,))
        assert ember.autograd.gradgradcheck(f, (x,))
    # a non-contiguous input: the kernel reads a copy, double backward must see the input
    xt = ember.tensor(rng.standard_normal((7, 5)), requires_grad=True)

    def g(x):
        return F.cross_entropy(x.t(), t, w)

    assert ember.autograd.gradgradcheck(g, (xt,))


def test_cross_entropy_compiled_edge_cases(compiled):
    # every target ignored: nan like torch; retained graph: two backwards agree; K-d input
    x = np.random.default_rng(6).standard_normal((3, 4, 2)).astype(np.float32)
    t = np.array([[0, 3], [1, 1], [2, 0]])
    xe, xt = _pair(x)
    ye = F.cross_entropy(xe, ember.tensor(t))
    yt = TF.cross_entropy(xt, torch.tensor(t))
    ye.backward(retain_graph=True)
    ye.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    allign = ember.tensor(np.full(4, -100))
    assert np.isnan(F.cross_entropy(ember.randn(4, 3), allign).item())
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        F.cross_entropy(ember.randn(2, 5), ember.tensor(np.array([1, 5])))
    xh = ember.randn(4, 6).half().requires_grad_()
    F.cross_entropy(xh, ember.tensor(np.array([1, 2, 3, 0]))).backward()
    assert xh.grad.dtype == ember.float16


def test_cross_entropy_split_is_bitwise_one_thread(compiled, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 30)).astype(np.float32)
    t = ember.tensor(rng.integers(0, 30, 40))
    w = ember.tensor(rng.random(30).astype(np.float32))

    def run():
        xe = ember.tensor(x, requires_grad=True)
        y = F.cross_entropy(xe, t, w)
        y.backward()
        return y.item(), xe.grad.numpy()

    y1, g1 = run()
    monkeypatch.setattr(threads, "_cached", 3)
    monkeypatch.setattr(_kernel_split, "_MIN_PER_THREAD", 1)
    y3, g3 = run()
    np.testing.assert_array_equal(g3, g1)
    np.testing.assert_allclose(y3, y1, rtol=1e-6)  # (the weight sum adds per-part sums)


# ---- max pooling split over planes --------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 3, "stride": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"kernel_size": 2, "stride": 1, "dilation": 2, "return_indices": True},
    ],
)
def test_max_pool_split_matches_torch(split, kw):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    xe, xt = _pair(x)
    ye, yt = F.max_pool2d(xe, **kw), TF.max_pool2d(xt, **kw)
    if kw.get("return_indices"):
        np.testing.assert_array_equal(ye[1].numpy(), yt[1].numpy())
        ye, yt = ye[0], yt[0]
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert split  # the planes went to the pool


def test_max_pool_split_nan_in_one_part_falls_back(split, monkeypatch):
    monkeypatch.setattr(pooling, "_numba", None)
    x = np.random.default_rng(9).standard_normal((1, 4, 7, 7)).astype(np.float32)
    x[0, 3, 2, 2] = np.nan  # in the last part only
    xe, xt = _pair(x)
    ye, yt = F.max_pool2d(xe, 3, 2), TF.max_pool2d(xt, 3, 2)
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    ye.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(xe.grad.numpy(), xt.grad.numpy())
