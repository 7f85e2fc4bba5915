"""The channels-last direct convolution (core/ops/conv_direct_cl.py): forward, input gradient
and weight gradient against torch at the shapes that select it (small planes with many
channels, stride 2 with small outputs, 3-D, dilation), float32 and float64, gradcheck, the
selection rules, the transposed convolution, two threads (issue 23, session 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.backend.threads import set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D
from ember.ops import conv_direct_cl as CL

pytestmark = pytest.mark.skipif(not CL.available(), reason="numba is not installed")


from _parity import one_thread  # noqa: E402, F401  (autouse: ember on one thread)


def _geom(x_shape, w_shape, pad, stride=1, dilation=1, groups=1):
    nd = len(w_shape) - 2
    return C.ConvGeom(
        (stride,) * nd,
        ((pad, pad),) * nd,
        (dilation,) * nd,
        groups,
        w_shape[2:],
        x_shape[2:],
    )


def _step(lib, x, w, b, g, pad, stride, dilation):
    xt = lib.tensor(x, requires_grad=True)
    wt = lib.tensor(w, requires_grad=True)
    bt = None if b is None else lib.tensor(b, requires_grad=True)
    conv = getattr(lib.nn.functional, f"conv{x.ndim - 2}d")
    y = conv(xt, wt, bt, padding=pad, stride=stride, dilation=dilation)
    y.backward(lib.tensor(g))
    out = [y, xt.grad, wt.grad] + ([] if b is None else [bt.grad])
    return [np.asarray(t.detach().numpy()) for t in out]


# (x shape, w shape, padding, stride, dilation, bias, the input gradient by this kernel too?
# None: depends on the dtype's vector width)
CASES = [
    ((2, 128, 8, 8), (128, 128, 3, 3), 1, 1, 1, True, True),  # 8^2: no wide-row waste
    ((2, 32, 7, 7), (64, 32, 3, 3), 1, 1, 1, True, None),  # 7^2: 49 positions a sample
    ((2, 32, 16, 15), (64, 32, 3, 3), 1, 2, 1, False, False),  # stride 2, 8 x 8 outputs
    ((1, 16, 9, 8, 7), (64, 16, 3, 3, 3), 1, 2, 1, True, False),  # 3-D, stride 2
    ((2, 64, 9, 9), (64, 64, 3, 3), 2, 1, 2, True, True),  # dilation 2
    ((3, 64, 6, 7), (128, 64, 3, 2), 1, 1, 1, True, None),  # even kernel, 192 <= 2 * 64
    # 256 input channels: the weight gradient by conv_cl's columns from the kept input and a
    # GEMM; the input gradient here though g has fewer columns (25) than w has rows
    ((1, 256, 5, 5), (64, 256, 3, 3), 1, 1, 1, True, True),
]


def _ids(c):
    return "x".join(map(str, c[1])) + f"-s{c[3]}-d{c[4]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_against_torch(case, dtype, monkeypatch):
    x_shape, w_shape, pad, stride, dil, bias, via_dx = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) * 0.1).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    geom = _geom(x_shape, w_shape, pad, stride, dil)
    if dtype == np.float64 and D.use_direct(np, x, w_shape, geom):
        # float64 vectors of 16 outputs fit 8^2 planes' wide rows to 1.25: conv_direct's
        # kernels take it first; off here to test this kernel in float64 too
        monkeypatch.setattr(D, "ENABLED", False)
    assert CL.use_direct_cl(np, x, w_shape, geom)
    calls = []
    for name in ("direct_cl_forward", "direct_cl_weight_grad"):
        real = getattr(CL, name)
        monkeypatch.setattr(
            CL, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k)
        )
    y = C.conv_forward(np, x, w, b, geom)[0]
    g = rng.standard_normal(y.shape).astype(dtype)
    calls.clear()
    got = _step(ember, x, w, b, g, pad, stride, dil)
    assert calls.count("direct_cl_weight_grad") == (w_shape[1] <= CL.WGRAD_MAX_IN)
    if via_dx is not None:
        assert calls.count("direct_cl_forward") == (2 if via_dx else 1)
    want = _step(torch, x, w, b, g, pad, stride, dil)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for a, e, name in zip(got, want, ("y", "dx", "dw", "db")):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max(), err_msg=name)


def test_same_as_gemm_path_to_rounding(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 96, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((64, 96, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal((3, 64, 8, 8)).astype(np.float32)
    new = _step(ember, x, w, b, g, 1, 1, 1)
    monkeypatch.setattr(CL, "CL_WGRAD", False)  # the weight gradient from gathered columns
    gathered = _step(ember, x, w, b, g, 1, 1, 1)
    monkeypatch.setattr(CL, "ENABLED", False)
    old = _step(ember, x, w, b, g, 1, 1, 1)
    for a, m, e in zip(new, gathered, old):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())
        np.testing.assert_allclose(m, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_gradcheck():
    rng = np.random.default_rng(2)
    # float64: vectors of 32 output channels, 16 input channels (the least); a 2 x 1 kernel
    # keeps the weight small for the numerical Jacobian; 5 positions a row
    x = ember.tensor(rng.standard_normal((1, 16, 2, 5)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((32, 16, 2, 1)) * 0.3, requires_grad=True)
    b = ember.tensor(rng.standard_normal(32), requires_grad=True)
    geom = _geom(tuple(x.shape), tuple(w.shape), 1)
    assert CL.use_direct_cl(np, x.detach().numpy(), tuple(w.shape), geom)

    def fn(x, w, b):
        return ember.nn.functional.conv2d(x, w, b, padding=1)

    assert ember.autograd.gradcheck(fn, (x, w, b))
    wd = w.detach()
    assert ember.autograd.gradgradcheck(lambda x, b: fn(x, wd, b), (x, b))


def test_conv_transpose_against_torch():
    # the transposed convolution's backward runs conv_forward on g (this kernel) and the
    # weight gradient from its kept channels-last input (ClCols)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.1).astype(np.float32)
    g = rng.standard_normal((2, 64, 8, 8)).astype(np.float32)
    res = []
    for lib in (ember, torch):
        xt = lib.tensor(x, requires_grad=True)
        wt = lib.tensor(w, requires_grad=True)
        y = lib.nn.functional.conv_transpose2d(xt, wt, padding=1)
        y.backward(lib.tensor(g))
        res.append([np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad)])
    for a, e in zip(*res):
        np.testing.assert_allclose(a, e, rtol=2e-4, atol=2e-4 * np.abs(e).max())


def test_inf_input_matches_torch():
    # the weight gradient's last block of channels reads past the channels (dropped sums)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 40, 8, 8)).astype(np.float32)
    x[0, 39, 7, 7] = np.inf
    x[0, 0, 3, 4] = np.inf
    w = (rng.standard_normal((32, 40, 3, 3)) * 0.1).astype(np.float32)
    g = np.zeros((1, 32, 8, 8), np.float32)
    g[0, :, 0, 0] = 1.0  # a window that sees neither inf
    got = _step(ember, x, w, None, g, 1, 1, 1)
    want = _step(torch, x, w, None, g, 1, 1, 1)
    for a, e in zip(got, want):
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(e))
        fin = np.isfinite(e)
        np.testing.assert_allclose(a[fin], e[fin], rtol=1e-4, atol=1e-4)


def test_selection_rules():
    def use(w_shape, size=8, c=None, stride=1, pad=1, groups=1, dtype=np.float32):
        c = w_shape[1] * groups if c is None else c
        nd = len(w_shape) - 2
        x = np.zeros((2, c) + (size,) * nd, dtype)
        return CL.use_direct_cl(np, x, w_shape, _geom(x.shape, w_shape, pad, stride, 1, groups))

    assert use((128, 128, 3, 3))
    assert use((64, 32, 3, 3), size=7)
    assert use((32, 16, 3, 3), size=7, dtype=np.float64)  # vectors of 32 float64 outputs
    assert use((32, 16, 3, 3))  # float32: 32 output channels, the tail kernels (session 22)
    assert not use((64, 8, 3, 3))  # fewer than MIN_IN input channels
    assert not use((64, 320, 3, 3), size=7)  # more than MAX_IN on 2 x 7^2 = 98 positions
    assert use((64, 320, 3, 3), size=9)  # WIDE_MIN_POS+ positions: to MAX_IN_WIDE (session 26)
    assert not use((64, 1040, 3, 3), size=9)
    assert not use((64, 64, 1, 1), pad=0)  # 1x1
    assert not use((64, 64, 3), size=32)  # 1-D
    assert not use((64, 32, 3, 3), groups=2)
    assert not use((64, 64, 3, 3), dtype=np.int32)
    assert not use((16, 16, 3, 3), size=32)  # wide planes, 16 outputs: conv_direct's kernels
    assert use((64, 64, 3, 3), size=16)  # conv_direct's too, but this one is faster there
    assert use((64, 16, 3, 3), size=32)  # 32+ outputs on any plane (session 26)
    assert use((64, 64, 3, 3), size=32)
    assert D.use_direct(
        np,
        np.zeros((2, 16, 32, 32), np.float32),
        (64, 16, 3, 3),
        _geom((2, 16, 32, 32), (64, 16, 3, 3), 1),
    )
    set_num_threads(2)
    assert not use((128, 128, 3, 3))  # conv_split hands it one thread in one part


def test_two_threads_one_part(monkeypatch):
    # at two threads conv_split keeps it in one part (serial kernels here: no compile of the
    # parallel variants); the same results as one thread
    from ember.backend import mkl_gemm
    from ember.ops import conv_split

    if not (conv_split.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    monkeypatch.setattr(D, "MIN_KERNEL_MACS", 1 << 62)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal((4, 64, 8, 8)).astype(np.float32)
    one = _step(ember, x, w, b, g, 1, 1, 1)
    set_num_threads(2)
    monkeypatch.setattr(conv_split, "MIN_PART_MACS", 1)
    _, cols = C.conv_forward(np, x, w, b, _geom(x.shape, w.shape, 1))
    assert isinstance(cols, CL.ClCols)
    two = _step(ember, x, w, b, g, 1, 1, 1)
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


@pytest.mark.full  # compiling the parallel variants takes several seconds on a cold cache
def test_two_threads_parallel_kernels(monkeypatch):
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    monkeypatch.setattr(D, "MIN_KERNEL_MACS", 1)
    # (small: conv_split would run it as at one thread)
    monkeypatch.setattr("ember.ops.conv_split.MIN_THREADED_MACS", 1)
    calls = []
    for name in ("forward_cl_par", "weight_grad_cl_par"):
        real = getattr(CL._k, name)
        monkeypatch.setattr(CL._k, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 64, 7, 7)).astype(np.float32)
    w = (rng.standard_normal((128, 64, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    g = rng.standard_normal((3, 128, 7, 7)).astype(np.float32)
    one = _step(ember, x, w, b, g, 1, 1, 1)
    assert not calls
    set_num_threads(2)
    two = _step(ember, x, w, b, g, 1, 1, 1)
    assert sorted(calls) == ["forward_cl_par"] * 2 + ["weight_grad_cl_par"]
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())
