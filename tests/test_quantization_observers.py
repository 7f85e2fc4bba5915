"""Observers, FakeQuantize and qconfigs: the same qparams as torch.ao.quantization."""

import numpy as np
import pytest

import ember
from ember.ao import quantization as eq

torch = pytest.importorskip("torch")
tq = pytest.importorskip("torch.ao.quantization")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_CASES = [
    ("MinMaxObserver", {}),
    ("MinMaxObserver", {"dtype": "qint8", "qscheme": "per_tensor_symmetric"}),
    ("MinMaxObserver", {"quant_min": 0, "quant_max": 127}),
    ("MinMaxObserver", {"reduce_range": True}),
    ("MovingAverageMinMaxObserver", {"averaging_constant": 0.1}),
    ("PerChannelMinMaxObserver", {"ch_axis": 1}),
    (
        "PerChannelMinMaxObserver",
        {"ch_axis": 0, "dtype": "qint8", "qscheme": "per_channel_symmetric"},
    ),
    ("MovingAveragePerChannelMinMaxObserver", {"ch_axis": 0}),
    ("HistogramObserver", {}),
    ("HistogramObserver", {"reduce_range": True}),
    ("HistogramObserver", {"dtype": "qint8", "qscheme": "per_tensor_symmetric"}),
]


def _kw(mod, kw):
    return {k: getattr(mod, v) if isinstance(v, str) else v for k, v in kw.items()}


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((32, 16)) * s + o).astype(np.float32)
        for s, o in [(1, 0), (2, 0.5), (0.5, -1), (3, 2)]
    ]


@pytest.mark.parametrize("name,kw", _CASES)
def test_observer_qparams_match_torch(name, kw):
    t_obs = getattr(tq, name)(**_kw(torch, kw))
    e_obs = getattr(eq, name)(**_kw(ember, kw))
    for x in _batches():
        t_obs(torch.from_numpy(x))
        e_obs(ember.tensor(x))
    ts, tz = t_obs.calculate_qparams()
    es, ez = e_obs.calculate_qparams()
    np.testing.assert_array_equal(es.numpy(), ts.numpy())
    np.testing.assert_array_equal(ez.numpy(), tz.numpy())
    np.testing.assert_array_equal(e_obs.min_val.numpy(), t_obs.min_val.numpy())
    np.testing.assert_array_equal(e_obs.max_val.numpy(), t_obs.max_val.numpy())
    assert set(e_obs.state_dict()) == set(t_obs.state_dict())


def test_histogram_observer_outliers_clip_like_torch():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(5000), [40.0, -35.0]]).astype(np.float32)
    t_obs, e_obs = tq.HistogramObserver(), eq.HistogramObserver()
    t_obs(torch.from_numpy(x))
    e_obs(ember.tensor(x))
    ts, tz = t_obs.calculate_qparams()
    es, ez = e_obs.calculate_qparams()
    np.testing.assert_allclose(es.numpy(), ts.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ez.numpy(), tz.numpy())
    assert es.item() < 75.0 / 255  # the search clipped the outliers


def test_uncalibrated_observer_warns_and_returns_defaults():
    with pytest.warns(UserWarning, match="must run observer"):
        s, z = eq.MinMaxObserver().calculate_qparams()
    assert s.tolist() == [1.0] and z.tolist() == [0]


@pytest.mark.parametrize(
    "name",
    [
        "default_fake_quant",
        "default_per_channel_weight_fake_quant",
        "default_fused_act_fake_quant",
        "default_fused_wt_fake_quant",
        "default_fused_per_channel_wt_fake_quant",
    ],
)
def test_fake_quantize_module_matches_torch(name):
    t_fq, e_fq = getattr(tq, name)(), getattr(eq, name)()
    per_channel = "per_channel" in name
    rng = np.random.default_rng(6)
    assert e_fq.is_per_channel == per_channel
    for _ in range(3):
        x = (rng.standard_normal((8, 5)) * 2).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_()
        ex = ember.tensor(x, requires_grad=True)
        ty, ey = t_fq(tx), e_fq(ex)
        np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
        ty.sum().backward()
        ey.sum().backward()
        np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())
    np.testing.assert_array_equal(e_fq.scale.numpy(), t_fq.scale.numpy())
    np.testing.assert_array_equal(e_fq.zero_point.numpy(), t_fq.zero_point.numpy())
    assert set(e_fq.state_dict()) == set(t_fq.state_dict())
    e_fq.disable_fake_quant()
    x = ember.randn(8, 5)
    assert e_fq(x) is x
    fresh = getattr(eq, name)()
    fresh.load_state_dict(e_fq.state_dict())
    np.testing.assert_array_equal(fresh.scale.numpy(), e_fq.scale.numpy())


@pytest.mark.parametrize("backend", ["x86", "fbgemm", "qnnpack"])
def test_default_qconfigs_build_observers_like_torch(backend):
    for e_qc, t_qc in [
        (eq.get_default_qconfig(backend), tq.get_default_qconfig(backend)),
        (eq.get_default_qat_qconfig(backend), tq.get_default_qat_qconfig(backend)),
    ]:
        for role in ("activation", "weight"):
            e_o, t_o = getattr(e_qc, role)(), getattr(t_qc, role)()
            assert type(e_o).__name__ == type(t_o).__name__
            assert (e_o.quant_min, e_o.quant_max) == (t_o.quant_min, t_o.quant_max)
            assert repr(e_o.qscheme).split(".")[-1] == repr(t_o.qscheme).split(".")[-1]
            assert repr(e_o.dtype).split(".")[-1] == repr(t_o.dtype).split(".")[-1]
    with pytest.raises(AssertionError, match="not supported"):
        eq.get_default_qconfig("tpu")


def test_qconfig_mapping_precedence():
    qc_g, qc_t, qc_n = eq.default_qconfig, eq.default_per_channel_qconfig, eq.default_qat_qconfig
    m = (
        eq.QConfigMapping()
        .set_global(qc_g)
        .set_object_type(ember.nn.Linear, qc_t)
        .set_module_name("head", qc_n)
    )
    assert m.qconfig_for("body.0", ember.nn.Linear(2, 2)) is qc_t
    assert m.qconfig_for("head", ember.nn.Linear(2, 2)) is qc_n
    assert m.qconfig_for("x", ember.nn.ReLU()) is qc_g
    assert eq.QConfigMapping.from_dict(m.to_dict()).qconfig_for("head", None) is qc_n
    with pytest.raises(ValueError, match="observer instance"):
        eq.QConfig(activation=eq.MinMaxObserver(), weight=eq.default_weight_observer)
