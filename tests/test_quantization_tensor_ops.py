"""Functional forms of ops on quantized tensors (ember.relu(q), F.avg_pool2d(q), ember.cat(...)):
quantized results with torch's codes and parameters, or an error naming the op."""

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")


def _pair(shape=(2, 3, 6, 6), scale=0.0371, zp=17, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    q = ember.quantize_per_tensor(ember.tensor(x), scale, zp, ember.quint8)
    tq = torch.quantize_per_tensor(torch.tensor(x), scale, zp, torch.quint8)
    return q, tq


def _same(out, tout):
    assert isinstance(out, ember.quantized.QTensor), type(out)
    assert tout.is_quantized
    assert out.q_scale() == pytest.approx(tout.q_scale(), rel=1e-6)
    assert out.q_zero_point() == tout.q_zero_point()
    assert tuple(out.shape) == tuple(tout.shape)
    np.testing.assert_array_equal(out.int_repr().numpy(), tout.int_repr().numpy())


OPS = {
    "relu": (lambda m, q: m.relu(q), None),
    "F.relu": (lambda m, q: m.nn.functional.relu(q), None),
    "relu6": (lambda m, q: m.nn.functional.relu6(q), None),
    "hardtanh": (lambda m, q: m.nn.functional.hardtanh(q, -0.52, 0.77), None),
    "clamp": (lambda m, q: m.clamp(q, -0.3, 1.1), None),
    "flatten": (lambda m, q: m.flatten(q, 1), None),
    "reshape": (lambda m, q: m.reshape(q, (6, -1)), None),
    "permute": (lambda m, q: m.permute(q, (0, 2, 3, 1)), None),
    "transpose": (lambda m, q: m.transpose(q, 1, 3), None),
    "squeeze": (lambda m, q: m.squeeze(m.unsqueeze(q, 0)), None),
    "unsqueeze": (lambda m, q: m.unsqueeze(q, 2), None),
    "clone": (lambda m, q: m.clone(q), None),
    "flip": (lambda m, q: m.flip(q, (1,)), None),
    "getitem": (lambda m, q: q[1, :, 2:], None),
    "chunk": (lambda m, q: m.chunk(q, 3, 1)[1], None),
    "max": (lambda m, q: m.max(q), None),
    "min": (lambda m, q: m.min(q), None),
    "max_pool1d": (lambda m, q: m.nn.functional.max_pool1d(m.flatten(q, 2), 3), None),
    "max_pool2d": (lambda m, q: m.nn.functional.max_pool2d(q, 2), None),
    "adaptive_avg_pool2d": (lambda m, q: m.nn.functional.adaptive_avg_pool2d(q, (2, 3)), None),
    "avg_pool2d": (lambda m, q: m.nn.functional.avg_pool2d(q, 3, 2, 1), None),
    "avg_pool2d_no_pad": (lambda m, q: m.nn.functional.avg_pool2d(q, 3, 1, 0, False, False), None),
    "avg_pool1d": (lambda m, q: m.nn.functional.avg_pool1d(m.flatten(q, 2), 4, 3, 2), None),
    "interpolate_nearest": (lambda m, q: m.nn.functional.interpolate(q, scale_factor=2), None),
    "leaky_relu": (lambda m, q: m.nn.functional.leaky_relu(q, 0.07), None),
    "gelu": (lambda m, q: m.nn.functional.gelu(q), None),
    "sigmoid": (lambda m, q: m.sigmoid(q), None),
    "tanh": (lambda m, q: q.tanh(), None),
    "hardsigmoid": (lambda m, q: m.nn.functional.hardsigmoid(q), None),
}


@pytest.mark.parametrize("name", list(OPS))
def test_supported_op_matches_torch(name):
    fn, _ = OPS[name]
    q, tq = _pair()
    _same(fn(ember, q), fn(torch, tq))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "hardsigmoid", "relu6", "leaky_relu"])
def test_qint8_activations_match_torch(name):
    fn, _ = OPS[name]
    x = np.random.default_rng(3).standard_normal((3, 40)).astype(np.float32) * 2
    q = ember.quantize_per_tensor(ember.tensor(x), 0.03, -5, ember.qint8)
    tq = torch.quantize_per_tensor(torch.tensor(x), 0.03, -5, torch.qint8)
    _same(fn(ember, q), fn(torch, tq))


@pytest.mark.parametrize("op", ["cat", "stack"])
def test_join_requantizes_to_the_first_input(op):
    (a, ta), (b, tb) = _pair((2, 3), 0.05, 3, seed=1), _pair((2, 3), 0.11, 9, seed=2)
    _same(getattr(ember, op)([a, b], 0), getattr(torch, op)([ta, tb], 0))


def test_dequantize_and_modules_on_quantized_input():
    q, tq = _pair()
    np.testing.assert_array_equal(ember.dequantize(q).numpy(), torch.dequantize(tq).numpy())
    _same(ember.nn.Flatten()(q), torch.nn.Flatten()(tq))
    _same(ember.nn.ReLU6()(q), torch.nn.ReLU6()(tq))


@pytest.mark.parametrize(
    "name,call",
    [
        ("add", lambda q: ember.add(q, q)),
        ("add", lambda q: q + 1),
        ("exp", lambda q: ember.exp(q)),
        ("neg", lambda q: -q),
        ("matmul", lambda q: q @ q),
        ("sum", lambda q: q.sum()),
    ],
)
def test_unsupported_op_raises_naming_it(name, call):
    q, _ = _pair()
    with pytest.raises(RuntimeError, match=rf"Could not run '{name}' .*QuantizedCPU.*dequantize"):
        call(q)


def test_plain_float_tensor_beside_quantized_in_cat_raises():
    q, _ = _pair((2, 3))
    with pytest.raises(RuntimeError, match="Could not run 'cat'"):
        ember.cat([q, ember.randn(2, 3)])


@pytest.mark.parametrize("call", [lambda q: ember.relu(q), lambda q: ember.permute(q, (1, 0))])
def test_per_channel_input_raises_as_torch(call):
    q = ember.quantize_per_channel(
        ember.randn(3, 4), ember.tensor([0.1, 0.2, 0.3]), ember.tensor([0, 1, 2]), 0, ember.qint8
    )
    with pytest.raises(RuntimeError, match="per-channel|kPerTensorAffine"):
        call(q)
    assert isinstance(ember.clone(q), ember.quantized.QTensor)


def test_docs_snippet_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "quantization.md").read_text()
    section = text[text.index("**Ops on quantized tensors.**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/quantization.md", "exec"), scope)
    assert tuple(scope["z"].shape) == (4, 3, 4, 4) and scope["z"].is_quantized
    assert not scope["out"].is_quantized
