"""Convolutions at two threads (``ops/conv_split``): the batch as at one thread, or in parts.

In one part (small or shallow convolutions) a convolution at two threads runs the one-thread
algorithms on the calling thread: bitwise the results of one thread. In two, each part runs the
one-thread path of its shape (blocked, channels-last, im2col, 1x1) in ember's worker pool; the
forward and input gradient write the parts' samples into one output, the weight gradient sums
the parts'. Checked against torch (forward and all gradients, float32 and float64, strides,
padding, dilation, groups, 1-D/2-D/3-D), against ember at one thread, by float64 gradcheck /
gradgradcheck, and the selection rules.
"""

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck, gradgradcheck
from ember.backend import mkl_gemm, threads
from ember.ops import conv, conv_blocked, conv_direct, conv_direct_cl, conv_split

torch = pytest.importorskip("torch")


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads with MKL on (the split needs it), two parts from any size; restored after."""
    prev_mkl = mkl_gemm._enabled
    mkl_gemm.set_enabled(True)
    if not mkl_gemm.enabled():
        mkl_gemm._enabled = prev_mkl
        pytest.skip("MKL (or numba) is not installed")
    monkeypatch.setattr(conv_split, "MIN_PART_MACS", 1)
    monkeypatch.setattr(conv_split, "MAX_PARTS", 2)
    monkeypatch.setattr(conv_split, "MIN_PART_ROWS", 0)
    monkeypatch.setattr(conv_split, "MIN_PART_OUT", 0)
    # the GEMM paths in parts; the direct kernel in parts: tests/test_conv_direct.py
    monkeypatch.setattr(conv_direct, "ENABLED", False)
    monkeypatch.setattr(conv_direct_cl, "ENABLED", False)
    before = ember.get_num_threads()
    ember.set_num_threads(2)
    yield
    ember.set_num_threads(before)
    mkl_gemm._enabled = prev_mkl


def _step(lib, nd, arrays, g, **kw):
    ts = [lib.tensor(a, requires_grad=True) for a in arrays]
    y = getattr(lib.nn.functional, f"conv{nd}d")(*ts, **kw)
    y.backward(lib.tensor(g))
    return [y.detach().numpy()] + [t.grad.numpy() for t in ts]


def _arrays(nd, n, ci, co, size, k, dtype, seed=0, groups=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ci) + (size,) * nd).astype(dtype)
    w = (rng.standard_normal((co, ci // groups) + (k,) * nd) * 0.2).astype(dtype)
    b = rng.standard_normal(co).astype(dtype)
    return x, w, b


def _geom(nd, ci, size, k, stride=1, padding=0, dilation=1, groups=1):
    return conv.ConvGeom(
        (stride,) * nd,
        ((padding, padding),) * nd,
        (dilation,) * nd,
        groups,
        (k,) * nd,
        (size,) * nd,
    )


# (nd, N, C_in, C_out, size, kernel, kwargs): each part then takes the path its comment names
CASES = [
    (2, 4, 16, 16, 24, 3, {"padding": 1}),  # blocked (thresholds lowered below), direct dx
    (3, 2, 4, 6, 7, 3, {"padding": 2, "dilation": 2}),  # blocked 3-D, dilated
    (2, 3, 8, 12, 9, 3, {"padding": 1, "stride": 2, "groups": 2}),  # grouped, col2im dx
    (2, 4, 64, 64, 8, 3, {"padding": 1}),  # channels-last columns
    (1, 5, 8, 8, 20, 5, {"padding": 2}),  # 1-D, odd batch: parts of 2 and 3
    (2, 4, 16, 32, 8, 1, {}),  # 1x1: per-sample GEMMs
    (2, 2, 3, 8, 16, 3, {"padding": 1}),  # few input channels: per-sample columns
]
BLOCKED = 2  # the first cases run blocked in each part


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}d-n{c[1]}-{c[2]}-{c[3]}-k{c[5]}")
def test_split_matches_torch_and_one_thread(two_threads, monkeypatch, case, dtype):
    nd, n, ci, co, size, k, kw = case
    if CASES.index(case) < BLOCKED:
        monkeypatch.setattr(conv_blocked, "MIN_COLS_BYTES", 1)
        monkeypatch.setattr(conv_blocked, "BLOCK_BYTES", 4096)
    arrays = _arrays(nd, n, ci, co, size, k, dtype, groups=kw.get("groups", 1))
    x, w, b = arrays
    # the forward does run in parts
    y, cols = conv.conv_forward(np, x, w, b, _geom(nd, ci, size, k, **kw))
    assert isinstance(cols, conv_split.SplitCols) and len(cols.parts) == 2
    blocked = CASES.index(case) < BLOCKED
    assert all((p is None) == blocked for p in cols.parts)  # blocked parts keep no columns
    if ci == 64:
        assert cols.parts[0].ndim == 2  # channels-last (N * L, prod(k) * C)
    f = getattr(torch.nn.functional, f"conv{nd}d")
    g = np.random.default_rng(1).standard_normal(f(*map(torch.tensor, arrays), **kw).shape)
    g = g.astype(dtype)
    ours = _step(ember, nd, arrays, g, **kw)
    ref = _step(torch, nd, arrays, g, **kw)
    ember.set_num_threads(1)
    one = _step(ember, nd, arrays, g, **kw)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for name, a, r, o in zip(("y", "dx", "dw", "db"), ours, ref, one):
        assert a.dtype == r.dtype and a.shape == r.shape, name
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * scale, err_msg=name)
        np.testing.assert_allclose(a, o, rtol=tol, atol=tol * scale, err_msg=name)


def test_split_gradcheck_and_gradgradcheck(two_threads):
    rng = np.random.default_rng(2)
    x = ember.tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(4), requires_grad=True)

    def fn(x, w, b):
        return ember.nn.functional.conv2d(x, w, b, padding=1)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))
    tw = ember.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    assert gradcheck(
        lambda x, w: ember.nn.functional.conv_transpose2d(x, w, stride=2, padding=1), (x, tw)
    )


def test_split_rules(two_threads, monkeypatch):
    monkeypatch.setattr(conv_split, "MIN_PART_MACS", 1 << 25)
    monkeypatch.setattr(conv_split, "MIN_PART_ROWS", 256)
    monkeypatch.setattr(conv_split, "MIN_PART_OUT", 32)
    sb = conv_split.split_bounds
    w = (64, 64, 3, 3)  # 576 column rows, 64 output channels
    assert sb(np, 8, w, (16, 16)) == [0, 4, 8]  # 75 M multiply-adds: two parts
    assert sb(np, 8, w, (8, 8)) == [0, 8]  # 19 M: one part, as at one thread
    assert sb(np, 1, w, (64, 64)) == [0, 1]  # one sample
    assert sb(np, 8, (16, 16, 3, 3), (32, 32)) == [0, 8]  # 144 rows: the gathers dominate
    assert sb(np, 8, (16, 64, 3, 3), (32, 32)) == [0, 8]  # 16 output channels
    monkeypatch.setattr(conv_split, "MAX_PARTS", 1)
    assert sb(np, 8, w, (16, 16)) == [0, 8]
    assert sb(np, 8, (512, 512, 3, 3), (7, 7)) is None  # a large weight: OpenBLAS's threads
    ember.set_num_threads(1)
    assert sb(np, 8, w, (16, 16)) is None
    ember.set_num_threads(2)
    mkl_gemm.set_enabled(False)
    assert sb(np, 8, w, (16, 16)) is None  # OpenBLAS keeps its own threads
    mkl_gemm.set_enabled(True)
    monkeypatch.setattr(conv_split, "ENABLED", False)
    assert sb(np, 8, w, (16, 16)) is None


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3], CASES[5]], ids=str)
def test_one_part_is_bitwise_one_thread(case, monkeypatch):
    """One part at two threads: the one-thread algorithm, so the very same values."""
    monkeypatch.setattr(conv_split, "MAX_PARTS", 1)
    prev_mkl = mkl_gemm._enabled
    mkl_gemm.set_enabled(True)
    if not mkl_gemm.enabled():
        mkl_gemm._enabled = prev_mkl
        pytest.skip("MKL (or numba) is not installed")
    nd, n, ci, co, size, k, kw = case
    arrays = _arrays(nd, n, ci, co, size, k, np.float32, groups=kw.get("groups", 1))
    f = getattr(torch.nn.functional, f"conv{nd}d")
    g = np.random.default_rng(1).standard_normal(f(*map(torch.tensor, arrays), **kw).shape)
    g = g.astype(np.float32)
    before = ember.get_num_threads()
    try:
        ember.set_num_threads(2)
        assert conv_split.split_bounds(np, n, arrays[1].shape, (size,) * nd) == [0, n]
        two = _step(ember, nd, arrays, g, **kw)
        ember.set_num_threads(1)
        one = _step(ember, nd, arrays, g, **kw)
    finally:
        ember.set_num_threads(before)
        mkl_gemm._enabled = prev_mkl
    for a, o in zip(two, one):
        np.testing.assert_array_equal(a, o)


def test_split_leaves_complex_and_mixed_dtypes_whole(two_threads):
    x = np.ones((4, 2, 6, 6), np.complex128)
    w = np.ones((3, 2, 3, 3), np.complex128)
    geom = _geom(2, 2, 6, 3, padding=1)
    assert conv_split.split_forward(np, x, w, None, geom, conv.conv_forward) is None
    assert conv_split.split_forward(np, x.real, w.real.astype(np.float32), None, geom, None) is None


def test_run_parts_one_thread_inside_and_errors(two_threads):
    seen = []

    def part(lo, hi):
        seen.append((lo, hi, threads.num_threads()))
        return hi - lo

    assert threads.run_parts(part, [0, 3, 5, 9]) == [3, 2, 4]
    assert sorted(seen) == [(0, 3, 1), (3, 5, 1), (5, 9, 1)]
    assert threads.num_threads() == 2  # the calling thread's count is back

    def bad(lo, hi):
        raise ValueError(f"part {lo}")

    with pytest.raises(ValueError, match="part"):
        threads.run_parts(bad, [0, 1, 2])
    assert threads.num_threads() == 2
