"""The convolution paths of the sixth kernel pass (issue 23) agree with torch where they switch.

Blocked im2col + GEMM (``conv_blocked``: NumPy, groups 1, a large column matrix, one BLAS
thread), the 1x1 per-sample GEMM, the input gradient by GEMM + col2im where g has fewer columns
than output channels, and the bias gradient as a matrix-vector product. Each is checked at a
shape that selects it (float32, against torch) and, with the thresholds lowered so that tiny
shapes select it and cut it into several blocks, by float64 gradcheck and gradgradcheck.
"""

import numpy as np
import pytest

import ember
from ember.autograd import gradcheck, gradgradcheck
from ember.ops import conv, conv_blocked

torch = pytest.importorskip("torch")


@pytest.fixture
def one_thread():
    """The blocked path runs at one BLAS thread only; restore the pool size after."""
    before = ember.get_num_threads()
    ember.set_num_threads(1)
    yield
    ember.set_num_threads(before)


def _step(lib, nd, x, w, b, g, **kw):
    xt, wt, bt = (lib.tensor(a, requires_grad=True) for a in (x, w, b))
    y = getattr(lib.nn.functional, f"conv{nd}d")(xt, wt, bt, **kw)
    y.backward(lib.tensor(g))
    return [t.detach().numpy() for t in (y, xt.grad, wt.grad, bt.grad)]


