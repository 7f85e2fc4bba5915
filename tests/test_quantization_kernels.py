"""Integer kernels of the quantized layers: the exact int32 accumulator from onnxruntime's
integer GEMM / convolution and from the float-BLAS path, against int64 NumPy / float64 torch,
and the requantized codes identical whichever path ran."""

import contextlib

import numpy as np
import pytest

import ember
from ember import quantized as Q
from ember.ao.nn import intrinsic as enni
from ember.ao.nn import quantized as ennq
from ember.ao.nn.quantized import _kernels as K
from ember.ao.nn.quantized import _ort
from ember.ao.nn.quantized.modules.utils import set_weight_cache

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
rng = np.random.default_rng(0)
has_ort = pytest.mark.skipif(not _ort.available(), reason="onnxruntime not installed")


@pytest.fixture(autouse=True)
def _ort_for_every_size(monkeypatch):
    # small Linear products normally take the float path; here every size may use onnxruntime
    monkeypatch.setattr(_ort, "LINEAR_MIN_MACS", 0)


@contextlib.contextmanager
def ort_kernels(enabled):
    _ort.set_ort_kernels(enabled)
    try:
        yield
    finally:
        _ort.set_ort_kernels(True)


def _codes_u8(shape, full=True):
    return rng.integers(0, 256 if full else 128, shape).astype(np.uint8)


def _weight(codes, zp=0, per_channel=False, dtype=Q.qint8):
    """A quantized weight with exactly these integer codes (scale 1, or per-row scales)."""
    x = ember.tensor((codes.astype(np.float64) - zp).astype(np.float32))
    if per_channel:
        n = codes.shape[0]
        return Q.quantize_per_channel(x, np.ones(n), np.full(n, zp, np.int64), 0, dtype)
    return Q.quantize_per_tensor(x, 1.0, zp, dtype)


def _w_codes(shape, lo=-128, hi=127, gen=None):
    w = (gen or rng).integers(lo, hi + 1, shape)
    w.reshape(shape[0], -1)[:, :2] = [lo, hi]  # the extremes, where int16 pair sums saturate
    return w


def _ref_linear(a, za, w, zw):
    return (a.astype(np.int64) - za) @ (w.astype(np.int64) - zw).T


@has_ort
@pytest.mark.parametrize("k", [9, 700, 3000])
@pytest.mark.parametrize("za,zw,per_channel", [(0, 0, True), (200, 5, False), (17, -3, True)])
def test_ort_linear_accumulator_exact(k, za, zw, per_channel):
    a = _codes_u8((33, k))
    a[0] = 255  # the largest activation row: int16 u8 x s8 pair sums would saturate here
    wc = _w_codes((20, k), -128 + max(zw, 0), 127 + min(zw, 0))
    w = _weight(wc, zw, per_channel)
    acc = _ort.linear_acc(a, za, w)
    assert acc is not None and acc.dtype == np.int32
    ref = _ref_linear(a, za, wc, zw)
    np.testing.assert_array_equal(acc, ref)
    with ort_kernels(False):  # the float-BLAS path gives the same integers
        f = K.linear_acc(a, za, w, 255, K.weight_l1(w))
    assert f.dtype in (np.float32, np.float64)
    np.testing.assert_array_equal(f, ref)


