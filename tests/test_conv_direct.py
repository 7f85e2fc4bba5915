"""The compiled direct convolution (core/ops/conv_direct.py): forward, input gradient and
weight gradient against torch at the shapes where the selection switches, float32 and
float64, gradcheck, and the selection rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.backend.threads import set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D
from ember.ops import conv_direct_cl as CL

pytestmark = pytest.mark.skipif(not D.available(), reason="numba is not installed")


from _parity import one_thread  # noqa: E402, F401  (autouse: ember on one thread)


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
    y = D.direct_forward(x, w, None, geom)[0]
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
    assert use((16, 16, 3, 3), stride=2)  # stride phases
    assert not use((16, 16, 3, 3), stride=3)  # MAX_STRIDE
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
    monkeypatch.setattr(D, "THREADED", False)  # (with it: one part, the kernels in parallel)
    from ember.ops import conv_direct_cl

    monkeypatch.setattr(conv_direct_cl, "ENABLED", False)  # (it takes 64 channels on 8 x 14)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 8, 14))
    w = rng.standard_normal((64, 64, 3, 3)) * 0.1
    b = rng.standard_normal(64)
    g = rng.standard_normal((4, 64, 8, 14))
    set_num_threads(2)
    y, cols = C.conv_forward(np, x, w, b, _geom(x.shape, w.shape, 1))
    assert isinstance(cols, conv_split.SplitCols) and len(cols.parts) == 2
    assert all(isinstance(p, D.DirectCols) for p in cols.parts)  # for the direct weight grad
    got = _step(ember, x, w, b, g, 1, 1)
    want = _step(torch, x, w, b, g, 1, 1)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10 * np.abs(e).max())


# ---- stride 2 (session 19): the stride phases' layout, and the input gradient by phases ----

# (x shape, w shape, padding, stride, dilation, direct input gradient?)
STRIDED = [
    ((2, 16, 8, 62), (32, 16, 3, 3), 1, 2, 1, True),  # 2-D k3 s2: all three direct
    ((2, 3, 14, 61), (16, 3, 7, 7), 3, 2, 1, False),  # a first layer k7 s2 (dx: 3 channels)
    ((1, 16, 6, 6, 62), (16, 16, 3, 3, 3), 1, 2, 1, True),  # 3-D
    ((2, 8, 9, 131), (8, 8, 3, 3), 0, 2, 2, True),  # dilation 2 with stride 2, no padding
    ((2, 16, 9, 63), (16, 16, 4, 4), 1, (1, 2), 1, True),  # even kernel, stride only in w
]


def _strided_geom(x_shape, w_shape, pad, stride, dilation):
    nd = len(w_shape) - 2
    stride = stride if isinstance(stride, tuple) else (stride,) * nd
    return C.ConvGeom(stride, ((pad, pad),) * nd, (dilation,) * nd, 1, w_shape[2:], x_shape[2:])


def _strided_step(lib, x, w, b, g, pad, stride, dilation):
    xt = lib.tensor(x, requires_grad=True)
    wt = lib.tensor(w, requires_grad=True)
    bt = lib.tensor(b, requires_grad=True)
    conv = getattr(lib.nn.functional, f"conv{x.ndim - 2}d")
    y = conv(xt, wt, bt, stride=stride, padding=pad, dilation=dilation)
    y.backward(lib.tensor(g))
    return [np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", STRIDED, ids=lambda c: "x".join(map(str, c[1])))
def test_strided_against_torch(case, dtype):
    x_shape, w_shape, pad, stride, dil, direct_dx = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) * 0.2).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    geom = _strided_geom(x_shape, w_shape, pad, stride, dil)
    g = rng.standard_normal((x_shape[0], w_shape[0]) + geom.out_size).astype(dtype)
    assert D.use_direct(np, x, w_shape, geom)
    assert D.use_direct_input_grad(np, g, w_shape, geom) == direct_dx
    assert D.use_direct_weight_grad(np, x, w_shape, geom)
    got = _strided_step(ember, x, w, b, g, pad, stride, dil)
    want = _strided_step(torch, x, w, b, g, pad, stride, dil)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for a, e, name in zip(got, want, ("y", "dx", "dw", "db")):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max(), err_msg=name)


def test_strided_same_as_gemm_path_to_rounding(monkeypatch):
    # (32 output channels: the channels-last kernel's since session 26; kept off here)
    monkeypatch.setattr(CL, "OVER_DIRECT_ANY_PLANE", False)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 16, 8, 62)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    geom = _strided_geom(x.shape, w.shape, 1, 2, 1)
    y, cols = C.conv_forward(np, x, w, None, geom)
    assert isinstance(cols, D.DirectCols)  # the padded input, kept for the weight gradient
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = C.conv_input_grad(np, g, w, geom)
    dw = C.conv_weight_grad(np, x, g, w.shape, geom, cols)
    D.ENABLED = False
    try:
        y0, cols0 = C.conv_forward(np, x, w, None, geom)
        dx0 = C.conv_input_grad(np, g, w, geom)
        dw0 = C.conv_weight_grad(np, x, g, w.shape, geom, cols0)
    finally:
        D.ENABLED = True
    for a, e in ((y, y0), (dx, dx0), (dw, dw0)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_strided_gradcheck(monkeypatch):
    monkeypatch.setattr(D, "MAX_WASTE", 10.0)  # a small input: the direct paths all the same
    rng = np.random.default_rng(8)
    x = ember.tensor(rng.standard_normal((1, 8, 5, 7)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((8, 8, 3, 3)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(8), requires_grad=True)
    geom = _strided_geom(tuple(x.shape), tuple(w.shape), 1, 2, 1)
    g = np.zeros((1, 8) + geom.out_size)
    assert D.use_direct(np, x.detach().numpy(), tuple(w.shape), geom)
    assert D.use_direct_input_grad(np, g, tuple(w.shape), geom)

    def fn(x, w, b):
        return ember.nn.functional.conv2d(x, w, b, stride=2, padding=1)

    assert ember.autograd.gradcheck(fn, (x, w, b))
    # double backward (ConvTranspose / ConvWeightGrad at stride 2) with w fixed: cheaper
    assert ember.autograd.gradgradcheck(lambda x, b: fn(x, w.detach(), b), (x, b))


@pytest.mark.full  # compiling the two parallel variants takes ~16 s on a cold numba cache
def test_strided_two_threads_kernel_parts(monkeypatch):
    # conv_split runs a few-channel convolution in one part; the direct kernels then run their
    # parallel variants: the same results as one thread
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    from ember.ops import conv_direct_fused

    monkeypatch.setattr(D, "THREADED", True)
    monkeypatch.setattr(D, "MIN_KERNEL_MACS", 1)
    # (small: conv_split would run it as at one thread)
    monkeypatch.setattr("ember.ops.conv_split.MIN_THREADED_MACS", 1)
    monkeypatch.setattr(conv_direct_fused, "ENABLED", False)  # (its own: test_conv_s21.py)
    calls = []
    for name in ("forward_par", "weight_grad_cl_par"):
        real = getattr(D._k, name)
        monkeypatch.setattr(D._k, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 16, 8, 62)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    g = rng.standard_normal((4, 32, 4, 31)).astype(np.float32)
    one = _strided_step(ember, x, w, b, g, 1, 2, 1)
    assert not calls
    set_num_threads(2)
    two = _strided_step(ember, x, w, b, g, 1, 2, 1)
    # forward, the input gradient's four stride phases, the weight gradient
    assert calls == ["forward_par"] * 5 + ["weight_grad_cl_par"]
    import numba

    assert numba.threading_layer() == "tbb"  # the parallel kernels run only on TBB
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_direct_shapes_run_one_part_at_two_threads(monkeypatch):
    # a deep direct convolution that conv_split would cut in two: one part instead, whose
    # kernels may run their parallel variants (test_strided_two_threads_kernel_parts, full)
    from ember.backend import mkl_gemm
    from ember.ops import conv_split

    if not mkl_gemm.enabled():
        pytest.skip("MKL is not installed: no parts")
    monkeypatch.setattr(conv_split, "MIN_PART_MACS", 1)
    monkeypatch.setattr(D, "MIN_KERNEL_MACS", 1 << 62)  # serial kernels: no parallel compile
    x = np.zeros((4, 64, 8, 62), np.float32)
    w = np.zeros((64, 64, 3, 3), np.float32)
    set_num_threads(2)
    y, cols = C.conv_forward(np, x, w, None, _geom(x.shape, w.shape, 1))
    assert isinstance(cols, D.DirectCols)
    monkeypatch.setattr(D, "THREADED", False)
    y, cols = C.conv_forward(np, x, w, None, _geom(x.shape, w.shape, 1))
    assert isinstance(cols, conv_split.SplitCols)
