"""Quantized layers (static, dynamic, fused): integer compute equal to torch's on the same
quantized weights and inputs, torch's state_dict keys, and the errors."""

import numpy as np
import pytest

import ember
from ember import quantized as Q
from ember.ao.nn import intrinsic as enni
from ember.ao.nn import quantized as ennq

torch = pytest.importorskip("torch")
tnnq = pytest.importorskip("torch.ao.nn.quantized")
tnniq = pytest.importorskip("torch.ao.nn.intrinsic.quantized")
tnnqd = pytest.importorskip("torch.ao.nn.quantized.dynamic")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
rng = np.random.default_rng(0)


def _qweight(w, per_channel):
    if per_channel:
        s = (np.abs(w).reshape(len(w), -1).max(1) / 127).astype(np.float64)
        z = np.zeros(len(w), np.int64)
        return (
            torch.quantize_per_channel(
                torch.from_numpy(w), torch.from_numpy(s), torch.from_numpy(z), 0, torch.qint8
            ),
            Q.quantize_per_channel(ember.tensor(w), s, z, 0, Q.qint8),
        )
    s = float(np.abs(w).max() / 127)
    return (
        torch.quantize_per_tensor(torch.from_numpy(w), s, 0, torch.qint8),
        Q.quantize_per_tensor(ember.tensor(w), s, 0, Q.qint8),
    )


def _qinput(x, scale=0.06, zp=60):
    # activations in 0..127 (reduce_range, torch's x86 default): fbgemm's int16 pair sums
    # saturate for full-range uint8 inputs, ember's accumulation is exact either way
    return (
        torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8),
        Q.quantize_per_tensor(ember.tensor(x), scale, zp, Q.quint8),
    )


@pytest.mark.parametrize("k", [20, 700])  # 700 > 514 terms: the chunked exact path
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_quantized_linear_matches_torch(k, per_channel, relu):
    n = 12
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    tw, ew = _qweight(w, per_channel)
    tl = (tnniq.LinearReLU if relu else tnnq.Linear)(k, n)
    el = (enni.quantized.LinearReLU if relu else ennq.Linear)(k, n)
    tl.set_weight_bias(tw, torch.from_numpy(b))
    el.set_weight_bias(ew, ember.tensor(b))
    tl.scale, tl.zero_point = el.scale, el.zero_point = 0.05, 100
    tx, ex = _qinput(rng.standard_normal((3, 5, k)).astype(np.float32))
    ty, ey = tl(tx), el(ex)
    assert ey.shape == ty.shape and ey.q_scale() == 0.05 and ey.q_zero_point() == 100
    np.testing.assert_array_equal(ey.int_repr().numpy(), ty.int_repr().numpy())
    assert set(el.state_dict()) == set(tl.state_dict())


@pytest.mark.parametrize(
    "nd,cin,groups,padding,stride",
    [(2, 3, 1, 1, 1), (2, 80, 1, 0, 2), (2, 8, 2, 1, 1), (1, 4, 1, 2, 1)],
)
def test_quantized_conv_matches_torch(nd, cin, groups, padding, stride):
    cout, k = 6, 3
    spatial = (9, 8) if nd == 2 else (11,)
    w = (rng.standard_normal((cout, cin // groups) + (k,) * nd) * 0.2).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    tw, ew = _qweight(w, True)
    tc = (tnnq.Conv2d if nd == 2 else tnnq.Conv1d)(cin, cout, k, stride, padding, groups=groups)
    ec = (ennq.Conv2d if nd == 2 else ennq.Conv1d)(cin, cout, k, stride, padding, groups=groups)
    tc.set_weight_bias(tw, torch.from_numpy(b))
    ec.set_weight_bias(ew, ember.tensor(b))
    tc.scale, tc.zero_point = ec.scale, ec.zero_point = 0.1, 70
    tx, ex = _qinput(rng.standard_normal((2, cin) + spatial).astype(np.float32))
    ty, ey = tc(tx), ec(ex)
    np.testing.assert_array_equal(ey.int_repr().numpy(), ty.int_repr().numpy())
    assert set(ec.state_dict()) == set(tc.state_dict())


def test_dynamic_linear_matches_torch():
    k, n = 300, 16
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    tw, ew = _qweight(w, False)
    tl, el = tnnqd.Linear(k, n), ember.ao.nn.quantized.dynamic.Linear(k, n)
    tl.set_weight_bias(tw, torch.from_numpy(b))
    el.set_weight_bias(ew, ember.tensor(b))
    x = rng.standard_normal((7, k)).astype(np.float32)
    ty, ey = tl(torch.from_numpy(x)).numpy(), el(ember.tensor(x)).numpy()
    np.testing.assert_allclose(ey, ty, rtol=1e-5, atol=1e-5)
    assert set(el.state_dict()) == set(tl.state_dict())
    assert ey.dtype == np.float32


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dynamic_rnn_matches_torch_quantize_dynamic(mode):
    t_rnn = torch.nn.Sequential(getattr(torch.nn, mode)(10, 16, num_layers=2, batch_first=True))
    e_rnn = ember.nn.Sequential(getattr(ember.nn, mode)(10, 16, num_layers=2, batch_first=True))
    e_rnn.load_state_dict({k: ember.tensor(v.numpy()) for k, v in t_rnn.state_dict().items()})
    tq = torch.ao.quantization.quantize_dynamic(t_rnn, {getattr(torch.nn, mode)}, torch.qint8)
    eq = ember.ao.quantization.quantize_dynamic(e_rnn, {getattr(ember.nn, mode)}, ember.qint8)
    assert eq[0]._get_name() == tq[0]._get_name() == f"DynamicQuantized{mode}"
    x = rng.standard_normal((3, 7, 10)).astype(np.float32)
    with torch.no_grad():
        t_out, t_h = tq(torch.from_numpy(x))
    e_out, e_h = eq(ember.tensor(x))
    np.testing.assert_allclose(e_out.numpy(), t_out.numpy(), atol=2e-3)
    f_out = e_rnn(ember.tensor(x))[0].detach().numpy()
    assert 0 < np.abs(e_out.numpy() - f_out).max() < 0.02  # quantized, and close to float
    if mode == "LSTM":
        np.testing.assert_allclose(e_h[1].numpy(), t_h[1].numpy(), atol=3e-3)
    assert set(eq.state_dict()) == set(tq.state_dict())  # _all_weight_values.N.param


def test_relu6_and_functional():
    tx, ex = _qinput(rng.standard_normal((4, 9)).astype(np.float32) * 8, 0.1, 40)
    np.testing.assert_array_equal(
        ennq.ReLU6()(ex).int_repr().numpy(), tnnq.ReLU6()(tx).int_repr().numpy()
    )
    qf = ennq.QFunctional()
    qf.scale, qf.zero_point = 0.5, 128
    out = qf.add(ex, ex)
    np.testing.assert_allclose(
        out.dequantize().numpy(), 2 * ex.dequantize().numpy(), atol=0.2501
    )  # half an output step


def test_quantized_layer_errors():
    lin = ennq.Linear(4, 2)
    with pytest.raises(RuntimeError, match="QuantStub missing"):
        lin(ember.randn(3, 4))
    q = Q.quantize_per_tensor(ember.randn(3, 5), 0.1, 0, Q.quint8)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        lin(q)
    with pytest.raises(RuntimeError, match="expected input with 3 channels"):
        ennq.Conv2d(3, 4, 3)(Q.quantize_per_tensor(ember.randn(1, 2, 5, 5), 0.1, 0, Q.quint8))