@has_ort
@pytest.mark.parametrize(
    "nd,cin,cout,groups,stride,padding,dilation",
    [
        (2, 1, 8, 1, 1, 1, 1),
        (2, 16, 12, 1, 2, 0, 1),
        (2, 8, 8, 4, 1, 2, 2),
        (1, 40, 6, 1, 1, 1, 1),
    ],
)
def test_ort_conv_accumulator_exact(nd, cin, cout, groups, stride, padding, dilation):
    torch = pytest.importorskip("torch")
    size = (11,) * nd
    x = _codes_u8((3, cin) + size)
    x[0] = 255
    wc = _w_codes((cout, cin // groups) + (3,) * nd)
    w = _weight(wc, 0, per_channel=True)
    geom = ((stride,) * nd, (padding,) * nd, (dilation,) * nd, groups)
    acc = _ort.conv_acc(x, 7, w, *geom)
    assert acc is not None and acc.dtype == np.int32
    conv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
    ref = conv(
        torch.from_numpy(x.astype(np.float64) - 7),
        torch.from_numpy(wc.astype(np.float64)),
        None,
        stride,
        padding,
        dilation,
        groups,
    ).numpy()  # exact: |sums| << 2**53
    np.testing.assert_array_equal(acc, ref)
    with ort_kernels(False):
        f = K.conv_acc(nd, x, 7, w, 255, 128, *geom)
    np.testing.assert_array_equal(f, ref)


@pytest.mark.parametrize("kind", ["linear", "conv", "linear_relu"])
@pytest.mark.parametrize("full_range", [False, True])
def test_module_codes_identical_on_every_path(kind, full_range):
    """Requantized output codes: onnxruntime on / off, weight cache on / off, all equal."""
    # its own generator: with the module's, the draws (and the spread checked below) depended
    # on which tests ran before (a -k subset once gave linear_relu too few distinct codes)
    rng = np.random.default_rng(20241)
    if kind == "conv":
        layer = ennq.Conv2d(6, 10, 3, padding=1)
        wc, xs = _w_codes((10, 6, 3, 3), gen=rng), (4, 6, 9, 9)
    else:
        layer = (enni.quantized.LinearReLU if kind == "linear_relu" else ennq.Linear)(900, 10)
        wc, xs = _w_codes((10, 900), gen=rng), (4, 900)
    w = Q.quantize_per_channel(
        ember.tensor(wc.astype(np.float32) * 0.01),
        np.full(10, 0.01),
        np.zeros(10, np.int64),
        0,
        Q.qint8,
    )
    layer.set_weight_bias(w, ember.tensor(rng.standard_normal(10).astype(np.float32)))
    layer.scale, layer.zero_point = 0.7, 64
    x = Q.quantize_per_tensor(
        ember.tensor(rng.random(xs).astype(np.float32)),
        1 / (255 if full_range else 127),
        3,
        Q.quint8,
    )
    outs = []
    if _ort.available():  # onnxruntime reads the int8 weight: no float32 copy is made
        outs.append(layer(x).int_repr().numpy())
        assert (kind != "conv",) not in (w._cache or {})  # weight_codes' key: (transpose,)
    for ort_on, cache in ((True, True), (False, True), (True, False)):
        set_weight_cache(cache)
        try:
            with ort_kernels(ort_on):
                outs.append(layer(x).int_repr().numpy())
        finally:
            set_weight_cache(True)
    assert len(np.unique(outs[0])) > 10  # a real spread of codes, not all clamped
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_float_path_chunks_when_the_data_bound_fails():
    # 3000 terms of 255 * 128: far past 2**24, so one float32 GEMM would round; the bound
    # sends it to exact float64 chunks
    a = np.full((2, 3000), 255, np.uint8)
    wc = np.full((3, 3000), -128)
    w = _weight(wc)
    assert not K.fits_float32(a, 0, w, 3000, 255, 128)
    with ort_kernels(False):
        acc = K.linear_acc(a, 0, w, 255, 128)
    assert acc.dtype == np.float64
    np.testing.assert_array_equal(acc, np.full((2, 3), -3000 * 255 * 128))


def test_float_path_single_gemm_when_the_data_bound_holds():
    a = _codes_u8((5, 3000), full=False) // 8  # small codes: |a| <= 15
    wc = rng.integers(-20, 21, (4, 3000))
    w = _weight(wc)
    assert K.weight_l1(w) == np.abs(wc).sum(1).max()
    assert K.fits_float32(a, 0, w, 3000, 255, 128)
    with ort_kernels(False):
        acc = K.linear_acc(a, 0, w, 255, 128)
    assert acc.dtype == np.float32
    np.testing.assert_array_equal(acc, _ref_linear(a, 0, wc, 0))


@has_ort
def test_ort_declines_what_it_cannot_compute_exactly():
    x = _codes_u8((2, 4, 6, 6))
    # per-channel weight zero points that differ: ConvInteger takes one zero point
    wc = _w_codes((3, 4, 3, 3), -100, 100)
    t = ember.tensor(wc.astype(np.float32))
    w = Q.quantize_per_channel(t, np.ones(3), np.array([0, 1, 2]), 0, Q.qint8)
    assert _ort.conv_acc(x, 0, w, (1, 1), (0, 0), (1, 1), 1) is None
    w0 = _weight(wc, 0, per_channel=True)
    assert _ort.conv_acc(x.astype(np.int8), 0, w0, (1, 1), (0, 0), (1, 1), 1) is None  # qint8 x
    with ort_kernels(False):
        assert _ort.conv_acc(x, 0, w0, (1, 1), (0, 0), (1, 1), 1) is None
    set_weight_cache(False)  # no cache, no session: building one per call would cost more
    try:
        assert _ort.linear_acc(x.reshape(2, -1), 0, _weight(_w_codes((5, 144)))) is None
    finally:
        set_weight_cache(True)


@has_ort
def test_small_linear_products_take_the_float_path(monkeypatch):
    monkeypatch.setattr(_ort, "LINEAR_MIN_MACS", 2**19)
    w = _weight(_w_codes((512, 784)))
    assert _ort.linear_acc(_codes_u8((1, 784)), 0, w) is None  # 401k multiply-adds
    acc = _ort.linear_acc(_codes_u8((2, 784)), 0, w)  # 803k
    assert acc is not None and acc.dtype == np.int32


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64])
def test_requantize_same_codes_from_every_accumulator_dtype(dtype):
    acc = rng.integers(-(2**26), 2**26, (7, 5)).astype(np.int64)  # past 2**24: float32 rounds
    acc[0, :3] = [2**24 + 1, -(2**24) - 3, 0]
    args = (
        0.02,
        np.array([1e-5, 2e-5, 3e-6, 1e-5, 4e-6], np.float32),
        np.linspace(-1, 1, 5).astype(np.float32),
        0.05,
        128,
        0,
        255,
        1,
        False,
        np.uint8,
    )
    ref = K.requantize(acc.astype(np.float32), *args)
    np.testing.assert_array_equal(K.requantize(acc.astype(dtype), *args), ref)
    m = np.float32(0.02) * args[1] * (np.float32(1) / np.float32(0.05))
    c = args[2] * (np.float32(1) / np.float32(0.05)) + np.float32(128)
    want = np.rint(np.clip(acc.astype(np.float32) * m + c, 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(ref, want)
