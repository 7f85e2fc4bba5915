"""ember.onnx.export: onnxruntime's outputs equal ember's, and the checker accepts the model."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ATOL = RTOL = 1e-5


def _flat(v):
    if isinstance(v, dict):
        return _flat(list(v.values()))
    if isinstance(v, (tuple, list)):
        return [x for e in v for x in _flat(e)]
    return [] if v is None else [v]


def check(model, args, tmp_path=None, input_names=None, dynamic_axes=None, others=(), **kw):
    """Export, run the checker, then compare onnxruntime with ember on args and others."""
    if isinstance(model, nn.Module):
        model.eval()
    args = args if isinstance(args, tuple) else (args,)
    f = str(tmp_path / "m.onnx") if tmp_path is not None else None
    proto = ember.onnx.export(
        model, args, f, input_names=input_names, dynamic_axes=dynamic_axes, **kw
    )
    if f is not None:
        proto = onnx.load(f)
    onnx.checker.check_model(proto)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for a in (args, *others):
        feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), _flat(a))}
        got = sess.run(None, feeds)
        with ember.no_grad():
            ref = _flat(model(*a))
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            assert g.shape == tuple(r.shape)
            np.testing.assert_allclose(g, r.numpy(), atol=ATOL, rtol=RTOL)
    return proto


r = ember.randn


def _tok(*shape, n=20):
    return ember.randint(0, n, shape)


# ---- every module family -----------------------------------------------------------------
FAMILIES = {
    "linear": lambda: (nn.Linear(4, 3), r(2, 5, 4)),
    "bilinear": lambda: (nn.Bilinear(4, 5, 3), (r(2, 4), r(2, 5))),
    "conv1d_groups_dilation": lambda: (nn.Conv1d(4, 6, 3, groups=2, dilation=2), r(2, 4, 9)),
    "conv2d_reflect": lambda: (
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        r(1, 3, 6, 6),
    ),
    "conv2d_circular_same": lambda: (
        nn.Conv2d(2, 2, 3, padding="same", padding_mode="circular"),
        r(1, 2, 5, 5),
    ),
    "conv2d_replicate_stride": lambda: (
        nn.Conv2d(2, 3, 3, 2, 1, padding_mode="replicate"),
        r(2, 2, 7, 7),
    ),
    "conv3d": lambda: (nn.Conv3d(2, 3, 2, stride=2), r(1, 2, 4, 4, 4)),
    "conv_transpose1d": lambda: (
        nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1),
        r(2, 3, 5),
    ),
    "conv_transpose2d_groups": lambda: (
        nn.ConvTranspose2d(4, 4, 3, stride=2, groups=2, dilation=2),
        r(1, 4, 4, 4),
    ),
    "conv_transpose3d": lambda: (nn.ConvTranspose3d(2, 2, 2, stride=2), r(1, 2, 2, 3, 3)),
    "maxpool1d": lambda: (nn.MaxPool1d(3, 2), r(2, 3, 9)),
    "maxpool2d_ceil_pad_dil": lambda: (
        nn.MaxPool2d(3, 2, 1, dilation=1, ceil_mode=True),
        r(1, 3, 8, 8),
    ),
    "maxpool3d": lambda: (nn.MaxPool3d(2), r(1, 2, 4, 4, 4)),
    "avgpool1d": lambda: (nn.AvgPool1d(3, 2, 1), r(2, 3, 8)),
    "avgpool2d_no_pad_count": lambda: (
        nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        r(1, 3, 8, 8),
    ),
    "avgpool3d": lambda: (nn.AvgPool3d(2), r(1, 2, 4, 4, 4)),
    "lppool2d": lambda: (nn.LPPool2d(2, 2), r(1, 2, 6, 6).abs()),
    "adaptive_avg2d_uneven": lambda: (nn.AdaptiveAvgPool2d((3, 5)), r(1, 3, 8, 7)),
    "adaptive_avg1d_global": lambda: (nn.AdaptiveAvgPool1d(1), r(2, 3, 8)),
    "adaptive_max2d": lambda: (nn.AdaptiveMaxPool2d(2), r(1, 3, 8, 8)),
    "adaptive_max3d_uneven": lambda: (nn.AdaptiveMaxPool3d((2, 3, 3)), r(1, 2, 5, 5, 4)),
    "batchnorm1d": lambda: (_stats(nn.BatchNorm1d(4)), r(3, 4)),
    "batchnorm2d": lambda: (_stats(nn.BatchNorm2d(3)), r(2, 3, 4, 4)),
    "batchnorm3d_no_affine": lambda: (_stats(nn.BatchNorm3d(2, affine=False)), r(2, 2, 2, 3, 3)),
    "layernorm": lambda: (nn.LayerNorm([4, 8]), r(2, 4, 8)),
    "groupnorm": lambda: (nn.GroupNorm(2, 4), r(2, 4, 3, 3)),
    "instancenorm1d_affine": lambda: (nn.InstanceNorm1d(4, affine=True), r(2, 4, 5)),
    "instancenorm2d": lambda: (nn.InstanceNorm2d(3), r(2, 3, 4, 4)),
    "rmsnorm": lambda: (nn.RMSNorm(8, eps=1e-6), r(2, 3, 8)),
    "dropout_eval": lambda: (nn.Sequential(nn.Dropout(0.5), nn.Dropout2d(0.3)), r(2, 3, 4, 4)),
    "embedding_padding": lambda: (
        nn.Embedding(10, 4, padding_idx=0),
        ember.tensor([[0, 2], [3, 9]]),
    ),
    "embeddingbag_2d_mean": lambda: (nn.EmbeddingBag(10, 4), ember.tensor([[1, 2], [3, 4]])),
    "embeddingbag_offsets_max": lambda: (_Bag(), ember.tensor([1, 2, 4, 5, 4, 3, 2, 9])),
    "rnn_relu_2layer": lambda: (nn.RNN(4, 5, 2, nonlinearity="relu"), r(3, 2, 4)),
    "lstm_bidir_batch_first": lambda: (
        nn.LSTM(4, 5, 2, bidirectional=True, batch_first=True),
        r(2, 3, 4),
    ),
    "lstm_initial_states": lambda: (nn.LSTM(4, 5, 2), (r(3, 2, 4), (r(2, 2, 5), r(2, 2, 5)))),
    "gru_bidir_h0": lambda: (nn.GRU(4, 5, 2, bidirectional=True), (r(3, 2, 4), r(4, 2, 5))),
    "gru_unbatched": lambda: (nn.GRU(4, 5), r(3, 4)),
    "lstm_cell": lambda: (nn.LSTMCell(4, 5), (r(2, 4), (r(2, 5), r(2, 5)))),
    "gru_cell": lambda: (nn.GRUCell(4, 5), r(2, 4)),
    "rnn_cell": lambda: (nn.RNNCell(4, 5, nonlinearity="relu"), (r(2, 4), r(2, 5))),
    "mha_seq_first": lambda: (nn.MultiheadAttention(8, 2), (r(3, 2, 8), r(4, 2, 8), r(4, 2, 8))),
    "mha_kdim_vdim": lambda: (
        nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True),
        (r(2, 3, 8), r(2, 4, 6), r(2, 4, 5)),
    ),
    "encoder_layer_norm_first_gelu": lambda: (
        nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.1, activation="gelu", norm_first=True, batch_first=True
        ),
        r(2, 5, 8),
    ),
    "decoder_layer": lambda: (nn.TransformerDecoderLayer(8, 2, 16), (r(4, 2, 8), r(5, 2, 8))),
    "transformer": lambda: (nn.Transformer(8, 2, 2, 1, 16), (r(5, 2, 8), r(3, 2, 8))),
    "flatten_unflatten": lambda: (
        nn.Sequential(nn.Flatten(), nn.Unflatten(1, (4, 6))),
        r(2, 4, 2, 3),
    ),
    "prelu_channels": lambda: (nn.PReLU(3), r(2, 3, 4)),
    "local_response_norm": lambda: (nn.LocalResponseNorm(3), r(2, 5, 4, 4)),
    "padding_modules": lambda: (
        nn.Sequential(
            nn.ZeroPad2d((1, 2, 0, 1)),
            nn.ReflectionPad2d(1),
            nn.ReplicationPad2d(1),
            nn.ConstantPad2d(1, 0.5),
        ),
        r(1, 2, 3, 3),
    ),
    "upsample_nearest": lambda: (nn.Upsample(scale_factor=2), r(1, 2, 3, 3)),
    "upsample_bilinear_align": lambda: (
        nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
        r(1, 2, 3, 3),
    ),
    "upsample_bicubic": lambda: (nn.Upsample(scale_factor=2, mode="bicubic"), r(1, 2, 4, 4)),
    "pixel_shuffle_unshuffle": lambda: (
        nn.Sequential(nn.PixelShuffle(2), nn.PixelUnshuffle(2)),
        r(1, 8, 3, 3),
    ),
    "softmax2d": lambda: (nn.Softmax2d(), r(1, 3, 2, 2)),
    "cosine_similarity": lambda: (nn.CosineSimilarity(), (r(2, 3), r(2, 3))),
}


def _stats(bn):
    with ember.no_grad():  # non-trivial running statistics
        bn.running_mean.copy_(ember.randn(*bn.running_mean.shape))
        bn.running_var.copy_(ember.rand(*bn.running_var.shape) + 0.5)
    return bn


class _Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode="max")

    def forward(self, x):
        return self.bag(x, ember.tensor([0, 3, 5]))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_module_family_matches_onnxruntime(family):
    ember.manual_seed(0)
    model, args = FAMILIES[family]()
    check(model, args)


ACTIVATIONS = [
    nn.ReLU(),
    nn.ReLU6(),
    nn.LeakyReLU(0.2),
    nn.PReLU(),
    nn.RReLU(),
    nn.ELU(0.7),
    nn.CELU(1.3),
    nn.SELU(),
    nn.GELU(),
    nn.GELU("tanh"),
    nn.SiLU(),
    nn.Mish(),
    nn.Sigmoid(),
    nn.Tanh(),
    nn.Softplus(beta=2.0, threshold=3.0),
    nn.Softsign(),
    nn.Hardtanh(-0.5, 0.5),
    nn.Hardsigmoid(),
    nn.Hardswish(),
    nn.Tanhshrink(),
    nn.Softshrink(0.3),
    nn.Hardshrink(0.3),
    nn.LogSigmoid(),
    nn.Threshold(0.1, 2.0),
    nn.GLU(),
    nn.Softmax(-1),
    nn.LogSoftmax(1),
    nn.Softmin(1),
]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda m: type(m).__name__ + str(id(m) % 97))
def test_activations(act):
    check(act, r(3, 4) * 3)


# ---- functional ops the models use -------------------------------------------------------
class _Ops(nn.Module):
    def forward(self, x, idx):
        b, c, n = x.shape
        y = x.permute(0, 2, 1).reshape(b, -1)[:, 1:7:2]  # slicing with steps
        z = ember.cat([x[..., :2], x[:, None, 0, -2:].squeeze(1)[:, None]], dim=1)
        s = x.sum(dim=(1, 2), keepdim=True) + x.mean(-1).amax(1, keepdim=True).unsqueeze(-1)
        v = x.var(dim=2) + x.std(2, unbiased=False) + x.max(dim=2)[0]
        w = ember.where(x > 0, x, x * 0.1).clamp(-0.5, 0.5).masked_fill(x < -1, 2.0)
        a, bb = x.chunk(2, dim=-1)
        p = F.pad(x, (1, 2), mode="reflect") + F.pad(x, (1, 2), value=0.5)
        g = x.index_select(2, idx) + x[:, :, idx]
        st = ember.stack([a, bb], dim=0).flatten(0, 1).transpose(0, 1)
        e = x.expand(2, b, c, n).repeat(1, 1, 2, 1) @ x.new_ones(n, 3)
        logits = (
            x.argmax(-1, keepdim=True).float() + (x**2).sqrt().exp().log() + x.abs().neg().erf()
        )
        return (
            y,
            z,
            s * v.unsqueeze(-1),
            w,
            a - bb,
            p,
            g,
            st,
            e,
            logits,
            x.softmax(-1).cumsum(-1),
            F.normalize(x, dim=1),
            F.layer_norm(x, (n,)),
            ember.einsum("bcn,bdn->bcd", x, x),
            x.tril(0) + x.triu(1).flip(-1),
        )


def test_tensor_ops_match_onnxruntime():
    ember.manual_seed(1)
    check(_Ops(), (r(2, 4, 6), ember.tensor([0, 5, 2])))


def test_sdpa_masks_and_causal():
    class M(nn.Module):
        def forward(self, q, k, v, bool_mask, float_mask):
            return (
                F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask),
                F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, scale=0.3),
                F.scaled_dot_product_attention(q, q, q, is_causal=True),
                F.scaled_dot_product_attention(q, k[:, :1], v[:, :1], enable_gqa=True),
            )

    ember.manual_seed(2)
    bm = ember.rand(4, 6) > 0.3
    bm[:, 0] = True
    check(M(), (r(2, 2, 4, 8), r(2, 2, 6, 8), r(2, 2, 6, 8), bm, r(4, 6)))


def test_mha_masks_and_weights():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x, kpm, am):
            out, w = self.a(x, x, x, key_padding_mask=kpm, attn_mask=am, average_attn_weights=False)
            return out, w, self.a(x, x, x, attn_mask=am.float() * -1e4)[0]

    ember.manual_seed(3)
    kpm = ember.zeros(2, 5, dtype=ember.bool)
    kpm[0, 3:] = True
    am = ember.triu(ember.ones(5, 5, dtype=ember.bool), diagonal=1)
    check(M(), (r(2, 5, 8), kpm, am))


# ---- whole models ------------------------------------------------------------------------
class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.fc = nn.Conv2d(4, 8, 3), nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.avg_pool2d(F.relu(self.c2(x)), 2)
        return F.log_softmax(self.fc(ember.flatten(x, 1)), dim=1)


class LSTMLM(nn.Module):
    """pytorch/examples' word language model (RNNModel, LSTM)."""

    def __init__(self, ntoken=20, ninp=8, nhid=12, nlayers=2):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(0.5)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=0.5)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden


