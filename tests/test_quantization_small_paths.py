"""The per-call fast paths of the int8 layers: a small quantized Linear's cached plan and the
dynamic LSTM / GRU time loop give the same codes / values as the general paths and as torch,
and notice a changed weight, bias or quantization parameters."""

import numpy as np
import pytest

import ember
from ember import quantized as Q
from ember.ao.nn import intrinsic as enni
from ember.ao.nn import quantized as ennq
from ember.ao.nn.quantized import _ort
from ember.ao.nn.quantized.dynamic.modules._rnn_layers import dynamic_qparams
from ember.ao.nn.quantized.modules.utils import set_weight_cache

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
rng = np.random.default_rng(0)


def _general_path(layer, x):
    """The layer's output through the general (unplanned) path: the small-call limit at 0."""
    saved = _ort.LINEAR_MIN_MACS
    _ort.LINEAR_MIN_MACS = 0
    _ort.set_ort_kernels(False)
    try:
        return layer(x).int_repr().numpy()
    finally:
        _ort.LINEAR_MIN_MACS = saved
        _ort.set_ort_kernels(True)


def _layer(k, n, relu=False, per_channel=True, scale=0.02):
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    if per_channel:
        s = (np.abs(w).max(1) / 127).astype(np.float64)
        qw = Q.quantize_per_channel(ember.tensor(w), s, np.zeros(n, np.int64), 0, Q.qint8)
    else:
        qw = Q.quantize_per_tensor(ember.tensor(w), float(np.abs(w).max() / 127), 0, Q.qint8)
    layer = (enni.quantized.LinearReLU if relu else ennq.Linear)(k, n)
    layer.set_weight_bias(qw, ember.tensor(rng.standard_normal(n).astype(np.float32)))
    layer.scale, layer.zero_point = scale, 64
    return layer


# k=3000: the dtype bound fails, the input's own range decides (7-bit codes pass, full-range
# codes fall back to the general path's exact chunks)
@pytest.mark.parametrize(
    "k,n,rows,zp,hi",
    [(300, 40, 1, 0, 256), (300, 40, 7, 9, 256), (3000, 16, 1, 0, 128), (3000, 16, 2, 3, 256)],
)
@pytest.mark.parametrize("relu", [False, True])
def test_small_linear_codes_equal_general_path(k, n, rows, zp, hi, relu):
    layer = _layer(k, n, relu)
    codes = rng.integers(0, hi, (rows, k)).astype(np.uint8)
    x = Q.QTensor._make(codes, Q.quint8, Q.per_tensor_affine, 0.01, zp)
    fast = layer(x)
    assert "_plan" in layer.__dict__ and fast.q_scale() == 0.02 and fast.q_zero_point() == 64
    np.testing.assert_array_equal(fast.int_repr().numpy(), _general_path(layer, x))
    assert len(np.unique(fast.int_repr().numpy())) > 3  # not all clamped


def test_small_linear_matches_torch_batch1():
    torch = pytest.importorskip("torch")
    tnnq = pytest.importorskip("torch.ao.nn.quantized")
    k, n = 784, 64
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    s = (np.abs(w).max(1) / 127).astype(np.float64)
    tl, el = tnnq.Linear(k, n), ennq.Linear(k, n)
    tl.set_weight_bias(
        torch.quantize_per_channel(
            torch.from_numpy(w),
            torch.from_numpy(s),
            torch.zeros(n, dtype=torch.long),
            0,
            torch.qint8,
        ),
        torch.from_numpy(b),
    )
    el.set_weight_bias(
        Q.quantize_per_channel(ember.tensor(w), s, np.zeros(n, np.int64), 0, Q.qint8),
        ember.tensor(b),
    )
    tl.scale, tl.zero_point = el.scale, el.zero_point = 0.05, 70
    x = np.abs(rng.standard_normal((1, k))).astype(np.float32)
    tx = torch.quantize_per_tensor(torch.from_numpy(x), 0.02, 0, torch.quint8)
    ex = Q.quantize_per_tensor(ember.tensor(x), 0.02, 0, Q.quint8)
    np.testing.assert_array_equal(el(ex).int_repr().numpy(), tl(tx).int_repr().numpy())


