"""The compiled depthwise forward hands its padded input to the weight gradient (no second
pad): gradients still match torch for conv and conv_transpose, with and without padding, and
when the forward ran on the other path (the kept array is then not reused)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.ops import conv_depthwise
from ember.ops.conv import ConvGeom

torch = pytest.importorskip("torch")


def _grads(lib, name, x, w, **kw):
    xt, wt = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
    y = getattr(lib.nn.functional, name)(xt, wt, groups=x.shape[1], **kw)
    (y * y).sum().backward()
    return [t.detach().numpy() for t in (y, xt.grad, wt.grad)]


@pytest.mark.parametrize(
    "name,kw",
    [
        ("conv2d", {"padding": 1}),
        ("conv2d", {"padding": 0}),  # the kept array is x itself
        ("conv2d", {"padding": 2, "stride": 2}),
        ("conv_transpose2d", {"padding": 1}),
    ],
)
def test_depthwise_kept_padding_matches_torch(name, kw):
    if (
        conv_depthwise._compiled(
            np,
            ConvGeom((1, 1), ((0, 0),) * 2, (1, 1), 2, (3, 3), (4, 4)),
            np.zeros((1, 2, 4, 4), np.float32),
        )
        is None
    ):
        pytest.skip("numba not installed or EMBER_NUMBA=0: the NumPy frame path keeps columns")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    for a, r in zip(_grads(ember, name, x, w, **kw), _grads(torch, name, x, w, **kw)):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_weight_grad_ignores_columns_of_the_other_path(monkeypatch):
    """Forward on the NumPy frame path (3-D columns kept), backward compiled: it pads again."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 7, 7))
    w = rng.standard_normal((4, 1, 3, 3))
    geom = ConvGeom((1, 1), ((1, 1),) * 2, (1, 1), 4, (3, 3), (7, 7))
    monkeypatch.setattr(conv_depthwise, "_numba", False)
    y, cols = conv_depthwise.depthwise_forward(np, x, w, None, geom)
    assert cols is not None and cols.ndim == 3
    monkeypatch.setattr(conv_depthwise, "_numba", None)
    if conv_depthwise._compiled(np, geom, x, w) is None:
        pytest.skip("numba not installed or EMBER_NUMBA=0")
    g = rng.standard_normal(y.shape)
    ours = conv_depthwise.depthwise_weight_grad(np, x, g, w.shape, geom, cols)
    xt, wt = torch.tensor(x), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt, padding=1, groups=4).backward(torch.tensor(g))
    np.testing.assert_allclose(ours, wt.grad.numpy(), rtol=1e-10, atol=1e-10)