class CausalSelfAttention(nn.Module):
    def __init__(self, C, H, T, fused):
        super().__init__()
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.n_head, self.n_embd, self.fused = H, C, fused
        self.register_buffer("bias", ember.tril(ember.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class GPT(nn.Module):
    """nanoGPT's layout: token + position embeddings, pre-norm blocks, tied head."""

    def __init__(self, V=30, C=16, H=2, T=16, L=2):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.attn = nn.ModuleList([CausalSelfAttention(C, H, T, i % 2 == 1) for i in range(L)])
        self.ln1 = nn.ModuleList([nn.LayerNorm(C) for _ in range(L)])
        self.ln2 = nn.ModuleList([nn.LayerNorm(C) for _ in range(L)])
        self.mlp = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(C, 4 * C),
                    nn.GELU(approximate="tanh"),
                    nn.Linear(4 * C, C),
                    nn.Dropout(0.1),
                )
                for _ in range(L)
            ]
        )
        self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        b, t = idx.size()
        x = self.wte(idx) + self.wpe(ember.arange(0, t, dtype=ember.long))
        for attn, ln1, ln2, mlp in zip(self.attn, self.ln1, self.ln2, self.mlp):
            x = x + attn(ln1(x))
            x = x + mlp(ln2(x))
        return self.lm_head(self.ln_f(x))


