"""The compiled direct convolution (core/ops/conv_direct.py): forward, input gradient and
weight gradient against torch at the shapes where the selection switches, float32 and
float64, gradcheck, and the selection rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.backend.threads import get_num_threads, set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D

pytestmark = pytest.mark.skipif(not D.available(), reason="numba is not installed")


@pytest.fixture(autouse=True)
def one_thread():
    prev = get_num_threads()
    set_num_threads(1)
    yield
    set_num_threads(prev)


def _geom(x_shape, w_shape, pad, dilation=1):
    nd = len(w_shape) - 2
    return C.ConvGeom(
        (1,) * nd,
        ((pad, pad),) * nd,
        (dilation,) * nd,
        1,
        w_shape[2:],
        x_shape[2:],
    )


def _step(lib, x, w, b, g, pad, dilation):
    xt = lib.tensor(x, requires_grad=True)
    wt = lib.tensor(w, requires_grad=True)
    bt = lib.tensor(b, requires_grad=True)
    conv = getattr(lib.nn.functional, f"conv{x.ndim - 2}d")
    y = conv(xt, wt, bt, padding=pad, dilation=dilation)
    y.backward(lib.tensor(g))
    return [np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad, bt.grad)]


# (x shape, w shape, padding, dilation, direct weight gradient in float32?); in float64 the
# channels-last weight gradient takes multiples of 8 input channels
CASES = [
    ((2, 16, 12, 20), (16, 16, 3, 3), 1, 1, True),  # 2-D, few channels: all three direct
    ((2, 3, 11, 17), (16, 3, 3, 3), 1, 1, True),  # a first layer: lane-summing weight grad
    ((2, 32, 9, 28), (32, 32, 5, 5), 2, 1, True),  # k5
    ((1, 16, 4, 5, 30), (32, 16, 3, 3, 3), 1, 1, True),  # 3-D
    ((2, 8, 10, 36), (8, 8, 3, 3), 0, 2, True),  # no padding, dilation 2
    ((2, 24, 8, 14), (16, 24, 3, 3), 1, 1, False),  # float32: weight gradient by GEMM
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[1])))
def test_against_torch(case, dtype):
    x_shape, w_shape, pad, dil, direct_wgrad = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) * 0.2).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    geom = _geom(x_shape, w_shape, pad, dil)
    assert D.use_direct(np, x, w_shape, geom)
    expect = direct_wgrad or (dtype == np.float64 and w_shape[1] % 8 == 0)
    assert D.use_direct_weight_grad(np, x, w_shape, geom) == expect
    y = C.conv_forward(np, x, w, b, geom)[0]
    g = rng.standard_normal(y.shape).astype(dtype)
    got = _step(ember, x, w, b, g, pad, dil)
    want = _step(torch, x, w, b, g, pad, dil)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for a, e, name in zip(got, want, ("y", "dx", "dw", "db")):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max(), err_msg=name)


def test_same_as_gemm_path_to_rounding():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    geom = _geom(x.shape, w.shape, 1)
    y = D.direct_forward(x, w, None, geom)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dw = D.direct_weight_grad(x, g, w.shape, geom)
    D.ENABLED = False
    try:
        y0, cols = C.conv_forward(np, x, w, None, geom)
        dw0 = C.conv_weight_grad(np, x, g, w.shape, geom, cols)
    finally:
        D.ENABLED = True
    np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-5 * np.abs(y0).max())
    np.testing.assert_allclose(dw, dw0, rtol=1e-5, atol=1e-5 * np.abs(dw0).max())


def test_gradcheck():
    rng = np.random.default_rng(2)
    x = ember.tensor(rng.standard_normal((1, 2, 4, 14)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((8, 2, 3, 3)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(8), requires_grad=True)
    assert D.use_direct(
        np, x.detach().numpy(), tuple(w.shape), _geom(tuple(x.shape), tuple(w.shape), 1)
    )

    def fn(x, w, b):
        return ember.nn.functional.conv2d(x, w, b, padding=1)

    assert ember.autograd.gradcheck(fn, (x, w, b))
    assert ember.autograd.gradgradcheck(fn, (x, w, b))


def test_weight_grad_with_inf_input_matches_torch():
    # the wide rows meet zeros of g: with inf in x the GEMM path takes the weight gradient
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 6, 14)).astype(np.float32)
    x[0, 0, 2, 13] = np.inf
    w = (rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32)
    geom = _geom(x.shape, w.shape, 1)
    g = np.zeros((1, 8, 6, 14), np.float32)
    g[0, :, 4, 3] = 1.0  # a window that does not see the inf
    assert D.direct_weight_grad(x, g, w.shape, geom) is None
    got = C.conv_weight_grad(np, x, g, w.shape, geom)
    want = torch.nn.grad.conv2d_weight(torch.from_numpy(x), w.shape, torch.from_numpy(g), 1, 1)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_selection_rules():
    x = np.zeros((2, 16, 32, 32), np.float32)

    def use(w_shape, x=x, stride=1, pad=1, groups=1):
        nd = len(w_shape) - 2
        geom = C.ConvGeom(
            (stride,) * nd, ((pad, pad),) * nd, (1,) * nd, groups, w_shape[2:], x.shape[2:]
        )
        return D.use_direct(np, x, w_shape, geom)

    assert use((16, 16, 3, 3))
    assert use((64, 16, 5, 5))
    assert not use((136, 16, 3, 3))  # more than MAX_OUT output channels
    assert not use((12, 16, 3, 3))  # not a multiple of 8
    assert not use((16, 16, 1, 1), pad=0)  # 1x1: per-sample GEMMs
    assert not use((16, 16, 3, 3), stride=2)
    assert not use((16, 8, 3, 3), groups=2)
    assert not use((16, 16, 3, 3), x=np.zeros((2, 16, 32, 32), np.int32))
    assert not use((16, 136, 3, 3), x=np.zeros((2, 136, 32, 32), np.float32))  # MAX_IN
    assert not use((16, 16, 3, 3), x=np.zeros((2, 16, 8, 8), np.float32))  # MAX_WASTE
    assert not use((16, 16, 3, 3), x=np.zeros((2, 16, 3, 3), np.float32))  # mostly padding
    assert not use((16, 16, 3), x=np.zeros((2, 16, 32), np.float32))  # 1-D
    set_num_threads(2)
    assert not use((16, 16, 3, 3))  # conv_split hands it one thread a part


def test_two_threads_same_as_one():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    b = np.zeros(16, np.float32)
    g = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    one = _step(ember, x, w, b, g, 1, 1)
    set_num_threads(2)
    two = _step(ember, x, w, b, g, 1, 1)
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_two_parts(monkeypatch):
    # at two threads conv_split cuts a deep convolution into parts, each on the direct kernel
    from ember.backend import mkl_gemm
    from ember.ops import conv_split

    if not mkl_gemm.enabled():
        pytest.skip("MKL (or numba) is not installed: no parts")
    monkeypatch.setattr(conv_split, "MIN_PART_MACS", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 8, 14))
    w = rng.standard_normal((64, 64, 3, 3)) * 0.1
    b = rng.standard_normal(64)
    g = rng.standard_normal((4, 64, 8, 14))
    set_num_threads(2)
    y, cols = C.conv_forward(np, x, w, b, _geom(x.shape, w.shape, 1))
    assert isinstance(cols, conv_split.SplitCols) and cols.parts == [None, None]
    got = _step(ember, x, w, b, g, 1, 1)
    want = _step(torch, x, w, b, g, 1, 1)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10 * np.abs(e).max())
