"""Convolution round 5 (issue 23, session 21): the fused direct forward (layout, kernels and
crop one sample at a time, core/ops/conv_direct_fused.py) and the input gradient of
convolutions whose input channels are not a multiple of 8 by the direct kernel with padded
channels (core/ops/conv_direct_narrow.py): the same results as the paths they replace,
forward and all gradients against torch in float32 and float64, gradcheck, the selection
rules, two threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.backend.threads import set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D
from ember.ops import conv_direct_fused as FZ
from ember.ops import conv_direct_narrow as NW

pytestmark = pytest.mark.skipif(not FZ.available(), reason="numba is not installed")


from _parity import one_thread  # noqa: E402, F401  (autouse: ember on one thread)


def _geom(x_shape, w_shape, pad, stride=1, dilation=1):
    nd = len(w_shape) - 2
    st = stride if isinstance(stride, tuple) else (stride,) * nd
    return C.ConvGeom(st, ((pad, pad),) * nd, (dilation,) * nd, 1, w_shape[2:], x_shape[2:])


def _step(lib, x, w, b, g, pad, stride=1, dilation=1):
    xt = lib.tensor(x, requires_grad=True)
    wt = lib.tensor(w, requires_grad=True)
    bt = None if b is None else lib.tensor(b, requires_grad=True)
    conv = getattr(lib.nn.functional, f"conv{x.ndim - 2}d")
    y = conv(xt, wt, bt, padding=pad, stride=stride, dilation=dilation)
    y.backward(lib.tensor(g))
    out = [y, xt.grad, wt.grad] + ([] if b is None else [bt.grad])
    return [np.asarray(t.detach().numpy()) for t in out]


# (x shape, w shape, padding, stride, dilation)
FUSED = [
    ((3, 16, 17, 19), (16, 16, 3, 3), 1, 1, 1),
    ((2, 16, 17, 19), (32, 16, 3, 3), 1, 2, 1),  # stride phases
    ((2, 8, 9, 10, 11), (8, 8, 3, 3, 3), 1, 2, 1),  # 3-D, stride 2
    ((2, 16, 6, 7, 8), (16, 16, 3, 3, 3), 1, 1, 1),  # 3-D
    ((3, 8, 20, 21), (16, 8, 3, 3), 2, 1, 2),  # dilation 2
    ((2, 8, 12, 13), (8, 8, 2, 4), 0, (1, 2), 1),  # even kernel, no padding, stride (1, 2)
]


def _fid(c):
    return "x".join(map(str, c[1])) + f"-s{c[3]}-d{c[4]}".replace(" ", "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FUSED, ids=_fid)
def test_fused_forward_same_as_numpy_passes(case, dtype, monkeypatch):
    x_shape, w_shape, pad, stride, dil = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    geom = _geom(x_shape, w_shape, pad, stride, dil)  # (any waste: the kernels run anyway)
    monkeypatch.setattr(FZ, "ENABLED", False)
    y0, cols0 = D.direct_forward(x, w, b, geom, keep=True)
    y0n, _ = D.direct_forward(x, w, None, geom)
    for bias, ref in ((b, y0), (None, y0n)):  # the serial fused kernel (one thread)
        y1, cols1 = FZ.fused_forward(x, w, bias, geom, keep=True)
        np.testing.assert_array_equal(y1, ref)  # the same kernels, sums in the same order
    lanes = D.GVEC_BYTES // x.dtype.itemsize
    if w_shape[1] % lanes == 0:  # kept channels-last for the weight gradient's kernel
        assert cols1.xf is None
        np.testing.assert_array_equal(cols1.xcl, cols0.xf.transpose(0, 2, 1))
    else:
        assert cols1.xcl is None
        np.testing.assert_array_equal(cols1.xf, cols0.xf)  # zeros in the padding and tail
    # the weight gradient from the fused forward's cols, g widened by the compiled loop
    g = rng.standard_normal(y0.shape).astype(dtype)
    gw0 = D.direct_weight_grad(x, g, w_shape, geom, cols0)
    ph, npl, _, q, qpad, _ = D._plan(x.shape, x.dtype.itemsize, geom)
    wide = np.zeros((g.shape[0], g.shape[1], npl, qpad), dtype=dtype)
    D._crop(wide, npl, q, ph[-1], geom.out_size)[...] = g
    np.testing.assert_array_equal(FZ.widen(g, npl, qpad, ph[-1], geom.out_size), wide)
    monkeypatch.setattr(FZ, "ENABLED", True)
    monkeypatch.setattr(D, "kernel_threads", lambda: 2)  # (serial kernels: _parallel_ok)
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    gw1 = D.direct_weight_grad(x, g, w_shape, geom, cols1)
    np.testing.assert_array_equal(gw1, gw0)


def test_fused_selection_rules(monkeypatch):
    x = np.zeros((4, 16, 32, 32), np.float32)
    geom = _geom(x.shape, (16, 16, 3, 3), 1)
    monkeypatch.setattr(FZ, "ONE_THREAD", False)  # (session 22: True, the fused loops)
    assert not FZ.use_fused(x, 16, geom)  # one thread: NumPy's passes
    monkeypatch.setattr(D, "kernel_threads", lambda: 2)
    assert FZ.use_fused(x, 16, geom)
    assert not FZ.use_fused(x[:1], 16, geom)  # fewer samples than threads
    monkeypatch.setattr(FZ, "MIN_PAR_MACS", 1 << 40)
    assert not FZ.use_fused(x, 16, geom)
    monkeypatch.setattr(FZ, "MIN_PAR_MACS", 1)
    monkeypatch.setattr(FZ, "ENABLED", False)
    assert not FZ.use_fused(x, 16, geom)


# (x shape, w shape, padding, dilation): input channels not a multiple of 8
NARROW = [
    ((2, 3, 12, 13), (16, 3, 3, 3), 1, 1),  # a first layer, RGB
    ((2, 5, 20, 24), (8, 5, 3, 3), 2, 2),  # dilation 2
    ((1, 12, 6, 8, 14), (16, 12, 3, 3, 3), 1, 1),  # 3-D, 12 -> 16 channels
    ((2, 3, 20, 18), (8, 3, 5, 5), 0, 1),  # no padding
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", NARROW, ids=lambda c: "x".join(map(str, c[1])) + f"-d{c[3]}")
def test_padded_input_grad_against_torch(case, dtype, monkeypatch):
    x_shape, w_shape, pad, dil = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) * 0.1).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    geom = _geom(x_shape, w_shape, pad, 1, dil)
    g = rng.standard_normal((x_shape[0], w_shape[0]) + geom.out_size).astype(dtype)
    assert NW.use_padded_input_grad(np, g, w_shape, geom)
    calls = []
    real = NW.padded_input_grad
    monkeypatch.setattr(NW, "padded_input_grad", lambda *a: calls.append(1) or real(*a))
    got = _step(ember, x, w, b, g, pad, 1, dil)
    assert calls
    want = _step(torch, x, w, b, g, pad, 1, dil)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
    monkeypatch.setattr(NW, "ENABLED", False)  # GEMM + col2im: the same to rounding
    dx0 = C.conv_input_grad(np, g, w, geom)
    np.testing.assert_allclose(real(g, w, geom), dx0, rtol=tol, atol=tol * np.abs(dx0).max())


def test_padded_input_grad_gradcheck():
    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((1, 3, 8, 14)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((8, 3, 3, 3)), requires_grad=True)
    geom = _geom(x.shape, w.shape, 1)
    assert NW.use_padded_input_grad(np, np.zeros((1, 8, 8, 14)), w.shape, geom)
    fn = lambda x, w: ember.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
    assert ember.autograd.gradcheck(fn, (x, w))


def test_padded_input_grad_selection_rules():
    g = np.zeros((2, 16, 16, 16), np.float32)
    use = lambda w_shape, **kw: NW.use_padded_input_grad(  # noqa: E731
        np, g, w_shape, _geom((2, w_shape[1], 16, 16), w_shape, 1, **kw)
    )
    assert use((16, 3, 3, 3))
    assert not use((16, 8, 3, 3))  # a multiple of 8: the direct transpose as before
    assert not use((16, 2, 3, 3))  # 2 -> 8: four times the multiply-adds
    assert not use((16, 3, 3, 3), stride=2)
    assert not use((16, 3, 1, 1))  # one tap (use_direct)
    assert not NW.use_padded_input_grad(
        np, g.astype(np.int64), (16, 3, 3, 3), _geom(g.shape, (16, 3, 3, 3), 1)
    )
    set_num_threads(2)
    assert not use((16, 3, 3, 3))  # conv_split hands it one thread in one part


def _two_thread_case():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    g = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    return x, w, b, g


def test_two_threads_fused_path(monkeypatch):
    # at two threads a direct convolution runs in one part with the fused forward (serial
    # kernels here: no compile of the parallel variants); the same results as one thread
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    x, w, b, g = _two_thread_case()
    one = _step(ember, x, w, b, g, 1)
    calls = []
    real = FZ.fused_forward
    monkeypatch.setattr(FZ, "fused_forward", lambda *a: calls.append(1) or real(*a))
    set_num_threads(2)
    two = _step(ember, x, w, b, g, 1)
    assert len(calls) == 2  # the forward and the input gradient
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


@pytest.mark.full  # compiling the parallel variants takes several seconds on a cold cache
def test_two_threads_parallel_fused_kernels(monkeypatch):
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    # (small: conv_split would run it as at one thread)
    monkeypatch.setattr(_cs, "MIN_THREADED_MACS", 1)
    calls = []
    for name in ("forward_par", "widen_par"):
        real = getattr(FZ._f, name)
        monkeypatch.setattr(FZ._f, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    x, w, b, g = _two_thread_case()
    one = _step(ember, x, w, b, g, 1)
    assert not calls
    set_num_threads(2)
    two = _step(ember, x, w, b, g, 1)
    assert sorted(calls) == ["forward_par"] * 2 + ["widen_par"]
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


# depthwise 3x3 at stride 1 (core/ops/_numba_depthwise_k3.py): (x shape, padding, dilation)
DEPTHWISE = [
    ((2, 8, 16, 16), 1, 1),
    ((2, 4, 9, 13), 0, 1),  # no padding
    ((3, 4, 12, 11), 2, 2),  # dilation 2
    ((2, 4, 10, 10), 3, 1),  # padding past the kernel: the input gradient keeps its scatter
]


def _dw_step(lib, x, w, b, g, pad, dil):
    xt, wt, bt = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
    y = lib.nn.functional.conv2d(xt, wt, bt, padding=pad, dilation=dil, groups=x.shape[1])
    y.backward(lib.tensor(g))
    return [np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad, bt.grad)]


def _dw_case(x_shape, pad, dil, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((x_shape[1], 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(x_shape[1]).astype(dtype)
    out = tuple(n + 2 * pad - 2 * dil for n in x_shape[2:])
    g = rng.standard_normal(x_shape[:2] + out).astype(dtype)
    return x, w, b, g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: "x".join(map(str, c[0])) + f"-p{c[1]}")
def test_depthwise_k3_against_torch(case, dtype, monkeypatch):
    from ember.ops import _numba_depthwise_k3 as K3
    from ember.ops import conv_depthwise as DW

    x_shape, pad, dil = case
    x, w, b, g = _dw_case(x_shape, pad, dil, dtype)
    monkeypatch.setattr(DW, "FUSED", False)  # these kernels (the fused ones: test_conv_s24)
    calls = []
    for name in ("forward_s1", "weight_grad_s1"):
        real = getattr(K3, name)
        monkeypatch.setattr(K3, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    got = _dw_step(ember, x, w, b, g, pad, dil)
    via_forward = pad <= 2 * dil  # the input gradient as the flipped kernel's forward
    assert sorted(calls) == ["forward_s1"] * (1 + via_forward) + ["weight_grad_s1"]
    want = _dw_step(torch, x, w, b, g, pad, dil)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
    monkeypatch.setattr(DW, "K3", False)  # the per-tap kernels: the same to rounding
    for a, e in zip(got, _dw_step(ember, x, w, b, g, pad, dil)):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())


def test_depthwise_k3_selection():
    from ember.ops import conv_depthwise as DW

    geom = lambda k, s: C.ConvGeom((s, s), ((1, 1),) * 2, (1, 1), 4, k, (8, 8))  # noqa: E731
    assert DW._use_k3(geom((3, 3), 1))
    assert not DW._use_k3(geom((3, 3), 2))  # strided: the per-tap kernels
    assert not DW._use_k3(geom((5, 5), 1))


def test_depthwise_k3_two_threads(monkeypatch):
    # at two threads the kernels go through conv_direct._call (serial variants here: no
    # compile of the parallel ones); the same results as one thread
    from ember.ops import conv_depthwise as DW

    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    monkeypatch.setattr(DW, "K3_MIN_PAR", 1)
    x, w, b, g = _dw_case((4, 8, 16, 16), 1, 1, np.float32)
    one = _dw_step(ember, x, w, b, g, 1, 1)
    set_num_threads(2)
    two = _dw_step(ember, x, w, b, g, 1, 1)
    for a, e in zip(one, two):
        np.testing.assert_array_equal(a, e)


@pytest.mark.full  # compiling the parallel variants takes several seconds on a cold cache
def test_depthwise_k3_parallel_kernels(monkeypatch):
    from ember.ops import _numba_depthwise_k3 as K3
    from ember.ops import conv_depthwise as DW

    monkeypatch.setattr(DW, "K3_MIN_PAR", 1)
    monkeypatch.setattr(DW, "FUSED", False)  # these kernels (the fused ones: test_conv_s24)
    calls = []
    for name in ("forward_s1_par", "weight_grad_s1_par"):
        real = getattr(K3, name)
        monkeypatch.setattr(K3, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    x, w, b, g = _dw_case((4, 8, 16, 16), 1, 1, np.float32)
    one = _dw_step(ember, x, w, b, g, 1, 1)
    set_num_threads(2)
    two = _dw_step(ember, x, w, b, g, 1, 1)
    assert sorted(calls) == ["forward_s1_par"] * 2 + ["weight_grad_s1_par"]
    for a, e in zip(one, two):
        np.testing.assert_array_equal(a, e)  # the same sums, plane by plane


# 1-D convolutions as 2-D ones (core/ops/conv_lift.py): (n, c_in, c_out, length, k, stride,
# padding, groups, lifted?)
ONE_D = [
    (2, 16, 16, 120, 3, 1, 1, 1, True),  # the direct kernel
    (2, 64, 64, 30, 5, 1, 2, 1, True),  # the channels-last direct kernel
    (2, 8, 8, 40, 3, 1, 1, 8, True),  # depthwise
    (2, 16, 32, 120, 5, 2, 2, 1, True),  # stride 2
    (2, 12, 20, 33, 3, 1, 1, 1, False),  # 20 output channels: the 1-D GEMM path
]


def _step1d(lib, x, w, b, g, stride, pad, groups):
    xt, wt, bt = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
    y = lib.nn.functional.conv1d(xt, wt, bt, stride=stride, padding=pad, groups=groups)
    y.backward(lib.tensor(g))
    return [np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ONE_D, ids=lambda c: f"{c[1]}-{c[2]}-L{c[3]}-k{c[4]}-g{c[7]}")
def test_lifted_1d_against_torch(case, dtype, monkeypatch):
    from ember.ops import conv_lift as LF

    n, c, o, length, k, stride, pad, groups, lifted = case
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n, c, length)).astype(dtype)
    w = (rng.standard_normal((o, c // groups, k)) * 0.1).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    geom = _geom(x.shape, w.shape, pad, stride)
    geom.groups = groups
    assert LF.liftable(np, x, w.shape, geom) == lifted
    out = (length + 2 * pad - k) // stride + 1
    g = rng.standard_normal((n, o, out)).astype(dtype)
    got = _step1d(ember, x, w, b, g, stride, pad, groups)
    want = _step1d(torch, x, w, b, g, stride, pad, groups)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, e in zip(got, want):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
    monkeypatch.setattr(LF, "ENABLED", False)  # the 1-D paths: the same to rounding
    for a, e in zip(got, _step1d(ember, x, w, b, g, stride, pad, groups)):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())


def test_lifted_1d_double_backward():
    # the Function keeps its 1-D geometry: double backward runs the 1-D Functions
    rng = np.random.default_rng(9)
    x = ember.tensor(rng.standard_normal((1, 16, 40)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((16, 16, 3)), requires_grad=True)
    fn = lambda x, w: ember.nn.functional.conv1d(x, w, padding=1)  # noqa: E731
    assert ember.autograd.gradgradcheck(fn, (x, w))


def test_lifted_1d_two_threads(monkeypatch):
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 16, 96)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    g = rng.standard_normal((4, 16, 96)).astype(np.float32)
    one = _step1d(ember, x, w, b, g, 1, 1, 1)
    set_num_threads(2)
    two = _step1d(ember, x, w, b, g, 1, 1, 1)
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())