def test_mlp_dynamic_batch(tmp_path):
    ember.manual_seed(4)
    mlp = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3), nn.Softmax(-1))
    proto = check(
        mlp,
        r(2, 4),
        tmp_path,
        input_names=["x"],
        output_names=["probs"],
        dynamic_axes={"x": {0: "batch"}, "probs": {0: "batch"}},
        others=[(r(7, 4),)],
    )
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].name == "probs"
    assert proto.opset_import[0].version == 17


def test_cnn_dynamic_batch(tmp_path):
    ember.manual_seed(5)
    model = CNN()
    _stats(model.b1)
    check(
        model,
        r(2, 1, 16, 16),
        tmp_path,
        input_names=["x"],
        dynamic_axes={"x": [0]},
        others=[(r(5, 1, 16, 16),)],
    )


def test_lstm_language_model_with_hidden_state(tmp_path):
    ember.manual_seed(6)
    hidden = (r(2, 2, 12), r(2, 2, 12))
    check(
        LSTMLM(),
        (_tok(5, 2), hidden),
        tmp_path,
        input_names=["input", "h0", "c0"],
        dynamic_axes={"input": {0: "seq", 1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"}},
        others=[(_tok(7, 3), (r(2, 3, 12), r(2, 3, 12)))],
    )


def test_gpt_dynamic_batch_and_sequence(tmp_path):
    ember.manual_seed(7)
    proto = check(
        GPT(),
        ember.randint(0, 30, (2, 8)),
        tmp_path,
        input_names=["idx"],
        dynamic_axes={"idx": {0: "batch", 1: "seq"}},
        others=[(ember.randint(0, 30, (3, 11)),), (ember.randint(0, 30, (1, 16)),)],
    )
    # the tied weight is stored once
    assert sum(1 for t in proto.graph.initializer if tuple(t.dims) == (30, 16)) == 1


def test_transformer_masks_dynamic_lengths():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.t = nn.Transformer(
                8, 2, 2, 2, 16, batch_first=True, norm_first=True, activation="gelu"
            )

        def forward(self, src, tgt, kpm):
            mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1))
            return self.t(
                src,
                tgt,
                tgt_mask=mask,
                src_key_padding_mask=kpm,
                memory_key_padding_mask=kpm,
                tgt_is_causal=True,
            )

    ember.manual_seed(8)
    kpm = ember.zeros(2, 6, dtype=ember.bool)
    kpm[1, 4:] = True
    kpm2 = ember.zeros(3, 7, dtype=ember.bool)
    kpm2[0, 5:] = True
    check(
        M(),
        (r(2, 6, 8), r(2, 4, 8), kpm),
        input_names=["src", "tgt", "kpm"],
        dynamic_axes={"src": {0: "b", 1: "s"}, "tgt": {0: "b", 1: "t"}, "kpm": {0: "b", 1: "s"}},
        others=[(r(3, 7, 8), r(3, 5, 8), kpm2)],
    )


