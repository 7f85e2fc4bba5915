"""Linear layers' session-24 paths (issue 23, h8): the forward as ``(w @ x.T).T`` for few rows
against a long reduction, and the bias gradient as a compiled column sum (``_numba_linear``).

Both only reorganise work, so both are checked bit for bit against the NumPy they replace, and
against torch (forward and gradients) at the shapes where the path switches.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd import gradcheck
from ember.ops import _numba_linear as nl


def _rand(rng, shape, dtype=np.float32):
    # magnitudes spread over six decades so that any change of summation order shows
    v = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)
    return v.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2048, 128), (513, 1000), (9, 10000), (8192, 8), (4096, 3)])
def test_bias_grad_bitwise_numpy(shape, dtype):
    g = _rand(np.random.default_rng(0), shape, dtype)
    want = g.sum(0)
    got = nl.bias_grad(g)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    out = np.empty(shape[1], dtype)
    assert nl.bias_grad(g, out) is out
    np.testing.assert_array_equal(out, want)


def test_bias_grad_strided_and_small_fall_back():
    rng = np.random.default_rng(1)
    g = _rand(rng, (1024, 256))[:, ::2]  # not C-contiguous: NumPy's sum
    np.testing.assert_array_equal(nl.bias_grad(g), g.sum(0))
    small = _rand(rng, (4, 16))
    np.testing.assert_array_equal(nl.bias_grad(small), small.sum(0))


@pytest.mark.parametrize(
    "m,k,n,swapped",
    [
        (128, 784, 512, True),
        (16, 512, 32, True),
        (15, 512, 32, False),  # too few rows
        (129, 784, 512, False),  # too many rows
        (64, 511, 512, False),  # reduction too short
        (64, 512, 127, False),  # too few outputs
    ],
)
def test_use_swapped_switch(m, k, n, swapped):
    assert nl.use_swapped(np.empty((m, k), np.float32), np.empty((n, k), np.float32)) is swapped


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("m,k,n", [(128, 784, 512), (64, 512, 256), (16, 1024, 32)])
def test_swapped_forward_bitwise_plain(m, k, n, bias):
    rng = np.random.default_rng(2)
    x, w = _rand(rng, (m, k)), _rand(rng, (n, k))
    b = _rand(rng, n) if bias else None
    want = x @ w.T
    if bias:
        want += b
    got = nl.swapped_product(x, w, b)
    assert got.flags.c_contiguous and got.shape == (m, n)
    # bitwise with this machine's OpenBLAS (each product sums in the same order either way);
    # another BLAS build may block the two orientations differently, hence the tolerance
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    out = F.linear(ember.tensor(x), ember.tensor(w), None if b is None else ember.tensor(b))
    assert out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "lead,k,n", [((128,), 784, 512), ((4, 32), 512, 256), ((129,), 512, 300), ((8,), 512, 64)]
)
def test_linear_matches_torch(lead, k, n):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(lead + (k,)), rng.standard_normal((n, k)), rng.standard_normal(n)
    g = rng.standard_normal(lead + (n,)).astype(np.float32)
    ours = [ember.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b)]
    theirs = [torch.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b)]
    y = F.linear(*ours)
    ty = torch.nn.functional.linear(*theirs)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    y.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    for a, ta in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-4, atol=2e-3)


def test_gradcheck_float64_through_both_paths(monkeypatch):
    # force the swapped forward and the compiled bias gradient at a shape gradcheck can afford
    monkeypatch.setattr(nl, "use_swapped", lambda x, w: True)
    monkeypatch.setattr(nl, "MIN_SUM_SIZE", 0)
    rng = np.random.default_rng(4)
    x = ember.tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((9, 5)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(9), requires_grad=True)
    assert gradcheck(F.linear, (x, w, b))
    assert gradcheck(lambda x, w: F.linear(x, w), (x, w))