def _check_vs_torch(nd, n, ci, co, size, k, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ci) + (size,) * nd).astype(np.float32)
    w = (rng.standard_normal((co, ci // kw.get("groups", 1)) + (k,) * nd) * 0.2).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    f = getattr(torch.nn.functional, f"conv{nd}d")
    g = rng.standard_normal(tuple(f(torch.tensor(x), torch.tensor(w), **kw).shape))
    g = g.astype(np.float32)
    ours = _step(ember, nd, x, w, b, g, **kw)
    ref = _step(torch, nd, x, w, b, g, **kw)
    for name, a, r in zip(("y", "dx", "dw", "db"), ours, ref):
        assert a.shape == r.shape, name
        scale = max(1.0, float(np.abs(r).max()))
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=3e-5 * scale, err_msg=name)


# (nd, N, C_in, C_out, size, kernel, conv kwargs): each one's columns take >= 4 MB
BLOCKED = [
    (2, 8, 16, 16, 32, 3, {"padding": 1}),  # 2-D, several rows per block
    (3, 1, 16, 8, 16, 3, {"padding": 1}),  # 3-D, narrow output, direct input gradient
    (2, 3, 3, 24, 112, 7, {"padding": 3, "stride": 2}),  # first layer, strided: col2im dx
    (1, 2, 64, 32, 2048, 9, {"padding": 8, "dilation": 2}),  # 1-D, dilated, one column a row
    (2, 2, 16, 8, 64, 3, {"padding": (0, 2)}),  # no padding on one dim, more on the other
]


@pytest.mark.parametrize("case", BLOCKED, ids=lambda c: f"{c[0]}d-{c[2]}-{c[3]}-{c[4]}-k{c[5]}")
def test_blocked_matches_torch(one_thread, case):
    nd, n, ci, co, size, k, kw = case
    x = np.zeros((n, ci) + (size,) * nd, np.float32)
    pad = kw["padding"] if isinstance(kw["padding"], tuple) else (kw["padding"],) * nd
    geom = conv.ConvGeom(
        (kw.get("stride", 1),) * nd,
        tuple((p, p) for p in pad),
        (kw.get("dilation", 1),) * nd,
        1,
        (k,) * nd,
        (size,) * nd,
    )
    assert conv_blocked.use_blocked(np, x, (co, ci) + (k,) * nd, geom)
    _check_vs_torch(nd, n, ci, co, size, k, **kw)


def test_blocked_rules(one_thread):
    x = np.zeros((8, 16, 32, 32), np.float32)
    geom = conv.ConvGeom((1, 1), ((1, 1),) * 2, (1, 1), 1, (3, 3), (32, 32))
    assert conv_blocked.use_blocked(np, x, (16, 16, 3, 3), geom)
    assert not conv_blocked.use_blocked(np, x[:2], (16, 16, 3, 3), geom)  # small columns
    assert not conv_blocked.use_blocked(np, x, (512, 16, 3, 3), geom)  # large weight
    g2 = conv.ConvGeom((1, 1), ((1, 1),) * 2, (1, 1), 2, (3, 3), (32, 32))
    assert not conv_blocked.use_blocked(np, x, (16, 8, 3, 3), g2)  # grouped
    ember.set_num_threads(2)  # a BLAS pool keeps the three large GEMMs
    assert not conv_blocked.use_blocked(np, x, (16, 16, 3, 3), geom)


@pytest.fixture
def tiny_blocks(one_thread, monkeypatch):
    """Tiny shapes take the blocked path, cut into blocks of a row or two."""
    monkeypatch.setattr(conv_blocked, "MIN_COLS_BYTES", 1)
    monkeypatch.setattr(conv_blocked, "BLOCK_BYTES", 600)


@pytest.mark.parametrize(
    "case",
    [
        (1, 2, 2, 3, 7, 3, {"padding": 1}),
        (2, 2, 2, 3, 6, 3, {"padding": 1}),
        (2, 1, 2, 2, 7, 3, {"padding": 1, "stride": 2, "dilation": 2}),
        (3, 1, 2, 2, 4, 2, {"padding": 1}),
        (2, 1, 2, 2, 6, 3, {"padding": (1, 2), "stride": (2, 1), "dilation": (1, 2)}),
    ],
    ids=["1d", "2d", "2d-strided-dilated", "3d-even-kernel", "2d-wide-rows-dilated"],
)
def test_blocked_gradcheck(tiny_blocks, case):
    nd, n, ci, co, size, k, kw = case
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((n, ci) + (size,) * nd), requires_grad=True)
    w = ember.tensor(rng.standard_normal((co, ci) + (k,) * nd), requires_grad=True)
    b = ember.tensor(rng.standard_normal(co), requires_grad=True)
    f = getattr(ember.nn.functional, f"conv{nd}d")

    def fn(x, w, b):
        return f(x, w, b, **kw)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


def test_wide_rows_rules():
    geom = conv.ConvGeom((1, 1), ((1, 2),) * 2, (1, 1), 1, (3, 3), (32, 32))
    assert conv_blocked.wide_width(geom) == 35  # the padded width
    assert conv_blocked.wide_width(conv.ConvGeom((2, 1), ((1, 1),) * 2, (1, 1), 1, (3, 3), (9, 9)))
    # a strided last dim has no contiguous runs; 1-D has no rows to widen
    assert (
        conv_blocked.wide_width(conv.ConvGeom((1, 2), ((1, 1),) * 2, (1, 1), 1, (3, 3), (9, 9)))
        is None
    )
    assert conv_blocked.wide_width(conv.ConvGeom((1,), ((1, 1),), (1,), 1, (3,), (9,))) is None


def test_wide_rows_match_narrow_and_torch(one_thread, monkeypatch):
    # stride 2 on rows, dilation 2 along them, uneven padding: wide rows against the per-row
    # gather (float64, exact up to summation order) and against torch (float32)
    rng = np.random.default_rng(5)
    geom = conv.ConvGeom((2, 1), ((1, 1), (2, 3)), (1, 2), 1, (3, 3), (9, 11))
    x = rng.standard_normal((2, 3, 9, 11))
    w = rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4) + geom.out_size)
    wide = (conv_blocked.blocked_forward(x, w, None, geom),)
    wide += (conv_blocked.blocked_weight_grad(x, g, w.shape, geom),)
    monkeypatch.setattr(conv_blocked, "WIDE_ROWS", False)
    narrow = (conv_blocked.blocked_forward(x, w, None, geom),)
    narrow += (conv_blocked.blocked_weight_grad(x, g, w.shape, geom),)
    for a, r in zip(wide, narrow):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(conv_blocked, "WIDE_ROWS", True)
    _check_vs_torch(2, 4, 16, 8, 64, 3, padding=(1, 2), stride=(2, 1), dilation=(1, 2))


