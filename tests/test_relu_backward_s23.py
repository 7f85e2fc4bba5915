"""ReLU's backward as a bitwise select (core/ops/elementwise_unary.py): torch's values, bit for
bit, on NaN / inf / -0. gradients, strided layouts and every float width; at a NaN output the
rule torch's threshold_backward has (out <= 0 stops the gradient, so NaN passes it; s24)."""

from __future__ import annotations

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _case(dtype: str, shape: tuple, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    flat_x, flat_g = x.reshape(-1), g.reshape(-1)
    if flat_x.size >= 8:
        flat_x[1] = 0.0  # dead
        flat_g[[2, 3, 4, 5]] = [np.nan, np.inf, -0.0, -np.inf]
    return x, g


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(), (7,), (4, 3, 16, 16)])
@pytest.mark.parametrize("layout", ["contiguous", "permuted"])
def test_relu_backward_matches_torch_bitwise(dtype, shape, layout):
    x, g = _case(dtype, shape)
    if layout == "permuted" and len(shape) == 4:  # channels-last strides, as the conv kernels'
        x, g = x.transpose(0, 2, 3, 1), g.transpose(0, 2, 3, 1)
    xe = ember.tensor(x, requires_grad=True)
    ember.relu(xe).backward(ember.tensor(g))
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.tensor(g))
    got, want = xe.grad.numpy(), xt.grad.numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    np.testing.assert_array_equal(
        np.ascontiguousarray(got).view(bits), np.ascontiguousarray(want).view(bits)
    )


def test_relu_double_backward_still_differentiates():
    x = ember.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    (g,) = ember.autograd.grad(ember.relu(x).pow(2).sum(), x, create_graph=True)
    (gg,) = ember.autograd.grad(g.sum(), x)
    np.testing.assert_array_equal(g.detach().numpy(), [0.0, 4.0, 6.0])
    np.testing.assert_array_equal(gg.numpy(), [0.0, 2.0, 2.0])


def test_relu_backward_at_a_nan_output_keeps_the_select():
    x = np.array([np.nan, -1.0, 2.0, 0.0] * 300, dtype=np.float32)
    g = np.array([5.0, -3.0, -0.0, np.inf] * 300, dtype=np.float32)
    xe = ember.tensor(x, requires_grad=True)
    ember.relu(xe).backward(ember.tensor(g))
    want = np.where(np.maximum(x, 0) <= 0, 0, g)  # torch's rule: NaN passes the gradient
    np.testing.assert_array_equal(xe.grad.numpy().view(np.uint32), want.view(np.uint32))