# ---- API, options and errors -------------------------------------------------------------
def test_unsupported_op_names_op_and_module_path():
    class Inner(nn.Module):
        def forward(self, x):
            return ember.cummax(x, 0)[0]

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(3, 3), Inner())

        def forward(self, x):
            return self.block(x)

    with pytest.raises(
        ember.onnx.UnsupportedOperatorError, match=r"'ember\.cummax'.*module 'block\.1'"
    ):
        ember.onnx.export(Outer(), (r(2, 3),), None)
    pool = nn.Sequential(nn.Sequential(nn.MaxPool2d(2, return_indices=True)))
    with pytest.raises(
        ember.onnx.OnnxExporterError, match=r"MaxPool2d: .*return_indices.*module '0\.0'"
    ):
        ember.onnx.export(pool, (r(1, 1, 4, 4),), None)


def test_custom_op_symbolic_and_is_in_onnx_export():
    seen = []

    class M(nn.Module):
        def forward(self, x):
            seen.append(ember.onnx.is_in_onnx_export())
            return ember.log2(x.abs() + 1)

    def log2(g, x):
        return g.op("Div", g.op("Log", x), g.constant(np.float32(math.log(2.0))))

    ember.onnx.register_custom_op_symbolic("aten::log2", log2, 17)
    try:
        check(M(), r(3, 4))
    finally:
        ember.onnx.unregister_custom_op_symbolic("aten::log2", 17)
    assert seen[0] is True and seen[-1] is False and not ember.onnx.is_in_onnx_export()
    with pytest.raises(ValueError, match="domain::name"):
        ember.onnx.register_custom_op_symbolic("log2", log2, 17)


