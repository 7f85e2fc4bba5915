"""Idioms of the pytorch/tutorials pages run in session 22 (docs/porting_scripts.md, batch 11),
each a small program of our own checked against torch: the language-model and translation
pages build ``nn.TransformerEncoder`` / ``nn.Transformer`` with ``batch_first=False`` (torch
warns that the nested-tensor path is off and says why) and pass a bool padding mask beside a
float causal mask (torch's deprecation warning); the saving/loading page mentions
``_use_new_zipfile_serialization=False`` (torch's pre-1.6 format); the vmap recipe vmaps
``autograd.grad(y, x, v)`` over the rows of an identity, a graph recorded outside the vmap."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")
LIBS = {"ember": ember, "torch": torch}


def _np(t):
    return t.detach().cpu().numpy()


def _messages(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in got if issubclass(w.category, UserWarning)]


# ---- transformer_tutorial / translation_transformer: the encoder's nested-tensor flag ----
@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # batch_first=False: the tutorials' layout
        {"batch_first": True},
        {"batch_first": True, "norm_first": True},
        {"batch_first": True, "nhead": 3, "d_model": 6},
        {"batch_first": True, "bias": False},
    ],
)
def test_encoder_nested_tensor_reason(kwargs):
    seen = {}
    for name, lib in LIBS.items():
        kw = {"d_model": 8, "nhead": 2, "dim_feedforward": 16, **kwargs}
        layer = lib.nn.TransformerEncoderLayer(**kw)
        enc, msgs = _messages(lambda lib=lib, layer=layer: lib.nn.TransformerEncoder(layer, 2))
        nested = [m for m in msgs if m.startswith("enable_nested_tensor")]
        seen[name] = (enc.use_nested_tensor, enc.enable_nested_tensor, nested)
    assert seen["ember"] == seen["torch"]


def test_encoder_nested_tensor_quiet_when_disabled():
    for lib in LIBS.values():
        layer = lib.nn.TransformerEncoderLayer(8, 2, 16)
        enc, msgs = _messages(
            lambda lib=lib, layer=layer: lib.nn.TransformerEncoder(
                layer, 1, enable_nested_tensor=False
            )
        )
        assert not any("nested" in m for m in msgs) and enc.use_nested_tensor is False


def test_transformer_warns_like_torch():
    for lib in LIBS.values():
        _, msgs = _messages(
            lambda lib=lib: lib.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0)  # batch_first=False
        )
        assert any("self.use_nested_tensor is False because encoder_layer" in m for m in msgs)


# ---- translation_transformer: a float causal mask beside a bool padding mask --------------
def _seq2seq_step(lib, weights):
    lib.manual_seed(0)
    model = lib.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0)
    model.load_state_dict({k: lib.tensor(v) for k, v in weights.items()})
    src = lib.tensor(np.random.RandomState(0).randn(5, 2, 8).astype(np.float32))  # S, N, E
    tgt = src[:4] * 0.5
    tgt_mask = model.generate_square_subsequent_mask(4)  # float, -inf above the diagonal
    pad = lib.tensor([[False, False, False, True, True], [False] * 5])  # (N, S) bool
    tgt_pad = lib.tensor([[False, False, True, True], [False] * 4])
    return _messages(
        lambda: model(
            src,
            tgt,
            tgt_mask=tgt_mask,
            src_key_padding_mask=pad,
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=pad,
        )
    )


def test_mismatched_mask_types_warn_and_agree():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.nn.Transformer(8, 2, 1, 1, 16, dropout=0.0)
    weights = {k: _np(v) for k, v in ref.state_dict().items()}
    (t_out, t_msgs), (e_out, e_msgs) = (_seq2seq_step(lib, weights) for lib in (torch, ember))
    np.testing.assert_allclose(_np(e_out), _np(t_out), rtol=1e-4, atol=1e-5)
    want = "Support for mismatched key_padding_mask and attn_mask is deprecated"
    assert any(want in m for m in t_msgs) and any(want in m for m in e_msgs)


def test_matching_mask_types_do_not_warn():
    mha = ember.nn.MultiheadAttention(4, 2)
    x = ember.randn(3, 2, 4)
    mask = ember.zeros(3, 3, dtype=ember.bool)
    pad = ember.tensor([[False, False, True], [False] * 3])
    _, msgs = _messages(lambda: mha(x, x, x, attn_mask=mask, key_padding_mask=pad))
    assert not any("mismatched" in m for m in msgs)


# ---- saving_loading_models: torch's legacy (pre-1.6) format ------------------------------
def test_legacy_format_round_trip_with_torch(tmp_path):
    lin = ember.nn.Linear(3, 2)
    base = ember.arange(12.0).view(3, 4)
    obj = {
        "sd": lin.state_dict(),
        "view": base[1:, ::2],
        "base": base,
        "ints": ember.tensor([1, -2], dtype=ember.int64),
        "half": ember.ones(2, dtype=ember.bfloat16),
        "empty": ember.empty(0),
        "epoch": 3,
    }
    path = tmp_path / "legacy.pt"
    ember.save(obj, path, _use_new_zipfile_serialization=False)
    with open(path, "rb") as fh:  # the stream opens with torch's magic number, as torch's does
        head = fh.read(16)
    ref = io.BytesIO()
    torch.save({"x": torch.ones(1)}, ref, _use_new_zipfile_serialization=False)
    assert head == ref.getvalue()[:16]
    got = torch.load(path, weights_only=True)
    assert got["epoch"] == 3 and list(got["sd"]) == ["weight", "bias"]
    np.testing.assert_array_equal(_np(got["sd"]["weight"]), _np(lin.weight))
    np.testing.assert_array_equal(_np(got["view"]), _np(base)[1:, ::2])
    assert got["view"].untyped_storage().data_ptr() == got["base"].untyped_storage().data_ptr()
    assert got["ints"].dtype == torch.int64 and got["half"].dtype == torch.bfloat16
    assert got["empty"].shape == (0,)
    back = ember.load(path)  # and ember reads its own legacy file
    np.testing.assert_array_equal(_np(back["view"]), _np(base)[1:, ::2])


def test_legacy_format_whole_module_to_stream():
    buf = io.BytesIO()
    model = ember.nn.Sequential(ember.nn.Linear(2, 2))
    ember.save(model.state_dict(), buf, _use_new_zipfile_serialization=False)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert list(sd) == ["0.weight", "0.bias"]


# ---- vmap_recipe: autograd.grad inside vmap, the graph recorded outside -------------------
@pytest.mark.parametrize("name", ["ember", "torch"])
def test_vmap_over_autograd_grad_rows(name):
    lib = LIBS[name]
    x = lib.tensor([0.5, -1.0, 2.0, 3.0], requires_grad=True)
    y = x**2 + x.sin()

    def get_vjp(v):
        return lib.autograd.grad(y, x, v, retain_graph=True)[0]

    rows = lib.vmap(get_vjp)(lib.eye(4))
    expected = np.diag(2 * _np(x) + np.cos(_np(x)))
    np.testing.assert_allclose(_np(rows), expected, rtol=1e-6)
    # two cotangent batches in nested vmaps: a (2, 4, 4) stack of scaled Jacobians
    scaled = lib.vmap(lib.vmap(get_vjp), in_dims=(0,))(lib.stack([lib.eye(4), 2 * lib.eye(4)]))
    np.testing.assert_allclose(_np(scaled), np.stack([expected, 2 * expected]), rtol=1e-6)


def test_vmap_grad_of_in_vmap_graph_still_refused():
    # a graph made inside the vmap from a batched input: torch refuses (no per-sample grads
    # this way), and ember must not quietly sum over the batch
    w = ember.randn(3, requires_grad=True)

    def per(xi):
        return ember.autograd.grad((xi * w).sum(), w)[0]

    with pytest.raises(RuntimeError):
        ember.vmap(per)(ember.arange(12.0).view(4, 3))


# ---- forward_ad_tutorial: a jvp-only Function that frees ctx state, checked forward-only ---
def _exp_fn(lib):
    class Exp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            result = lib.exp(x)
            ctx.result = result
            return result

        @staticmethod
        def jvp(ctx, g):
            out = g * ctx.result
            del ctx.result  # the tutorial frees what backward will not need
            return out

    return Exp


@pytest.mark.parametrize("name", ["ember", "torch"])
def test_jvp_only_function_frees_ctx_and_gradchecks_forward(name):
    lib = LIBS[name]
    fwd = lib.autograd.forward_ad
    exp = _exp_fn(lib)
    primal = lib.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    tangent = lib.tensor(np.arange(6.0).reshape(2, 3))
    with fwd.dual_level():
        out = exp.apply(fwd.make_dual(primal, tangent))
        jvp = fwd.unpack_dual(out).tangent
    np.testing.assert_allclose(_np(jvp), _np(tangent) * np.exp(_np(primal)), rtol=1e-12)
    kw = dict(check_backward_ad=False, check_undefined_grad=False, check_batched_grad=False)
    assert lib.autograd.gradcheck(exp.apply, (primal,), check_forward_ad=True, **kw)


def test_gradcheck_forward_mode_catches_a_wrong_jvp():
    class Twice(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def jvp(ctx, g):
            return g * 2  # wrong: the derivative is 3

    x = ember.randn(3, dtype=ember.float64, requires_grad=True)
    kw = dict(check_forward_ad=True, check_backward_ad=False)
    assert not ember.autograd.gradcheck(Twice.apply, (x,), raise_exception=False, **kw)
    from ember.autograd.gradcheck import GradcheckError

    with pytest.raises(GradcheckError, match="forward mode"):
        ember.autograd.gradcheck(Twice.apply, (x,), **kw)
    # both modes on an ordinary op
    assert ember.autograd.gradcheck(ember.sin, (x,), check_forward_ad=True)


def test_jvp_ctx_delete_missing_attribute_raises():
    class F(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def jvp(ctx, g):
            del ctx.nothing_here
            return g

    fwd = ember.autograd.forward_ad
    with fwd.dual_level():
        out = F.apply(fwd.make_dual(ember.ones(2), ember.ones(2)))
        with pytest.raises(AttributeError):
            fwd.unpack_dual(out)


# ---- fx_graph_mode_ptq_dynamic: FX dynamic quantization with a quantized Embedding --------
class _WordLM:
    """The tutorial's LSTM language model, built for either library."""

    @staticmethod
    def build(lib):
        nn = lib.nn

        class LSTMModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.drop = nn.Dropout(0.5)
                self.encoder = nn.Embedding(30, 16)
                self.rnn = nn.LSTM(16, 8, 2, dropout=0.5)
                self.decoder = nn.Linear(8, 30)

            def forward(self, input, hidden):
                emb = self.drop(self.encoder(input))
                output, hidden = self.rnn(emb, hidden)
                return self.decoder(self.drop(output)), hidden

        return LSTMModel()


