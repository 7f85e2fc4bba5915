"""ember.onnx.export of quantized models as QDQ ONNX: the checker accepts them, onnxruntime's
outputs equal ember's int8 model within one output quantization step, and onnxruntime's
optimizer turns the QDQ pattern into its int8 kernels."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.ao import quantization as tq

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

_QUANTIZE_PER_TENSOR = ember.quantized.quantize_per_tensor  # before any export patches it


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.fc1, self.relu, self.fc2 = nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)

    def forward(self, x):
        return self.dequant(self.fc2(self.relu(self.fc1(self.quant(x)))))


class DigitsCNN(nn.Module):
    """examples/quantization/digits_ptq_qat.py's architecture (8 channels to stay fast)."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv1, self.relu1 = nn.Conv2d(1, c, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU()
        self.pool, self.flatten = nn.MaxPool2d(2), nn.Flatten()
        self.fc1, self.relu3, self.fc2 = nn.Linear(2 * c * 16, 32), nn.ReLU(), nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(self.quant(x))))))
        return self.dequant(self.fc2(self.relu3(self.fc1(self.flatten(x)))))


FUSE_CNN = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


class Branches(nn.Module):
    """FloatFunctional add / cat, a reshape, Conv1d and quantized activations."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)
        self.add, self.cat = nn.quantized.FloatFunctional(), nn.quantized.FloatFunctional()
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.act = nn.Hardswish()

    def forward(self, x):
        x = self.quant(x)
        y = self.cat.cat([self.add.add(self.a(x), self.b(x)), x], 1)
        y = self.act(self.conv(y.reshape(y.shape[0], 4, 8)))
        return self.dequant(y)


def _quantize(model, shape, fuse=None):
    model = model.eval()
    if fuse:
        model = tq.fuse_modules(model, fuse)
    model.qconfig = tq.get_default_qconfig("x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq.prepare(model, inplace=True)
    gen = np.random.default_rng(0)
    for _ in range(3):
        model(ember.tensor(gen.standard_normal(shape).astype(np.float32)))
    return tq.convert(model)


def _export(model, x, tmp_path):
    f = io.BytesIO()
    proto = ember.onnx.export(
        model,
        x,
        f,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    onnx.checker.check_model(proto)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    sess = ort.InferenceSession(f.getvalue(), so, providers=["CPUExecutionProvider"])
    fused = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    return proto, sess, fused


def _compare(model, sess, feature_shape, atol):
    gen = np.random.default_rng(1)
    for batch in (1, 5):  # the exported batch is 4: both sizes go through dynamic_axes
        x = (1.5 * gen.standard_normal((batch, *feature_shape))).astype(np.float32)
        want = model(ember.tensor(x)).numpy()
        got = sess.run(None, {"x": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def _ops(proto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


def _int8_inits(proto) -> dict:
    from onnx import numpy_helper

    return {
        t.name: numpy_helper.to_array(t)
        for t in proto.graph.initializer
        if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(t.dims) >= 2
    }


@pytest.mark.parametrize("name", ["mlp", "digits_cnn", "branches"])
def test_static_qdq_matches_ember(name, tmp_path):
    model, shape, fuse = {
        "mlp": (MLP(), (16,), None),
        "digits_cnn": (DigitsCNN(), (1, 8, 8), FUSE_CNN),
        "branches": (Branches(), (16,), None),
    }[name]
    q = _quantize(model, (32, *shape), fuse)
    proto, sess, fused = _export(q, ember.randn(4, *shape), tmp_path)
    ops = _ops(proto)
    assert ops[0] == "QuantizeLinear" and "DequantizeLinear" in ops
    weights = _int8_inits(proto)  # int8 weights, one initializer per quantized layer
    n_layers = sum(hasattr(m, "_RELU") for m in q.modules())
    assert len(weights) == n_layers and all(w.dtype == np.int8 for w in weights.values())
    # one quantization step of the output: the last layer's output scale
    last = [m for m in q.modules() if isinstance(getattr(m, "scale", None), float)][-1]
    _compare(q, sess, shape, atol=last.scale * 1.0001)
    if name == "mlp":
        assert "QGemm" in fused and "Gemm" not in fused
    if name == "digits_cnn":
        assert {"QLinearConv", "QGemm"} <= fused and "Conv" not in fused
        # per-channel weights: the weights' DequantizeLinear carry the channel axis
        dq_w = [
            n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
        ]
        assert len(dq_w) == 4 and all(a.name == "axis" for n in dq_w for a in n.attribute)
        scales = {
            n.input[0]: onnx.numpy_helper.to_array(
                next(t for t in proto.graph.initializer if t.name == n.input[1])
            )
            for n in dq_w
        }
        conv1 = next(v for k, v in scales.items() if k.startswith("conv1"))
        np.testing.assert_allclose(
            conv1, q.conv1.weight().q_per_channel_scales().numpy(), rtol=1e-6
        )


@pytest.mark.parametrize("reduce_range", [True, False])
def test_dynamic_linear_matches_ember(reduce_range, tmp_path):
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    q = tq.quantize_dynamic(model, {nn.Linear}, dtype=ember.qint8)
    for m in q.modules():
        if hasattr(m, "reduce_range"):
            m.reduce_range = reduce_range
    proto, sess, fused = _export(q, ember.randn(4, 16), tmp_path)
    assert "MatMulInteger" in _ops(proto)
    assert "MatMul" not in fused and "Gemm" not in fused  # int8 kernels only
    assert ("MatMulIntegerToFloat" if reduce_range else "DynamicQuantizeMatMul") in fused
    # the same 7-bit (reduce_range) or 8-bit activation codes as ember: float rounding only
    _compare(q, sess, (16,), atol=1e-5)


def test_dynamic_linear_3d_input(tmp_path):
    q = tq.quantize_dynamic(nn.Sequential(nn.Linear(6, 5)).eval(), {nn.Linear}, dtype=ember.qint8)
    _, sess, _ = _export(q, ember.randn(4, 3, 6), tmp_path)
    _compare(q, sess, (3, 6), atol=1e-5)


@pytest.mark.parametrize("opset", [14, 21])
def test_functional_quantize_and_opsets(opset):
    """quantize_per_tensor / .dequantize() in forward, ops on quantized values in between."""

    class F(nn.Module):
        def forward(self, x):
            y = ember.quantize_per_tensor(x, 0.05, 10, ember.quint8)
            y = nn.functional.max_pool2d(y, 2).relu().flatten(1)
            return y.dequantize() * 2

    x = ember.randn(2, 3, 8, 8)
    proto = ember.onnx.export(F(), x, opset_version=opset)
    assert _ops(proto)[:2] == ["QuantizeLinear", "DequantizeLinear"]
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x.numpy()})[0]
    np.testing.assert_array_equal(got, F()(x).numpy())
    # the tracer's patch is undone
    assert ember.quantize_per_tensor is ember.quantized.quantize_per_tensor is _QUANTIZE_PER_TENSOR


def test_quantized_output_is_uint8_codes(tmp_path):
    """Without a DeQuantStub the model's output is the quantized codes (uint8)."""
    q = _quantize(MLP(), (32, 16))
    q.dequant = nn.Identity()
    x = ember.randn(3, 16)
    proto = ember.onnx.export(q, x)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x.numpy()})[0]
    assert np.abs(got.astype(int) - q(x).int_repr().numpy().astype(int)).max() <= 1


