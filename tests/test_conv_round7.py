"""Convolution at two threads (issue 23, session 22, h8): the strided input gradient of the
direct kernels fused one sample at a time (g's padded layout, every stride phase's kernels
and the scatter into dx; core/ops/_numba_conv_fused_ig.py), and the fused loops' run tables
as uint64 (``conv_direct_fused.UNSIGNED``): the same results as the paths they replace,
inf / nan carried as before, all gradients against torch in float32 and float64 at two
threads, gradcheck, the selection rules."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend.threads import set_num_threads
from ember.ops import conv as C
from ember.ops import conv_direct as D
from ember.ops import conv_direct_fused as FZ

pytestmark = pytest.mark.skipif(not FZ.available(), reason="numba is not installed")


from _parity import one_thread  # noqa: E402, F401  (autouse: ember on one thread)


@pytest.fixture
def fused_serial(monkeypatch):
    """The fused paths as at two kernel threads, their serial kernels (no compile of the
    parallel variants), from any size."""
    monkeypatch.setattr(D, "kernel_threads", lambda: 2)
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    monkeypatch.setattr(FZ, "MIN_PAR_MACS", 1)


def _geom(x_shape, w_shape, pad, stride=1, dilation=1):
    nd = len(w_shape) - 2
    st = stride if isinstance(stride, tuple) else (stride,) * nd
    return C.ConvGeom(st, ((pad, pad),) * nd, (dilation,) * nd, 1, w_shape[2:], x_shape[2:])


# (x shape, w shape, padding, stride, dilation)
STRIDED = [
    ((2, 16, 17, 19), (32, 16, 3, 3), 1, 2, 1),
    ((2, 8, 16, 16), (8, 8, 3, 3), 1, 3, 1),  # stride 3
    ((2, 8, 13, 14), (16, 8, 2, 2), 0, 3, 1),  # phases with no tap: dx zeroed first
    ((2, 8, 20, 21), (8, 8, 3, 3), 2, 2, 2),  # dilation 2
    ((2, 8, 12, 13), (8, 8, 3, 4), 1, (1, 2), 1),  # stride (1, 2)
    ((2, 16, 9, 10, 11), (8, 16, 3, 3, 3), 1, 2, 1),  # 3-D
]


def _sid(c):
    return "x".join(map(str, c[1])) + f"-s{c[3]}-d{c[4]}".replace(" ", "")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", STRIDED, ids=_sid)
def test_fused_input_grad_same_as_numpy_passes(case, dtype, monkeypatch, fused_serial):
    x_shape, w_shape, pad, stride, dil = case
    rng = np.random.default_rng(1)
    w = rng.standard_normal(w_shape).astype(dtype)
    geom = _geom(x_shape, w_shape, pad, stride, dil)
    g = rng.standard_normal((x_shape[0], w_shape[0]) + geom.out_size).astype(dtype)
    g[0, 1, 2, 3] = np.inf  # carried into dx as by the NumPy passes
    g[1, 0, 1, 1] = np.nan
    assert FZ.use_fused_input_grad(g, w_shape, geom)
    calls = []
    real = FZ.fused_input_grad
    monkeypatch.setattr(FZ, "fused_input_grad", lambda *a: calls.append(1) or real(*a))
    new = D.direct_input_grad(g, w, geom)
    monkeypatch.setattr(FZ, "INPUT_GRAD", False)
    old = D.direct_input_grad(g, w, geom)
    assert calls == [1]
    assert not np.isfinite(old).all()
    np.testing.assert_array_equal(new, old)  # the same kernels, sums in the same order


def test_fused_input_grad_selection_rules(monkeypatch):
    g = np.zeros((4, 32, 16, 16), np.float32)
    geom = _geom((4, 16, 32, 32), (32, 16, 3, 3), 1, 2)
    x = np.zeros((4, 16, 32, 32), np.float32)
    assert FZ.use_fused_input_grad(g, (32, 16, 3, 3), geom)  # one thread: ONE_THREAD
    assert FZ.use_fused(x, 32, geom)
    x3 = np.zeros((2, 16, 16, 16, 16), np.float32)  # 3-D: NumPy's passes at one thread
    assert not FZ.use_fused(x3, 32, _geom(x3.shape, (32, 16, 3, 3, 3), 1))
    monkeypatch.setattr(FZ, "ONE_THREAD", False)
    assert not FZ.use_fused_input_grad(g, (32, 16, 3, 3), geom)  # NumPy's passes
    assert not FZ.use_fused(x, 32, geom)
    monkeypatch.setattr(D, "kernel_threads", lambda: 2)
    assert FZ.use_fused_input_grad(g, (32, 16, 3, 3), geom)
    assert not FZ.use_fused_input_grad(g[:1], (32, 16, 3, 3), geom)  # fewer samples
    monkeypatch.setattr(FZ, "MIN_PAR_MACS", 1 << 40)
    assert not FZ.use_fused_input_grad(g, (32, 16, 3, 3), geom)
    monkeypatch.setattr(FZ, "MIN_PAR_MACS", 1)
    for switch in ("INPUT_GRAD", "ENABLED"):
        monkeypatch.setattr(FZ, switch, False)
        assert not FZ.use_fused_input_grad(g, (32, 16, 3, 3), geom)
        monkeypatch.setattr(FZ, switch, True)


# (x shape, w shape, padding, stride): the fused forward and widen with int64 / uint64 runs
FORWARD = [
    ((3, 3, 17, 19), (16, 3, 3, 3), 1, 1),
    ((2, 16, 17, 19), (32, 16, 3, 3), 1, 2),
    ((2, 16, 6, 7, 8), (16, 16, 3, 3, 3), 1, 1),
]


@pytest.mark.parametrize("case", FORWARD, ids=lambda c: "x".join(map(str, c[1])) + f"-s{c[3]}")
def test_unsigned_runs_same_results(case, monkeypatch):
    x_shape, w_shape, pad, stride = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    x[0, 0, 1, 1] = np.inf
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    geom = _geom(x_shape, w_shape, pad, stride)
    ph, npl, _, _, qpad, _ = D._plan(x.shape, 4, geom)
    g = rng.standard_normal((x_shape[0], w_shape[0]) + geom.out_size).astype(np.float32)
    out = {}
    for unsigned in (False, True):
        monkeypatch.setattr(FZ, "UNSIGNED", unsigned)
        y, cols = FZ.fused_forward(x, w, b, geom, keep=True)
        wide = FZ.widen(g, npl, qpad, ph[-1], geom.out_size)
        out[unsigned] = (y, cols.xf if cols.xcl is None else cols.xcl, wide)
    for a, e in zip(out[True], out[False]):
        np.testing.assert_array_equal(a, e)


def _step(lib, x, w, b, g, pad, stride):
    xt, wt, bt = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
    conv = getattr(lib.nn.functional, f"conv{x.ndim - 2}d")
    y = conv(xt, wt, bt, padding=pad, stride=stride)
    y.backward(lib.tensor(g))
    return [np.asarray(t.detach().numpy()) for t in (y, xt.grad, wt.grad, bt.grad)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_threads_against_torch(dtype, monkeypatch):
    # at two threads a strided direct convolution runs in one part (conv_split), its input
    # gradient by the fused kernel (serial kernels here: no compile of the parallel variants)
    torch = pytest.importorskip("torch")
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    monkeypatch.setattr(D, "_parallel_ok", lambda: False)
    monkeypatch.setattr(FZ, "MIN_PAR_MACS", 1)
    rng = np.random.default_rng(3)
    x_shape = (8, 16, 32, 32)  # (3-D stride 2 keeps GEMM + col2im at two threads)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    out = [(n + 2 - 3) // 2 + 1 for n in x_shape[2:]]
    g = rng.standard_normal([x_shape[0], 32] + out).astype(dtype)
    calls = []
    real = FZ.fused_input_grad
    monkeypatch.setattr(FZ, "fused_input_grad", lambda *a: calls.append(1) or real(*a))
    set_num_threads(2)
    got = _step(ember, x, w, b, g, 1, 2)
    assert calls == [1]
    want = _step(torch, x, w, b, g, 1, 2)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())


def test_fused_input_grad_gradcheck(fused_serial, monkeypatch):
    rng = np.random.default_rng(4)
    x = ember.tensor(rng.standard_normal((2, 8, 16, 16)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((8, 8, 3, 3)), requires_grad=True)
    calls = []
    real = FZ.fused_input_grad
    monkeypatch.setattr(FZ, "fused_input_grad", lambda *a: calls.append(1) or real(*a))
    fn = lambda x, w: ember.nn.functional.conv2d(x, w, stride=2, padding=1)  # noqa: E731
    assert ember.autograd.gradcheck(fn, (x, w))
    assert calls  # dx by the fused kernel


@pytest.mark.full  # compiling the parallel variants takes several seconds on a cold cache
def test_two_threads_parallel_fused_input_grad(monkeypatch):
    from ember.backend import mkl_gemm
    from ember.ops import conv_split as _cs

    if not (_cs.DIRECT_WITHOUT_MKL or mkl_gemm.enabled()):  # (session 23: no MKL needed)
        pytest.skip("MKL is not installed: conv_split keeps the threaded GEMM paths")
    # (small: conv_split would run it as at one thread)
    monkeypatch.setattr(_cs, "MIN_THREADED_MACS", 1)
    FZ._ig_available()
    calls = []
    real = FZ._fi.input_grad_par
    monkeypatch.setattr(FZ._fi, "input_grad_par", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    g = rng.standard_normal((8, 32, 16, 16)).astype(np.float32)
    one = _step(ember, x, w, b, g, 1, 2)
    assert not calls
    set_num_threads(2)
    two = _step(ember, x, w, b, g, 1, 2)
    assert calls == [1]
    for a, e in zip(one, two):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())
