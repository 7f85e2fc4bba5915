"""Quantized tensors and quantized models' state dicts through checkpoints: ``torch.save``
files read by ``ember.load`` (``weights_only=True``), ember's PyTorch-format files read by
``torch.load``, and ember's own format."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

import ember

warnings.filterwarnings("ignore", message=".*quantize_per_tensor, torch.quantize_per_channel")


def _tensors(lib, x):
    return {
        "pt": lib.quantize_per_tensor(lib.tensor(x), 0.1, 3, lib.quint8),
        "pc": lib.quantize_per_channel(
            lib.tensor(x),
            lib.tensor([0.1, 0.2, 0.3], dtype=lib.float64),
            lib.tensor([0, 1, -2]),
            0,
            lib.qint8,
        ),
        "i32": lib.quantize_per_tensor(lib.tensor(x), 0.01, 0, lib.qint32),
        "dtype": lib.qint8,
    }


def _same(e, t):
    assert str(e.dtype).split(".")[1] == str(t.dtype).split(".")[1]
    assert e.qscheme().name == str(t.qscheme()).split(".")[1]
    np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
    np.testing.assert_array_equal(e.dequantize().numpy(), t.dequantize().numpy())


def test_torch_saved_quantized_tensors_load_and_ember_writes_them_back():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    ref = _tensors(torch, x)
    buf = io.BytesIO()
    torch.save(ref, buf)
    buf.seek(0)
    got = ember.load(buf)  # weights_only=True
    for k in ("pt", "pc", "i32"):
        _same(got[k], ref[k])
    assert got["dtype"] is ember.qint8
    out = io.BytesIO()
    ember.save({**got, "view": got["pt"].t()}, out, _use_new_zipfile_serialization=True)
    out.seek(0)
    back = torch.load(out, weights_only=True)
    for k in ("pt", "pc", "i32"):
        _same(got[k], back[k])
    assert back["dtype"] is torch.qint8
    assert torch.equal(back["view"].int_repr(), ref["pt"].t().int_repr())


def test_ember_format_round_trips_quantized_tensors_under_weights_only():
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    src = _tensors(ember, x)
    buf = io.BytesIO()
    ember.save(src, buf)
    buf.seek(0)
    got = ember.load(buf)
    for k in ("pt", "pc", "i32"):
        np.testing.assert_array_equal(got[k].int_repr().numpy(), src[k].int_repr().numpy())
        assert got[k].qscheme() is src[k].qscheme() and got[k].dtype is src[k].dtype
    np.testing.assert_array_equal(
        got["pc"].q_per_channel_scales().numpy(), src["pc"].q_per_channel_scales().numpy()
    )


def _net(lib):
    nn, tq = lib.nn, lib.ao.quantization

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.conv, self.relu = nn.Conv2d(1, 4, 3), nn.ReLU()
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            x = self.relu(self.conv(self.quant(x)))
            return self.dequant(self.fc(x.reshape(x.shape[0], -1)))

    return Net().eval()


def _quantized(lib, x):
    tq = lib.ao.quantization
    m = tq.fuse_modules(_net(lib), [["conv", "relu"]])
    m.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(m, inplace=True)
    m(lib.tensor(x))
    return tq.convert(m)


def test_a_torch_quantized_models_state_dict_loads_into_embers():
    """The path of torchvision's quantized checkpoints: torch's int8 state dict (packed
    params, per-channel weights, scales and zero points) into ember's converted model."""
    x = np.random.default_rng(2).random((2, 1, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    tm = _quantized(torch, x)
    buf = io.BytesIO()
    torch.save(tm.state_dict(), buf)
    buf.seek(0)
    sd = ember.load(buf)
    em = _quantized(ember, x * 0.5)  # other calibration: everything must come from the file
    em.load_state_dict(sd)
    assert em.conv.scale == tm.conv.scale and em.fc.zero_point == tm.fc.zero_point
    with torch.no_grad():
        want = tm(torch.tensor(x)).numpy()
    with ember.no_grad():
        np.testing.assert_allclose(em(ember.tensor(x)).numpy(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bad", ["scheme", "axis"])
def test_corrupt_quantizer_parameters_are_refused(bad):
    import pickle

    from ember._torch_rebuild import QSCHEMES, _quantized_tables, _rebuild_qtensor

    _quantized_tables()
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    buf = io.BytesIO()
    torch.save(_tensors(torch, x)["pc"], buf)
    buf.seek(0)
    good = ember.load(buf)
    from ember._torch_rebuild import Storage

    storage = Storage(good._data.reshape(-1).copy(), good._qdtype)
    scales, zps = ember.tensor([0.1, 0.2, 0.3], dtype=ember.float64), ember.tensor([0, 1, 2])
    params = (
        (QSCHEMES["per_tensor_symmetric"], 0.1, 0)
        if bad == "scheme"
        else (QSCHEMES["per_channel_affine"], scales, zps, 1)  # 3 scales along a dim of 4
    )
    with pytest.raises(pickle.UnpicklingError):
        _rebuild_qtensor(storage, 0, (3, 4), (4, 1), params, False, None)
