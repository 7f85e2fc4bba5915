"""The compiled int8 kernels (``ao/nn/quantized/_numba_int.py``): the quantized / dynamic
Linear and the dynamic LSTM / GRU give bit for bit the codes and values of the NumPy paths
(``EMBER_NUMBA=0``), which the other quantization tests check against torch."""

import copy

import numpy as np
import pytest

import ember
from ember import nn
from ember import quantized as Q
from ember.ao import quantization as tq
from ember.ao.nn import intrinsic as enni
from ember.ao.nn import quantized as ennq
from ember.ao.nn.quantized import _numba_int as nbi

pytest.importorskip("numba")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
rng = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def _numba_on(monkeypatch):  # the compiled paths, whatever the environment says
    monkeypatch.setenv("EMBER_NUMBA", "1")


def _numpy_path(layer, x, monkeypatch):
    """The layer's output with the compiled kernels off (the float-GEMM path)."""
    monkeypatch.setenv("EMBER_NUMBA", "0")
    layer.__dict__.pop("_plan", None)
    try:
        return layer(x)
    finally:
        monkeypatch.setenv("EMBER_NUMBA", "1")
        layer.__dict__.pop("_plan", None)


def _qlinear(k, n, relu, wscheme):
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    if wscheme == "channel":
        s = (np.abs(w).max(1) / 127).astype(np.float64)
        qw = Q.quantize_per_channel(ember.tensor(w), s, rng.integers(-3, 4, n), 0, Q.qint8)
    else:  # per tensor with a nonzero weight zero point
        qw = Q.quantize_per_tensor(ember.tensor(w), float(np.abs(w).max() / 120), 5, Q.qint8)
    layer = (enni.quantized.LinearReLU if relu else ennq.Linear)(k, n)
    bias = ember.tensor(rng.standard_normal(n).astype(np.float32)) if n % 2 else None
    layer.set_weight_bias(qw, bias)
    layer.scale, layer.zero_point = 0.03, 70
    return layer


@pytest.mark.parametrize(
    "k,n,rows,zp,wscheme,relu",
    [
        (784, 65, 1, 0, "channel", False),
        (300, 40, 3, 9, "tensor", True),
        (3136, 33, 1, 128, "channel", True),
    ],
)
def test_quantized_linear_codes_equal_numpy_path(monkeypatch, k, n, rows, zp, wscheme, relu):
    layer = _qlinear(k, n, relu, wscheme)
    x = Q.QTensor._make(
        rng.integers(0, 256, (rows, k)).astype(np.uint8), Q.quint8, Q.per_tensor_affine, 0.01, zp
    )
    fast = layer(x)
    assert layer.__dict__["_plan"][4][8] is not None  # the compiled kernel ran
    ref = _numpy_path(layer, x, monkeypatch)
    assert (fast.q_scale(), fast.q_zero_point()) == (ref.q_scale(), ref.q_zero_point())
    np.testing.assert_array_equal(fast.int_repr().numpy(), ref.int_repr().numpy())
    assert len(np.unique(fast.int_repr().numpy())) > 5  # not all clamped


def test_int32_bound_and_switch_fall_back(monkeypatch):
    # K so long that an int32 sum could overflow: the plan keeps the float path
    assert nbi.fits_int32(32000, 255, 128) and not nbi.fits_int32(40000, 255, 128)
    layer = _qlinear(40000, 3, False, "channel")
    x = Q.QTensor._make(
        rng.integers(0, 256, (1, 40000)).astype(np.uint8), Q.quint8, Q.per_tensor_affine, 0.01, 0
    )
    layer(x)
    assert layer.__dict__["_plan"][4][8] is None
    monkeypatch.setenv("EMBER_NUMBA", "0")
    assert not nbi.enabled()
    small = _qlinear(64, 8, False, "tensor")
    small(Q.QTensor._make(np.zeros((1, 64), np.uint8), Q.quint8, Q.per_tensor_affine, 0.1, 0))
    assert small.__dict__["_plan"][4][8] is None


# 1 and 6 rows: the int8 GEMV; 16 rows: the float GEMM between compiled passes
@pytest.mark.parametrize(
    "shape,reduce_range", [((1, 784), True), ((2, 3, 200), False), ((16, 200), True)]
)
def test_dynamic_linear_equals_numpy_path(monkeypatch, shape, reduce_range):
    lin = nn.Linear(shape[-1], 96)
    q = tq.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=ember.qint8)[0]
    q.reduce_range = reduce_range
    x = ember.tensor((rng.standard_normal(shape) * 2 + 0.5).astype(np.float32))
    fast = q(x).numpy()
    monkeypatch.setenv("EMBER_NUMBA", "0")
    ref = q(x).numpy()
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_allclose(fast, lin(x).detach().numpy(), atol=0.1)  # 7-bit noise