def test_unsupported_quantized_modules_are_refused():
    q = _quantize(MLP(), (32, 16))
    q.quant = nn.Identity()  # float reaches a quantized Linear: the example run names it
    with pytest.raises(RuntimeError, match="QuantStub"):
        ember.onnx.export(q, ember.randn(2, 16))
    lstm = tq.quantize_dynamic(nn.Sequential(nn.LSTM(4, 8)), {nn.LSTM}, dtype=ember.qint8)
    with pytest.raises(ember.onnx.OnnxExporterError, match="DynamicQuantizedLSTM.* not "):
        ember.onnx.export(lstm, ember.randn(3, 2, 4))


def test_docs_snippet_runs(tmp_path, monkeypatch):
    import pathlib
    import re

    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "onnx.md").read_text()
    section = doc[doc.index("## Quantized models (QDQ)") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "docs/onnx.md", "exec"), ns)  # noqa: S102
    for fname, model, shape in (
        ("digits_int8.onnx", ns["qmodel"], (3, 1, 8, 8)),
        ("mlp_dynamic.onnx", ns["dyn"], (3, 64)),
    ):
        onnx.checker.check_model(str(tmp_path / fname))
        x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
        got = ort.InferenceSession(str(tmp_path / fname)).run(None, {"x": x})[0]
        step = getattr(model.fc, "scale", 1e-5) if fname.startswith("digits") else 1e-5
        np.testing.assert_allclose(got, model(ember.tensor(x)).numpy(), rtol=0, atol=step * 1.0001)
