"""ONNX export at opsets 11-13: the models of the tutorials/examples that pass opset_version=11,
12 or 13 load in the full ONNX checker and onnxruntime and give ember's eager outputs."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

OPSETS = (11, 12, 13)


def _run(model, args, opset, atol=1e-5, **kw):
    """Export at ``opset``; full-check the model; compare onnxruntime with eager ember."""
    args = args if isinstance(args, tuple) else (args,)
    proto = ember.onnx.export(model, args, None, opset_version=opset, **kw)
    assert proto.opset_import[0].version == opset
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    got = sess.run(None, feeds)
    with ember.no_grad():
        want = model(*args)
    want = want if isinstance(want, (tuple, list)) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=atol, rtol=1e-4)
    return proto


def _ops(proto):
    return {n.op_type for n in proto.graph.node}


class SuperResolution(nn.Module):
    """pytorch/tutorials' super_resolution shape, plus BatchNorm / MaxPool / upsample."""

    def __init__(self, upscale=2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 4 * upscale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv1(x))))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.shuffle(self.conv2(x))


class WordLSTM(nn.Module):
    """pytorch/examples word_language_model's RNNModel (LSTM) shape."""

    def __init__(self, ntoken=20, ninp=8, nhid=12):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, 2)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens, h0, c0):
        emb = self.drop(self.encoder(tokens))
        out, (h, c) = self.rnn(emb, (h0, c0))
        decoded = self.decoder(self.drop(out)).view(-1, 20)
        return F.log_softmax(decoded, dim=1), h, c


class ResidualBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.c1, self.c2 = nn.Conv2d(ch, ch, 3), nn.Conv2d(ch, ch, 3)
        self.n1 = nn.InstanceNorm2d(ch, affine=True)
        self.n2 = nn.InstanceNorm2d(ch, affine=True)

    def forward(self, x):
        y = F.relu(self.n1(self.c1(self.pad(x))))
        return x + self.n2(self.c2(self.pad(y)))


class TransformerNet(nn.Module):
    """pytorch/examples fast_neural_style's TransformerNet shape (exported there at opset 11)."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.down = nn.Conv2d(3, 8, 3, stride=2)
        self.norm = nn.InstanceNorm2d(8, affine=True)
        self.res = ResidualBlock(8)
        self.up = nn.Conv2d(8, 3, 3)

    def forward(self, x):
        y = F.relu(self.norm(self.down(self.pad(x))))
        y = F.interpolate(self.res(y), mode="nearest", scale_factor=2)
        return self.up(self.pad(y))


def _model(name):
    ember.manual_seed(0)
    if name == "mlp":
        m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4), nn.LogSoftmax(dim=1))
        return m, (ember.randn(3, 6),)
    if name == "super_resolution":
        m = SuperResolution()
        with ember.no_grad():  # non-trivial running statistics
            m.bn.running_mean.copy_(ember.randn(8) * 0.1)
            m.bn.running_var.copy_(ember.rand(8) + 0.5)
        return m, (ember.randn(1, 1, 8, 8),)
    if name == "word_lstm":
        toks = ember.randint(0, 20, (5, 2))
        return WordLSTM(), (toks, ember.zeros(2, 2, 12), ember.zeros(2, 2, 12))
    if name == "transformer":
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        return layer, (ember.randn(2, 5, 8),)
    if name == "fast_neural_style":
        return TransformerNet(), (ember.randn(1, 3, 8, 8),)
    raise AssertionError(name)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize(
    "name", ["mlp", "super_resolution", "word_lstm", "transformer", "fast_neural_style"]
)
def test_models_at_old_opsets(name, opset):
    model, args = _model(name)
    _run(model.eval(), args, opset, atol=1e-4)


class _Forms(nn.Module):
    """The node forms that differ before opset 13/14: axes inputs, softmax axes, Trilu,
    GreaterOrEqual, HardSwish, Shape slices."""

    def forward(self, x):
        a, b = x.split([2, 3], dim=1)
        s = F.softmax(x, dim=1) + F.log_softmax(x, dim=-1)
        t = x.unsqueeze(0).squeeze(0).sum(dim=2, keepdim=True)
        m = (x >= 0).float() + (x <= 0.5).float()
        return s + t + m + F.hardswish(x), a.mean(1) + b.amax(1), x.tril(1) + x.triu(-1)


@pytest.mark.parametrize("opset", OPSETS + (14,))
def test_changed_forms(opset):
    x = ember.randn(2, 5, 4)
    proto = _run(_Forms(), (x,), opset, dynamic_axes={"x": {0: "b", 2: "n"}}, input_names=["x"])
    if opset < 14:
        assert not _ops(proto) & {"Trilu", "HardSwish"}
    if opset < 12:
        assert not _ops(proto) & {"GreaterOrEqual", "LessOrEqual"}
    # run at another batch / last size: the dynamic shapes of the rewritten forms hold
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x2 = ember.randn(3, 5, 6)
    got = sess.run(None, {"x": x2.numpy()})
    with ember.no_grad():
        want = _Forms()(x2)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


class _Composed(nn.Module):
    """Ops composed from older operators: Bilinear (Einsum is 12+), CELU (12+), Softmin over
    a middle axis, interpolate to a size (Shape start/end is 15+)."""

    def __init__(self):
        super().__init__()
        self.bil = nn.Bilinear(4, 3, 2)

    def forward(self, x, y):
        z = self.bil(x, y) + F.celu(x, alpha=0.7).sum(-1, keepdim=True)
        img = F.interpolate(x[:, None, None], size=(5, 6), mode="nearest")
        return z, F.softmin(img, dim=2)


@pytest.mark.parametrize("opset", (11, 14))
def test_composed_ops(opset):
    ember.manual_seed(0)
    proto = _run(_Composed(), (ember.randn(2, 4), ember.randn(2, 3)), opset)
    if opset == 11:
        assert not _ops(proto) & {"Einsum", "Celu"}


def test_op_missing_at_old_opset_names_op_and_minimum():
    class E(nn.Module):
        def forward(self, x):
            return ember.einsum("ij,jk->ik", x, x)

    x = ember.randn(3, 3)
    with pytest.raises(ember.onnx.UnsupportedOperatorError, match=r"'Einsum' needs opset 12"):
        ember.onnx.export(E(), (x,), None, opset_version=11)
    _run(E(), (x,), 12)


def test_opset_range():
    lin = nn.Linear(3, 2)
    with pytest.raises(ember.onnx.OnnxExporterError, match="use 7 to 21"):
        ember.onnx.export(lin, ember.randn(1, 3), None, opset_version=6)
    # 7-10: written at 11, then onnx's version converter steps down
    assert (
        ember.onnx.export(lin, ember.randn(1, 3), None, opset_version=10).opset_import[0].version
        == 10
    )


def test_docs_snippet_runs():
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "onnx.md"
    section = doc.read_text().split("## Older opsets")[1].split("\n## ")[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    exec(compile(block, str(doc), "exec"), {"__name__": "__docs__"})  # noqa: S102