def test_small_linear_plan_follows_changes():
    layer = _layer(50, 8)
    x = Q.quantize_per_tensor(
        ember.tensor(rng.random((1, 50)).astype(np.float32)), 0.01, 0, Q.quint8
    )
    before = layer(x).int_repr().numpy()
    checks = [
        lambda: setattr(layer, "scale", 0.04),  # output qparams
        lambda: setattr(layer, "zero_point", 10),
        lambda: layer.set_weight_bias(layer.weight(), ember.zeros(8)),  # bias
        lambda: layer.set_weight_bias(_layer(50, 8).weight(), layer.bias()),  # weight
        lambda: layer.load_state_dict(_layer(50, 8).state_dict()),  # state_dict
    ]
    for change in checks:
        change()
        np.testing.assert_array_equal(layer(x).int_repr().numpy(), _general_path(layer, x))
    # another input scale / zero point, and a deepcopy (the plan is not carried along)
    x2 = Q.quantize_per_tensor(x.dequantize(), 0.005, 3, Q.quint8)
    np.testing.assert_array_equal(layer(x2).int_repr().numpy(), _general_path(layer, x2))
    import copy

    twin = copy.deepcopy(layer)
    assert "_plan" not in twin.__dict__
    np.testing.assert_array_equal(twin(x2).int_repr().numpy(), layer(x2).int_repr().numpy())
    assert not np.array_equal(before, layer(x).int_repr().numpy())
    set_weight_cache(False)  # the plan holds no float32 weight copy when the cache is off
    try:
        np.testing.assert_array_equal(layer(x2).int_repr().numpy(), _general_path(layer, x2))
    finally:
        set_weight_cache(True)


def test_dynamic_qparams_equal_choose_qparams():
    r = np.random.default_rng(1)
    cases = [
        (float(np.float32(lo)), float(np.float32(hi)))
        for lo, hi in r.standard_normal((400, 2)) * r.choice([1e-6, 1e-3, 1, 50], (400, 1))
    ]
    cases += [
        (0.0, 0.0),
        (-1.0, 0.0),
        (0.0, 1.0),
        (0.3, 0.9),
        (-0.9, -0.2),
        (-1e-7, 2e-7),
        (-0.5, 0.5),
        (-127 / 254, 0.5),
    ]
    for lo, hi in cases:  # float32 values, as a float32 array's min / max are
        lo, hi = float(np.float32(min(lo, hi))), float(np.float32(max(lo, hi)))
        for qmax in (127, 255):
            assert dynamic_qparams(lo, hi, qmax) == Q.choose_qparams(lo, hi, 0, qmax), (lo, hi)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dynamic_rnn_bidirectional_with_state_matches_torch(mode):
    torch = pytest.importorskip("torch")
    t_rnn = getattr(torch.nn, mode)(6, 12, num_layers=2, bidirectional=True)
    e_rnn = getattr(ember.nn, mode)(6, 12, num_layers=2, bidirectional=True)
    e_rnn.load_state_dict({k: ember.tensor(v.numpy()) for k, v in t_rnn.state_dict().items()})
    tq = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(t_rnn), {getattr(torch.nn, mode)}, torch.qint8
    )[0]
    eq = ember.ao.quantization.quantize_dynamic(
        ember.nn.Sequential(e_rnn), {getattr(ember.nn, mode)}, ember.qint8
    )[0]
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    h0 = (rng.standard_normal((4, 3, 12)) * 0.5).astype(np.float32)
    c0 = (rng.standard_normal((4, 3, 12)) * 0.5).astype(np.float32)
    th = (torch.from_numpy(h0), torch.from_numpy(c0)) if mode == "LSTM" else torch.from_numpy(h0)
    eh = (ember.tensor(h0), ember.tensor(c0)) if mode == "LSTM" else ember.tensor(h0)
    with torch.no_grad():
        t_out, t_h = tq(torch.from_numpy(x), th)
    e_out, e_h = eq(ember.tensor(x), eh)
    np.testing.assert_allclose(e_out.numpy(), t_out.numpy(), atol=2e-3)
    if mode == "LSTM":
        for e_s, t_s in zip(e_h, t_h):
            np.testing.assert_allclose(e_s.numpy(), t_s.numpy(), atol=3e-3)
    else:
        np.testing.assert_allclose(e_h.numpy(), t_h.numpy(), atol=2e-3)
    np.testing.assert_array_equal(h0, eh[0].numpy() if mode == "LSTM" else eh.numpy())


@pytest.mark.parametrize(
    "shape,args",
    [
        ((2, 3, 8, 8), (2,)),
        ((3, 8, 6), ((2, 3),)),
        ((2, 3, 9, 8), (2,)),
        ((2, 3, 8, 8), (2, 1)),
        ((2, 3, 8, 8), (2, 2, 1)),
    ],
)
def test_quantized_max_pool_codes_match_torch(shape, args):
    # tiling windows take the reshaped max of the codes; the others (odd size, overlapping,
    # padded) the general pooling: torch's codes either way
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    e = ember.nn.functional.max_pool2d(
        Q.quantize_per_tensor(ember.tensor(x), 0.05, 60, Q.quint8), *args
    )
    t = torch.nn.functional.max_pool2d(
        torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 60, torch.quint8), *args
    )
    assert e.q_scale() == 0.05 and e.q_zero_point() == 60
    np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
