"""Quantized tensors and fake quantization: bit-identical to torch on the same inputs."""

import copy
import pickle

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning")

_DT = [("quint8", 3), ("qint8", -5), ("qint32", 7)]
_SCALES = [0.1, 0.0137, 1 / 3]


def _data(scale, n=4099, seed=0):
    """Normal values plus exact ties (k + 0.5) * scale, odd length (vector tails)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    ties = ((np.arange(-300, 300) + 0.5) * np.float32(scale)).astype(np.float32)
    return np.concatenate([x, ties, [np.float32(1e4), np.float32(-1e4)]])


@pytest.mark.parametrize("scale", _SCALES)
@pytest.mark.parametrize("name,zp", _DT)
def test_quantize_per_tensor_bit_identical(scale, name, zp):
    x = _data(scale)
    if name == "qint32":  # torch's qint32 kernel rounds exact .5 ties two ways (vector body:
        x = x[np.abs(x / np.float32(scale) % 1 - 0.5) > 1e-3]  # x*inv+zp; scalar tails: zp+x*inv)
    t = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, getattr(torch, name))
    e = ember.quantize_per_tensor(ember.tensor(x), scale, zp, getattr(ember, name))
    assert e.dtype is getattr(ember, name)
    np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
    np.testing.assert_array_equal(e.dequantize().numpy(), t.dequantize().numpy())
    assert e.q_scale() == t.q_scale() and e.q_zero_point() == t.q_zero_point()


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("name", ["quint8", "qint8"])
def test_quantize_per_channel_bit_identical(axis, name):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 7, 5)) * 2).astype(np.float32)
    n = x.shape[axis]
    scales = rng.uniform(0.01, 0.2, n)
    zps = rng.integers(0, 20, n) if name == "quint8" else rng.integers(-10, 10, n)
    t = torch.quantize_per_channel(
        torch.from_numpy(x),
        torch.from_numpy(scales),
        torch.from_numpy(zps),
        axis,
        getattr(torch, name),
    )
    e = ember.quantize_per_channel(
        ember.tensor(x), ember.tensor(scales), ember.tensor(zps), axis, getattr(ember, name)
    )
    np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())
    np.testing.assert_array_equal(e.dequantize().numpy(), t.dequantize().numpy())
    np.testing.assert_array_equal(
        e.q_per_channel_scales().numpy(), t.q_per_channel_scales().numpy()
    )
    np.testing.assert_array_equal(
        e.q_per_channel_zero_points().numpy(), t.q_per_channel_zero_points().numpy()
    )
    assert e.q_per_channel_axis() == axis
    assert e.qscheme() is ember.per_channel_affine


@pytest.mark.parametrize("reduce_range", [False, True])
@pytest.mark.parametrize("name", ["quint8", "qint8"])
def test_quantize_per_tensor_dynamic(reduce_range, name):
    rng = np.random.default_rng(2)
    for shift in (-1.5, 0.0, 2.0):
        x = (rng.standard_normal(513) + shift).astype(np.float32)
        t = torch.quantize_per_tensor_dynamic(
            torch.from_numpy(x), getattr(torch, name), reduce_range
        )
        e = ember.quantize_per_tensor_dynamic(ember.tensor(x), getattr(ember, name), reduce_range)
        assert (e.q_scale(), e.q_zero_point()) == (t.q_scale(), t.q_zero_point())
        np.testing.assert_array_equal(e.int_repr().numpy(), t.int_repr().numpy())


@pytest.mark.parametrize(
    "scale,zp,qmin,qmax", [(0.1, 3, 0, 255), (0.0137, 0, -128, 127), (1 / 3, 10, 0, 15)]
)
def test_fake_quantize_per_tensor_values_and_grad(scale, zp, qmin, qmax):
    x = _data(scale, n=2001)
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.fake_quantize_per_tensor_affine(tx, scale, zp, qmin, qmax)
    ex = ember.tensor(x, requires_grad=True)
    ey = ember.fake_quantize_per_tensor_affine(ex, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
    g = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    ty.backward(torch.from_numpy(g))
    ey.backward(ember.tensor(g))
    np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())
    assert (ex.grad.numpy() == 0).any()  # zero outside the clamp range


def test_fake_quantize_per_channel_values_and_grad():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 4, 3)) * 4).astype(np.float32)
    scale = rng.uniform(0.01, 0.05, 4).astype(np.float32)
    zp = rng.integers(-5, 5, 4).astype(np.int32)
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.fake_quantize_per_channel_affine(
        tx, torch.from_numpy(scale), torch.from_numpy(zp), 1, -128, 127
    )
    ex = ember.tensor(x, requires_grad=True)
    ey = ember.fake_quantize_per_channel_affine(
        ex, ember.tensor(scale), ember.tensor(zp), 1, -128, 127
    )
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
    ty.sum().backward()
    ey.sum().backward()
    np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())


def test_qtensor_api_and_shape_ops():
    x = ember.tensor(np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4))
    q = ember.quantize_per_tensor(x, 0.01, 10, ember.quint8)
    assert q.is_quantized and not x.is_quantized
    assert q.qscheme() is ember.per_tensor_affine and repr(q.qscheme()) == "ember.per_tensor_affine"
    assert q.int_repr().dtype is ember.uint8 and q.element_size() == 1
    r = q.reshape(6, 4)
    assert r.is_quantized and r.q_scale() == 0.01 and tuple(r.shape) == (6, 4)
    assert q.flatten(1).shape == (2, 12) and q.permute(2, 0, 1).shape == (4, 2, 3)
    np.testing.assert_array_equal(q[1].dequantize().numpy(), q.dequantize().numpy()[1])
    relu = ember.nn.functional.relu(q)
    np.testing.assert_array_equal(relu.dequantize().numpy(), np.maximum(q.dequantize().numpy(), 0))
    pooled = ember.nn.functional.max_pool2d(q, 2)
    assert pooled.is_quantized and pooled.shape == (2, 1, 2)
    for clone in (pickle.loads(pickle.dumps(q)), copy.deepcopy(q)):
        assert clone.q_scale() == 0.01 and clone.dtype is ember.quint8
        np.testing.assert_array_equal(clone.int_repr().numpy(), q.int_repr().numpy())
    assert "dtype=ember.quint8" in repr(q) and "scale=0.01" in repr(q)
    assert ember.dequantize([q])[0].dtype is ember.float32


def test_bad_input_errors():
    x = ember.randn(4)
    with pytest.raises(RuntimeError, match="scale must be positive"):
        ember.quantize_per_tensor(x, 0.0, 0, ember.quint8)
    with pytest.raises(RuntimeError, match="dtype must be one of"):
        ember.quantize_per_tensor(x, 0.1, 0, ember.float32)
    with pytest.raises(RuntimeError, match="expected 4 scales"):
        ember.quantize_per_channel(ember.randn(4, 2), [0.1] * 3, [0] * 3, 0, ember.qint8)
    q = ember.quantize_per_tensor(x, 0.1, 0, ember.quint8)
    with pytest.raises(RuntimeError, match="per-channel"):
        q.q_per_channel_scales()
    with pytest.raises(TypeError, match="dequantize"):
        np.asarray(q)
    with pytest.raises(RuntimeError, match="zero_point"):
        ember.fake_quantize_per_tensor_affine(x, 0.1, 300, 0, 255)