@pytest.mark.parametrize(
    "cls,batch,kw",
    [
        (nn.LSTM, 1, {}),
        (nn.GRU, 3, {}),
        (nn.LSTM, 12, {}),  # more rows than ROWS_MAX: the float GEMM path's compiled passes
        pytest.param(nn.LSTM, 2, {"num_layers": 2, "bidirectional": True}, marks=pytest.mark.full),
    ],
)
def test_dynamic_rnn_equals_numpy_path(monkeypatch, cls, batch, kw):
    ember.manual_seed(0)
    rnn = cls(24, 40, batch_first=True, **kw).eval()
    q = tq.quantize_dynamic(nn.Sequential(rnn), {cls}, dtype=ember.qint8)
    x = ember.randn(batch, 9, 24)
    with ember.no_grad():
        fast = q(x)
        monkeypatch.setenv("EMBER_NUMBA", "0")
        ref = q(x)
    np.testing.assert_array_equal(fast[0].numpy(), ref[0].numpy())
    fh, rh = (fast[1][0], ref[1][0]) if cls is nn.LSTM else (fast[1], ref[1])
    np.testing.assert_array_equal(fh.numpy(), rh.numpy())
    with ember.no_grad():
        np.testing.assert_allclose(fast[0].numpy(), rnn(x)[0].numpy(), atol=0.05)


def test_min_max_matches_numpy():
    x = rng.standard_normal((3, 50)).astype(np.float32)
    assert nbi.min_max(x) == (x.min(), x.max())
    x[1, 7] = np.nan
    assert all(np.isnan(v) for v in nbi.min_max(x))


@pytest.mark.parametrize(
    "shape,cout,pad,relu,wscheme,zp",
    [((1, 1, 12, 12), 8, 1, True, "channel", 0), ((2, 3, 9, 7), 5, 0, False, "tensor", 17)],
)
def test_direct_conv_codes_equal_numpy_path(monkeypatch, shape, cout, pad, relu, wscheme, zp):
    cin = shape[1]
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float32)
    if wscheme == "channel":
        s = (np.abs(w).reshape(cout, -1).max(1) / 127).astype(np.float64)
        qw = Q.quantize_per_channel(ember.tensor(w), s, np.zeros(cout, np.int64), 0, Q.qint8)
    else:
        qw = Q.quantize_per_tensor(ember.tensor(w), float(np.abs(w).max() / 120), 4, Q.qint8)
    conv = (enni.quantized.ConvReLU2d if relu else ennq.Conv2d)(cin, cout, 3, padding=pad)
    conv.set_weight_bias(qw, ember.tensor(rng.standard_normal(cout).astype(np.float32)))
    conv.scale, conv.zero_point = 0.05, 60
    x = Q.QTensor._make(
        rng.integers(0, 256, shape).astype(np.uint8), Q.quint8, Q.per_tensor_affine, 0.02, zp
    )
    assert conv._direct_ok(x._data, zp, 0, 255)
    for out_scale in (0.05, 0.08):  # the cached plan follows a changed output scale
        conv.scale = out_scale
        fast = conv(x).int_repr().numpy()
        monkeypatch.setenv("EMBER_NUMBA", "0")
        assert not conv._direct_ok(x._data, zp, 0, 255)
        np.testing.assert_array_equal(fast, conv(x).int_repr().numpy())
        monkeypatch.setenv("EMBER_NUMBA", "1")
        assert len(np.unique(fast)) > 5
    assert "_direct_plan" in conv.__dict__ and "_direct_plan" not in copy.deepcopy(conv).__dict__


@pytest.mark.parametrize("dtype,zp", [(Q.quint8, 3), (Q.qint8, -5)])
def test_quantize_per_tensor_codes_equal_numpy_path(monkeypatch, dtype, zp):
    x = (rng.standard_normal((4, 333)) * 3).astype(np.float32)
    x[0, :4] = [np.nan, np.inf, -np.inf, 0.5 * 0.05]  # a tie: half to even
    x[1, ::7] = np.round(x[1, ::7] / 0.05) * 0.05 + 0.025  # more ties
    fast = Q.quantize_per_tensor(ember.tensor(x), 0.05, zp, dtype).int_repr().numpy()
    monkeypatch.setenv("EMBER_NUMBA", "0")
    with np.errstate(invalid="ignore"):
        ref = Q.quantize_per_tensor(ember.tensor(x), 0.05, zp, dtype).int_repr().numpy()
    np.testing.assert_array_equal(fast, ref)


def test_docs_snippet_runs():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "quantization.md").read_text()
    block = text[text.index("Which kernel ran changes no code") :]
    code = block[block.index("```python\n") + 10 : block.index("```\n", 10)]
    scope: dict = {}
    exec(compile(code, "docs/quantization.md", "exec"), scope)
    assert scope["layer"].__dict__["_plan"][4][8] is not None  # the compiled kernel's plan
    assert scope["y"].shape == (1, 512)


@pytest.mark.parametrize(
    "shape,acc_dtype,per_channel,bias,relu",
    [((5, 7, 6, 6), np.int32, True, True, True), ((9, 33), np.float64, False, False, False)],
)
def test_requantize_pass_equals_numpy_passes(
    monkeypatch, shape, acc_dtype, per_channel, bias, relu
):
    from ember.ao.nn.quantized import _kernels as K

    acc = rng.integers(-40000, 40000, shape).astype(acc_dtype)
    n = shape[1]
    ws = (rng.random(n) * 0.01 + 0.001).astype(np.float32) if per_channel else 0.004
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    args = (0.05, ws, b, 0.1, 7 if bias else 0, 0, 255, 1, relu, np.uint8)
    fast = K.requantize(acc.copy(), *args)
    monkeypatch.setenv("EMBER_NUMBA", "0")
    ref = K.requantize(acc.copy(), *args)
    np.testing.assert_array_equal(fast, ref)
    assert len(np.unique(fast)) > 5