def test_wide_rows_weight_grad_with_inf(one_thread):
    # the wide rows read past each row's end: an inf there must not turn dw into NaN where
    # torch's stays finite (the weight gradient falls back to the per-row gather)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    x[0, 3, 5, 0] = np.inf
    w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
    geom = conv.ConvGeom((1, 1), ((1, 1),) * 2, (1, 1), 1, (3, 3), (32, 32))
    assert conv_blocked.use_blocked(np, x, w.shape, geom)
    g = np.ones((8, 16, 32, 32), np.float32)
    grads = []
    for lib in (ember, torch):
        wl = lib.tensor(w, requires_grad=True)
        lib.nn.functional.conv2d(lib.tensor(x), wl, padding=1).backward(lib.tensor(g))
        grads.append(wl.grad.numpy())
    np.testing.assert_array_equal(np.isnan(grads[0]), np.isnan(grads[1]))
    np.testing.assert_array_equal(np.isinf(grads[0]), np.isinf(grads[1]))
    assert np.isfinite(grads[1]).any()


def test_narrow_out_follows_the_blas(one_thread, monkeypatch):
    from ember.backend import mkl_gemm

    # MKL loaded and on (the flag mkl_gemm's products read; loading it here would cost ~3 s)
    monkeypatch.setattr(mkl_gemm, "_enabled", True)
    assert conv._narrow_out(1 << 24) == conv.NARROW_OUT_MKL
    assert conv._narrow_out(1) == conv.NARROW_OUT  # too small for MKL: NumPy's OpenBLAS runs it
    monkeypatch.setattr(mkl_gemm, "_enabled", None)  # not loaded yet: OpenBLAS
    assert conv._narrow_out(1 << 24) == conv.NARROW_OUT
    ember.set_num_threads(2)  # a BLAS pool keeps large products on OpenBLAS
    monkeypatch.setattr(mkl_gemm, "_enabled", True)
    assert conv._narrow_out(mkl_gemm.MULTI_FLOPS) == conv.NARROW_OUT


@pytest.mark.parametrize("nd,ci,co", [(2, 64, 256), (2, 256, 64), (1, 48, 16), (3, 8, 12)])
def test_pointwise_matches_torch(nd, ci, co):
    _check_vs_torch(nd, 4, ci, co, 8 if nd < 3 else 4, 1)


def test_pointwise_strided_or_padded_keeps_columns():
    # stride 2 / padding: not a plain per-sample GEMM, the im2col path serves them
    _check_vs_torch(2, 2, 8, 16, 9, 1, stride=2)
    _check_vs_torch(2, 2, 8, 16, 9, 1, padding=1)


def test_pointwise_gradcheck():
    rng = np.random.default_rng(3)
    x = ember.tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    w = ember.tensor(rng.standard_normal((4, 3, 1, 1)), requires_grad=True)
    b = ember.tensor(rng.standard_normal(4), requires_grad=True)

    def fn(x, w, b):
        return ember.nn.functional.conv2d(x, w, b)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


def test_input_grad_by_col2im_when_few_columns():
    # 2 x 3 x 3 = 18 columns of g against 64 output channels: GEMM + col2im, not the flip
    geom = conv.ConvGeom((1, 1), ((1, 1),) * 2, (1, 1), 1, (3, 3), (3, 3))
    assert conv._direct_transpose_geom((64, 48, 3, 3), geom, 2) is None
    assert conv._direct_transpose_geom((64, 48, 3, 3), geom) is not None
    _check_vs_torch(2, 2, 48, 64, 3, 3, padding=1)


def test_bias_grad_dtypes():
    rng = np.random.default_rng(4)
    for dt in (np.float32, np.float64, np.complex64):
        g = (rng.standard_normal((3, 5, 4, 6)) + (1j if dt is np.complex64 else 0)).astype(dt)
        np.testing.assert_allclose(
            conv._bias_grad(np, g), g.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5
        )
        assert conv._bias_grad(np, g).dtype == dt
    g1 = rng.standard_normal((3, 5))  # no spatial dims
    np.testing.assert_allclose(conv._bias_grad(np, g1), g1.sum(axis=0))