def test_options_and_bad_input(tmp_path):
    import io

    lin = nn.Linear(3, 2)
    buf = io.BytesIO()
    proto = ember.onnx.export(
        lin,
        r(1, 3),
        buf,
        export_params=False,
        opset_version=18,
        training=ember.onnx.TrainingMode.EVAL,
    )
    assert onnx.load_from_string(buf.getvalue()) == proto
    assert not proto.graph.initializer and len(proto.graph.input) == 3
    drop = nn.Dropout(0.5).train()
    ember.onnx.export(drop, r(2, 2), None)
    assert drop.training  # the mode is restored
    with pytest.raises(ember.onnx.OnnxExporterError, match="opset_version 6"):
        ember.onnx.export(lin, r(1, 3), None, opset_version=6)  # (7-10: converted down)
    with pytest.raises(ember.onnx.OnnxExporterError, match="2 input_names"):
        ember.onnx.export(lin, r(1, 3), None, input_names=["a", "b"])
    with pytest.raises(ember.onnx.OnnxExporterError, match="dynamic_axes"):
        ember.onnx.export(lin, r(1, 3), None, dynamic_axes=[0])
    with pytest.raises(ember.onnx.OnnxExporterError, match=r"\['inptu'\] are neither"):
        ember.onnx.export(lin, r(1, 3), None, dynamic_axes={"inptu": {0: "b"}})
    with pytest.raises(ember.onnx.OnnxExporterError, match="training mode"):
        ember.onnx.export(drop, r(2, 2), None, training=ember.onnx.TrainingMode.TRAINING)


