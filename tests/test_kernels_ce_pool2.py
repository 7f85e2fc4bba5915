"""Second-pass kernels of issue 23: cross-entropy from one exp pass (the softmax saved for the
backward), checked against torch and by float64 gradcheck."""

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "m,c,weighted,smoothing,reduction,ignore",
    [
        (7, 5, False, 0.0, "mean", False),
        (6, 300, True, 0.0, "sum", True),
        (5, 9, True, 0.2, "none", True),
        (4, 11, False, 0.1, "mean", False),
    ],
)
def test_cross_entropy_indices_matches_torch(m, c, weighted, smoothing, reduction, ignore):
    rng = np.random.default_rng(m * c)
    x = (rng.standard_normal((m, c)) * 3 + 20).astype(np.float32)  # offset: lse must shift
    t = rng.integers(0, c, m)
    if ignore:
        t[1] = -100
    w = rng.random(c).astype(np.float32) + 0.5 if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    xe = ember.tensor(x, requires_grad=True)
    ye = F.cross_entropy(xe, ember.tensor(t), None if w is None else ember.tensor(w), **kw)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.cross_entropy(
        xt, torch.tensor(t), None if w is None else torch.tensor(w), **kw
    )
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(yt.shape).astype(np.float32)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_indices_gradcheck(smoothing):
    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((4, 6)), requires_grad=True)
    t = ember.tensor(np.array([0, 5, -100, 2]))
    w = ember.tensor(rng.random(6) + 0.5)

    def f(x):
        return F.cross_entropy(x, t, w, label_smoothing=smoothing)

    assert ember.autograd.gradcheck(f, (x,))
    assert ember.autograd.gradgradcheck(f, (x,))


def test_cross_entropy_retained_graph_backward_twice():
    # the saved softmax must not be modified by the first backward
    x = ember.randn(5, 7, requires_grad=True)
    t = ember.tensor(np.arange(5) % 7)
    loss = F.cross_entropy(x, t)
    loss.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    x.grad = None
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), g1)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 40)])
def test_log_softmax_saved_probs_matches_torch(shape):
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    xe = ember.tensor(x, requires_grad=True)
    ye = F.log_softmax(xe, -1)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.log_softmax(xt, -1)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    ye.backward(ember.tensor(g), retain_graph=True)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    first = xe.grad.numpy().copy()
    xe.grad = None
    ye.backward(ember.tensor(g))  # the saved softmax is unchanged by the first backward
    np.testing.assert_array_equal(xe.grad.numpy(), first)


def test_log_softmax_gradcheck():
    x = ember.tensor(np.random.default_rng(0).standard_normal((3, 7)), requires_grad=True)
    assert ember.autograd.gradcheck(lambda x: F.log_softmax(x, -1), (x,))
    assert ember.autograd.gradgradcheck(lambda x: F.log_softmax(x, -1), (x,))


# ---- compiled 2-D max pooling (numba; the NumPy loop without it) ---------------------------
@pytest.mark.parametrize(
    "shape,k,s,p,d,ceil",
    [
        ((2, 3, 11, 12), 3, 2, 1, 1, False),
        ((1, 2, 9, 10), (2, 3), (1, 2), (1, 0), (2, 1), True),
        ((2, 2, 8, 8), 2, 2, 0, 1, False),
    ],
)
@pytest.mark.parametrize("compiled", [True, False])
def test_max_pool2d_matches_torch(shape, k, s, p, d, ceil, compiled, monkeypatch):
    from ember.ops import pooling

    if not compiled:
        monkeypatch.setattr(pooling, "_numba", False)  # the NumPy loop over kernel offsets
    elif (
        pooling._compiled(
            np,
            np.zeros(1, np.float32),
            pooling.PoolGeom((1, 1), (1, 1), (0, 0), (1, 1), (1, 1), False),
        )
        is None
    ):
        pytest.skip("numba is not installed or EMBER_NUMBA=0")
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-3, 4, shape).astype(np.float32)  # many ties: the first one must win
    x[0, 0, :2, :2] = -np.inf  # a window of -inf reports its first tap inside the input
    g = rng.standard_normal(
        np.asarray(
            torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode=ceil)
        ).shape
    ).astype(np.float32)
    xe = ember.tensor(x, requires_grad=True)
    ye, ie = F.max_pool2d(xe, k, s, p, d, ceil_mode=ceil, return_indices=True)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, k, s, p, d, ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(ie.numpy(), it.numpy())
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_max_pool2d_nan_keeps_torch_positions():
    x = np.random.default_rng(1).standard_normal((1, 1, 7, 7)).astype(np.float32)
    x[0, 0, 2, 3] = x[0, 0, 3, 3] = np.nan
    ye, ie = F.max_pool2d(ember.tensor(x), 3, 2, 1, return_indices=True)
    yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(ye.numpy(), yt.numpy())
    np.testing.assert_array_equal(ie.numpy(), it.numpy())


def test_max_pool2d_gradcheck():
    x = ember.tensor(np.random.default_rng(2).standard_normal((1, 2, 7, 6)), requires_grad=True)

    def f(x):
        return F.max_pool2d(x, 3, 2, 1)

    assert ember.autograd.gradcheck(f, (x,))
    assert ember.autograd.gradgradcheck(f, (x,))