def _fx_dynamic(lib, weights, tokens):
    from importlib import import_module

    aq = import_module(f"{lib.__name__}.ao.quantization")
    qfx = import_module(f"{lib.__name__}.ao.quantization.quantize_fx")
    model = _WordLM.build(lib)
    model.load_state_dict({k: lib.tensor(v) for k, v in weights.items()})
    model.eval()
    mapping = (
        aq.QConfigMapping()
        .set_object_type(lib.nn.Embedding, aq.float_qparams_weight_only_qconfig)
        .set_object_type(lib.nn.LSTM, aq.default_dynamic_qconfig)
        .set_object_type(lib.nn.Linear, aq.default_dynamic_qconfig)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of torch.ao.quantization
        prepared = qfx.prepare_fx(model, mapping, lib.tensor(tokens[0]))  # a 0-d example
        observers = [type(m).__name__ for n, m in prepared.named_children() if "post" in n]
        quantized = qfx.convert_fx(prepared)
    hidden = (lib.zeros(2, 1, 8), lib.zeros(2, 1, 8))
    with lib.no_grad():
        out, _ = quantized(lib.tensor(tokens).view(-1, 1), hidden)
        ref, _ = model(lib.tensor(tokens).view(-1, 1), hidden)
    kinds = [type(m).__name__ for m in quantized.children()]
    names = [m._get_name() for m in quantized.children()]
    return observers, kinds, names, _np(out), _np(ref)


def test_fx_dynamic_quantization_with_embedding_matches_torch():
    ref = _WordLM.build(torch)
    weights = {k: _np(v) for k, v in ref.state_dict().items()}
    tokens = np.random.RandomState(0).randint(0, 30, 12)
    t_obs, _, t_names, t_out, t_ref = _fx_dynamic(torch, weights, tokens)
    e_obs, _, e_names, e_out, e_ref = _fx_dynamic(ember, weights, tokens)
    assert e_obs == t_obs == ["PlaceholderObserver", "PlaceholderObserver"]
    assert e_names == t_names  # QuantizedEmbedding, Dropout, DynamicQuantizedLSTM, ...Linear
    np.testing.assert_allclose(e_ref, t_ref, rtol=1e-5, atol=1e-6)
    # both quantize the same weights the same way; activations are quantized per call
    assert np.abs(e_out - t_out).max() < 0.02 and np.abs(e_out - e_ref).max() < 0.05


def test_quantized_embedding_matches_torch_and_loads_its_state_dict():
    import torch.ao.nn.quantized as tnnq
    from torch.ao.quantization import float_qparams_weight_only_qconfig as t_qc

    import ember.ao.nn.quantized as ennq
    from ember.ao.quantization import float_qparams_weight_only_qconfig as e_qc

    t_emb = torch.nn.Embedding(7, 5)
    e_emb = ember.nn.Embedding(7, 5)
    e_emb.load_state_dict({"weight": ember.tensor(_np(t_emb.weight))})
    t_emb.qconfig, e_emb.qconfig = t_qc, e_qc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_q = tnnq.Embedding.from_float(t_emb)
    e_q = ennq.Embedding.from_float(e_emb)
    assert repr(e_q).replace("ember", "torch") == repr(t_q)
    assert list(e_q.state_dict()) == list(t_q.state_dict())
    np.testing.assert_array_equal(_np(e_q.weight().int_repr()), _np(t_q.weight().int_repr()))
    idx = [[1, 6], [0, 0]]
    np.testing.assert_allclose(
        _np(e_q(ember.tensor(idx))), _np(t_q(torch.tensor(idx))), rtol=0, atol=1e-6
    )
    buf = io.BytesIO()
    torch.save(t_q.state_dict(), buf)
    buf.seek(0)
    again = ennq.Embedding(7, 5)
    again.load_state_dict(ember.load(buf))
    w = again.weight()
    assert w.qscheme() is ember.per_channel_affine_float_qparams
    np.testing.assert_allclose(_np(w.dequantize()), _np(t_q.weight().dequantize()), atol=1e-7)


def test_float_qparams_quantize_per_channel_as_torch():
    x = np.random.RandomState(1).randn(4, 6).astype(np.float32)
    got = {}
    for name, lib in LIBS.items():
        t = lib.tensor(x)
        lo, hi = t.min(1).values, t.max(1).values
        scale = (hi - lo) / 255
        q = lib.quantize_per_channel(t, scale, -lo / scale, 0, lib.quint8)  # float zero points
        got[name] = (str(q.qscheme()).split(".")[-1], _np(q.int_repr()), _np(q.dequantize()))
    assert got["ember"][0] == got["torch"][0] == "per_channel_affine_float_qparams"
    np.testing.assert_array_equal(got["ember"][1], got["torch"][1])
    np.testing.assert_allclose(got["ember"][2], got["torch"][2], atol=1e-6)


def test_quantized_reprs_as_torch():
    for lib in LIBS.values():
        aq = lib.ao.quantization
        lstm = lib.nn.Sequential(lib.nn.LSTM(4, 3, 2, dropout=0.5, batch_first=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = aq.quantize_dynamic(lstm, {lib.nn.LSTM})
        assert repr(q).splitlines()[1].strip() == (
            "(0): DynamicQuantizedLSTM(4, 3, num_layers=2, batch_first=True, dropout=0.5)"
        )
        obs = aq.default_dynamic_qconfig.activation()
        assert repr(obs) == f"PlaceholderObserver(dtype={lib.__name__}.quint8, is_dynamic=True)"


# ---- profiler recipe (torch.autograd.profiler): memory columns in torch 2.x's units --------
def test_profiler_memory_units():
    from ember.profiler._events import _format_memory

    assert [_format_memory(n) for n in (200, 144000, 3 * 1024**2, -2 * 1024**3)] == [
        "200 B",
        "140.62 KB",
        "3.00 MB",
        "-2.00 GB",
    ]