def test_import_is_cheap():
    code = (
        "import sys, ember.onnx, ember; import ember.onnx as o; "
        "assert ember.onnx is o and callable(o.export); print('onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_snippet_runs(tmp_path, monkeypatch):
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "onnx.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(doc), "exec"), {"__name__": "__docs__"})  # noqa: S102


@pytest.mark.parametrize("opset", [14, 18, 20])
def test_other_opsets(opset):
    ember.manual_seed(9)
    proto = check(
        GPT(L=2),
        ember.randint(0, 30, (2, 5)),
        opset_version=opset,
        input_names=["idx"],
        dynamic_axes={"idx": {1: "seq"}},
        others=[(ember.randint(0, 30, (2, 9)),)],
    )
    assert proto.opset_import[0].version == opset
    check(_Ops(), (r(2, 4, 6), ember.tensor([0, 5, 2])), opset_version=opset)


def test_scripted_if_exports_to_onnx_if():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            if x.sum() > 0:
                z = ember.relu(y) * 2
            else:
                z = -y
            return z + 1

    ember.manual_seed(10)
    scripted = ember.jit.script(M())
    pos, neg = ember.rand(2, 4) + 0.1, -ember.rand(5, 4) - 0.1
    proto = check(
        scripted,
        pos,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
        others=[(neg,), (ember.rand(3, 4) + 0.1,)],
    )
    assert "If" in [n.op_type for n in proto.graph.node]


def test_resnet_block_inplace_add_dynamic_spatial():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
            self.down = nn.Sequential(nn.Conv2d(3, 8, 1, 2, bias=False), nn.BatchNorm2d(8))
            self.pool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(8, 5)

        def forward(self, x):
            out = self.conv2(self.relu(self.bn1(self.conv1(x))))
            out += self.down(x)
            out = self.pool(self.relu(out))
            return self.fc(out.view(out.size(0), -1))

    ember.manual_seed(11)
    check(
        Block(),
        r(2, 3, 16, 16),
        input_names=["x"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}},
        others=[(r(3, 3, 20, 24),)],
    )


def test_keyword_inputs():
    class M(nn.Module):
        def forward(self, x, scale=None, y=None):
            return x * scale + (y if y is not None else 0)

    proto = ember.onnx.export(M(), (r(2),), None, kwargs={"scale": 2.0, "y": ember.ones(2)})
    assert [i.name for i in proto.graph.input] == ["x", "y"]


def test_topk_addmm_one_hot():
    class M(nn.Module):
        def forward(self, x, m, idx):
            v, i = x.topk(2, dim=-1)
            return (
                v,
                i,
                ember.addmm(m, x, x.t(), beta=0.5, alpha=2.0),
                F.one_hot(idx, 5),
                ember.baddbmm(m[None], x[None], x.t()[None]),
            )

    ember.manual_seed(12)
    check(M(), (r(3, 4), r(3, 3), ember.tensor([0, 3, 4])))


def test_scripted_while_exports_to_onnx_loop():
    class M(nn.Module):
        def forward(self, x):
            h = x
            while h.sum() < 100:
                h = h * 2 + 1
            return h

    scripted = ember.jit.script(M())
    proto = check(
        scripted,
        ember.ones(2, 3),
        input_names=["x"],
        dynamic_axes={"x": {0: "b"}},
        others=[(ember.ones(4, 3) * 50,), (ember.zeros(1, 3),)],
    )
    assert "Loop" in [n.op_type for n in proto.graph.node]


def test_dynamo_flag_returns_onnx_program(tmp_path):
    ember.manual_seed(13)
    lin = nn.Linear(3, 2)
    prog = ember.onnx.export(lin, (r(4, 3),), None, dynamo=True)
    assert isinstance(prog, ember.onnx.ONNXProgram)
    x = r(4, 3)
    with ember.no_grad():
        np.testing.assert_allclose(prog(x)[0].numpy(), lin(x).numpy(), atol=ATOL)
    prog.save(str(tmp_path / "p.onnx"))
    onnx.checker.check_model(onnx.load(str(tmp_path / "p.onnx")))
    assert ember.onnx.errors.UnsupportedOperatorError is ember.onnx.UnsupportedOperatorError
    with pytest.raises(TypeError, match="unexpected keyword"):
        ember.onnx.export(lin, (x,), None, not_an_option=1)


def test_dict_outputs_in_order():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return {"logits": self.lin(x), "double": x * 2}

    proto = check(M(), r(2, 3), output_names=["logits", "double"])
    assert [o.name for o in proto.graph.output] == ["logits", "double"]
