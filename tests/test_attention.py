"""Attention: fused-op gradchecks, PyTorch parity of SDPA, MultiheadAttention and Transformers.

Parity tolerances (float32): outputs atol 1e-5 / rtol 1e-4; gradients atol 3e-5 / rtol 1e-4
(a Transformer stacks a few dozen float32 ops per position).
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn
from ember.autograd.gradcheck import gradcheck
from ember.ops.attention import MultiHeadAttentionCore, ScaledDotProductAttention

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True"),
    pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask"),
]

OUT_TOL = {"atol": 1e-5, "rtol": 1e-4}
GRAD_TOL = {"atol": 3e-5, "rtol": 1e-4}


def _e(a, requires_grad=False):
    t = ember.tensor(np.asarray(a))
    t.requires_grad = requires_grad
    return t


def _np(t):
    return t.detach().numpy()


def _copy_weights(src, dst):
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    result = dst.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys
    assert list(dst.state_dict()) == list(src.state_dict())


def _close(a, b, tol, what):
    np.testing.assert_allclose(a, b, err_msg=what, **tol)


def _param_grads_close(tm, em):
    tp = dict(tm.named_parameters())
    assert [n for n, _ in em.named_parameters()] == list(tp)
    for n, p in em.named_parameters():
        _close(p.grad.numpy(), tp[n].grad.numpy(), GRAD_TOL, f"grad of {n}")


# ---- gradcheck (float64) ----------------------------------------------------------------------
def _rand(rng, *shape):
    return _e(rng.standard_normal(shape), True)


@pytest.mark.parametrize("case", ["plain", "causal", "bool", "float", "weights", "gqa", "dropout"])
def test_gradcheck_sdpa(case):
    rng = np.random.default_rng(0)
    q, k, v = _rand(rng, 2, 2, 3, 4), _rand(rng, 2, 2, 5, 4), _rand(rng, 2, 2, 5, 3)
    mask, causal, weights, rep, p = None, False, False, 1, 0.0
    if case == "causal":
        k, v, causal = _rand(rng, 2, 2, 3, 4), _rand(rng, 2, 2, 3, 3), True
    elif case == "bool":
        mask = rng.random((3, 5)) > 0.4
        mask[:, 0] = True
    elif case == "float":
        mask = _rand(rng, 2, 1, 3, 5)
    elif case == "weights":
        weights = True
    elif case == "gqa":
        k, v, rep = _rand(rng, 2, 1, 5, 4), _rand(rng, 2, 1, 5, 3), 2
    elif case == "dropout":
        p = 0.3

    def fn(q, k, v, *m):
        ember.manual_seed(1)  # the same dropout mask on every evaluation
        return ScaledDotProductAttention.apply(
            q, k, v, m[0] if m else mask, p, 0.7, causal, weights, True, None, rep
        )

    args = (q, k, v, mask) if case == "float" else (q, k, v)
    assert gradcheck(fn, args)


@pytest.mark.parametrize("layout", ["qkv", "q_kv", "q_k_v"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_gradcheck_mha_core(layout, batch_first):
    rng = np.random.default_rng(1)
    B, L, S, E, h = 2, 3, 4, 4, 2

    def shape(n, d):
        return (B, n, d) if batch_first else (n, B, d)

    if layout == "qkv":
        args = (_rand(rng, *shape(L, 3 * E)), None, None)
    elif layout == "q_kv":
        args = (_rand(rng, *shape(L, E)), _rand(rng, *shape(S, 2 * E)), None)
    else:
        args = (_rand(rng, *shape(L, E)), _rand(rng, *shape(S, E)), _rand(rng, *shape(S, E)))
    Sk = L if layout == "qkv" else S
    mask = np.where(rng.random((B, 1, L, Sk)) > 0.7, -np.inf, 0.0)
    mask[..., 0] = 0

    def fn(*xs):
        it = iter(xs)
        arrays = [next(it) if a is not None else None for a in args]
        return MultiHeadAttentionCore.apply(
            *arrays, mask, 0.0, h, 0.5, False, True, False, None, batch_first, layout
        )

    assert gradcheck(fn, tuple(a for a in args if a is not None))


# ---- scaled_dot_product_attention parity -------------------------------------------------------
@pytest.mark.parametrize(
    "case", ["plain", "causal", "causal_rect", "bool", "float", "masked_row", "scale", "gqa", "3d"]
)
def test_sdpa_parity(case):
    rng = np.random.default_rng(2)
    B, H, L, S, D, Dv = 2, 4, 5, 7, 8, 6
    kw = {}
    kv_heads = 2 if case == "gqa" else H
    if case == "causal":
        S = L
    q = rng.standard_normal((B, H, L, D)).astype(np.float32)
    k = rng.standard_normal((B, kv_heads, S, D)).astype(np.float32)
    v = rng.standard_normal((B, kv_heads, S, Dv)).astype(np.float32)
    if case == "3d":
        q, k, v = q[0], k[0], v[0]
    masks = {}
    if case in ("causal", "causal_rect"):
        kw["is_causal"] = True
    elif case in ("bool", "masked_row"):
        m = rng.random((L, S)) > 0.3
        if case == "masked_row":
            m[2] = False  # a row that may attend nowhere: zeros, like PyTorch
        masks = {"attn_mask": (torch.tensor(m), _e(m))}
    elif case == "float":
        m = rng.standard_normal((B, 1, L, S)).astype(np.float32)
        masks = {"attn_mask": (torch.tensor(m, requires_grad=True), _e(m, True))}
    elif case == "scale":
        kw["scale"] = 0.3
    elif case == "gqa":
        kw["enable_gqa"] = True
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    eq, ek, ev = (_e(a, True) for a in (q, k, v))
    out_t = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, **kw, **{n: m[0] for n, m in masks.items()}
    )
    out_e = F.scaled_dot_product_attention(eq, ek, ev, **kw, **{n: m[1] for n, m in masks.items()})
    g = rng.standard_normal(tuple(out_t.shape)).astype(np.float32)
    out_t.backward(torch.tensor(g))
    out_e.backward(_e(g))
    _close(_np(out_e), _np(out_t), OUT_TOL, "output")
    for a, b, n in ((eq, tq, "q"), (ek, tk, "k"), (ev, tv, "v")):
        _close(a.grad.numpy(), b.grad.numpy(), GRAD_TOL, f"grad of {n}")
    if case == "float":
        _close(
            masks["attn_mask"][1].grad.numpy(),
            masks["attn_mask"][0].grad.numpy(),
            GRAD_TOL,
            "grad of the float mask",
        )


def test_sdpa_dropout_statistics_and_errors():
    rng = np.random.default_rng(3)
    q = _e(rng.standard_normal((4, 8, 32, 16)).astype(np.float32))
    k = _e(rng.standard_normal((4, 8, 32, 16)).astype(np.float32))
    v = _e(np.ones((4, 8, 32, 5), np.float32))
    ember.manual_seed(0)
    out, w = ScaledDotProductAttention.apply(q, k, v, None, 0.25, 0.25, False, True, True, None, 1)
    dropped = (w.numpy() == 0).mean()
    assert 0.23 < dropped < 0.27
    # values are all ones: each output is the row sum of the kept, rescaled weights
    np.testing.assert_allclose(out.numpy().mean(), 1.0, atol=0.02)
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set"):
        F.scaled_dot_product_attention(
            q, k, v, attn_mask=_e(np.ones((32, 32), bool)), is_causal=True
        )
    with pytest.raises(RuntimeError, match="query's last dim \\(16\\) must match key's"):
        F.scaled_dot_product_attention(q, _e(np.zeros((4, 8, 32, 3), np.float32)), v)


# ---- MultiheadAttention -----------------------------------------------------------------------
def _mha_pair(**kw):
    tm = torch.nn.MultiheadAttention(8, 2, **kw)
    em = nn.MultiheadAttention(8, 2, **kw)
    _copy_weights(tm, em)
    return tm, em


MHA_CASES = {
    "self": ({}, {}),
    "self_batch_first": ({"batch_first": True}, {}),
    "no_weights": ({"batch_first": True}, {"need_weights": False}),
    "per_head_weights": ({}, {"average_attn_weights": False}),
    "cross_kdim_vdim": ({"kdim": 3, "vdim": 5}, {"inputs": "qkv"}),
    "cross_shared_kv": ({"batch_first": True}, {"inputs": "q_kv"}),
    "causal_hint": ({}, {"mask": "causal", "is_causal": True, "need_weights": False}),
    "bool_mask_kpm": ({}, {"mask": "causal_bool", "kpm": True}),
    "float_kpm_no_weights": ({"batch_first": True}, {"kpm": "float", "need_weights": False}),
    "3d_float_mask": ({}, {"mask": "3d"}),
    "bias_kv_zero_attn": (
        {"add_bias_kv": True, "add_zero_attn": True, "bias": False},
        {"kpm": True},
    ),
    "unbatched": ({}, {"unbatched": True}),
    "unbatched_cross": ({"kdim": 3, "vdim": 3}, {"unbatched": True, "inputs": "qkv"}),
}


@pytest.mark.parametrize("name", list(MHA_CASES))
def test_mha_parity(name):
    ctor, opts = MHA_CASES[name]
    rng = np.random.default_rng(4)
    tm, em = _mha_pair(**ctor)
    B, L, S = 3, 5, 5
    inputs = opts.get("inputs", "self")
    if inputs != "self":
        S = 6
    bf = ctor.get("batch_first", False)
    unbatched = opts.get("unbatched", False)

    def shape(n, d):
        return (n, d) if unbatched else ((B, n, d) if bf else (n, B, d))

    q = rng.standard_normal(shape(L, 8)).astype(np.float32)
    k = rng.standard_normal(shape(S, ctor.get("kdim", 8))).astype(np.float32)
    v = rng.standard_normal(shape(S, ctor.get("vdim", 8))).astype(np.float32)
    if inputs == "self":
        tq, eq = torch.tensor(q, requires_grad=True), _e(q, True)
        ins_t, ins_e = (tq, tq, tq), (eq, eq, eq)
    elif inputs == "q_kv":
        tq, eq = torch.tensor(q, requires_grad=True), _e(q, True)
        tk, ek = torch.tensor(k, requires_grad=True), _e(k, True)
        ins_t, ins_e = (tq, tk, tk), (eq, ek, ek)
    else:
        ins_t = tuple(torch.tensor(a, requires_grad=True) for a in (q, k, v))
        ins_e = tuple(_e(a, True) for a in (q, k, v))
    kw = {
        "need_weights": opts.get("need_weights", True),
        "average_attn_weights": opts.get("average_attn_weights", True),
        "is_causal": opts.get("is_causal", False),
    }
    kw_t, kw_e = dict(kw), dict(kw)
    mask = opts.get("mask")
    if mask in ("causal", "causal_bool"):
        m = np.triu(np.ones((L, S), bool), 1)
        m = np.where(m, -np.inf, 0).astype(np.float32) if mask == "causal" else m
        kw_t["attn_mask"], kw_e["attn_mask"] = torch.tensor(m), _e(m)
    elif mask == "3d":
        m = rng.standard_normal((B * 2, L, S)).astype(np.float32)
        kw_t["attn_mask"], kw_e["attn_mask"] = torch.tensor(m), _e(m)
    if opts.get("kpm"):
        m = np.zeros((B, S), bool)
        m[0, -2:] = True
        m[1, -1] = True
        if opts["kpm"] == "float":
            m = np.where(m, -np.inf, 0).astype(np.float32)
        kw_t["key_padding_mask"], kw_e["key_padding_mask"] = torch.tensor(m), _e(m)
    out_t, w_t = tm(*ins_t, **kw_t)
    out_e, w_e = em(*ins_e, **kw_e)
    assert (w_t is None) == (w_e is None)
    g = rng.standard_normal(tuple(out_t.shape)).astype(np.float32)
    loss_t, loss_e = (out_t * torch.tensor(g)).sum(), (out_e * _e(g)).sum()
    if w_t is not None:
        gw = rng.standard_normal(tuple(w_t.shape)).astype(np.float32)
        loss_t = loss_t + (w_t * torch.tensor(gw)).sum()
        loss_e = loss_e + (w_e * _e(gw)).sum()
        _close(_np(w_e), _np(w_t), OUT_TOL, "attention weights")
    loss_t.backward()
    loss_e.backward()
    _close(_np(out_e), _np(out_t), OUT_TOL, "output")
    seen = set()
    for a, b in zip(ins_e, ins_t):
        if id(a) not in seen:
            seen.add(id(a))
            _close(a.grad.numpy(), b.grad.numpy(), GRAD_TOL, "input grad")
    _param_grads_close(tm, em)


def test_mha_fully_masked_rows_follow_pytorch():
    """need_weights=True gives NaN rows (plain softmax), need_weights=False gives zeros (SDPA)."""
    tm, em = _mha_pair(batch_first=True)
    x = np.random.default_rng(5).standard_normal((2, 3, 8)).astype(np.float32)
    kpm = np.zeros((2, 3), bool)
    kpm[1] = True
    for need in (True, False):
        ot, wt = tm(*(torch.tensor(x),) * 3, key_padding_mask=torch.tensor(kpm), need_weights=need)
        oe, we = em(*(_e(x),) * 3, key_padding_mask=_e(kpm), need_weights=need)
        np.testing.assert_array_equal(np.isnan(_np(oe)), np.isnan(_np(ot)))
        np.testing.assert_allclose(_np(oe), _np(ot), **OUT_TOL)
        if need:
            np.testing.assert_array_equal(np.isnan(_np(we)), np.isnan(_np(wt)))


def test_mha_dropout_train_and_eval():
    tm, em = _mha_pair(dropout=0.5)
    x = np.random.default_rng(6).standard_normal((4, 2, 8)).astype(np.float32)
    tm.eval()
    em.eval()
    np.testing.assert_allclose(
        _np(em(*(_e(x),) * 3)[0]), _np(tm(*(torch.tensor(x),) * 3)[0]), **OUT_TOL
    )
    em.train()
    out1, w1 = em(*(_e(x),) * 3)
    out2, _ = em(*(_e(x),) * 3)
    assert not np.allclose(_np(out1), _np(out2))
    _, w = em(*(_e(x),) * 3, average_attn_weights=False)
    assert 0.3 < (_np(w) == 0).mean() < 0.7


def test_mha_errors():
    em = nn.MultiheadAttention(8, 2)
    x = _e(np.zeros((4, 2, 8), np.float32))
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(8, 3)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        em(x, x, x, is_causal=True)
    with pytest.raises(
        RuntimeError,
        match=r"The shape of the 2D attn_mask is \(3, 3\), but "
        r"should be \(4, 4\)",
    ):
        em(x, x, x, attn_mask=_e(np.zeros((3, 3), np.float32)))
    with pytest.raises(AssertionError, match="was expecting embedding dimension of 8, but got 5"):
        y = _e(np.zeros((4, 2, 5), np.float32))
        em(y, y, y)
    with pytest.raises(AssertionError, match="only bool and floating types of key_padding_mask"):
        em(x, x, x, key_padding_mask=_e(np.zeros((2, 4), np.int64)))


# ---- Transformer ------------------------------------------------------------------------------
def _run_both(tm, em, t_inputs, e_inputs, kw_t, kw_e, rng):
    out_t, out_e = tm(*t_inputs, **kw_t), em(*e_inputs, **kw_e)
    g = rng.standard_normal(tuple(out_t.shape)).astype(np.float32)
    (out_t * torch.tensor(g)).sum().backward()
    (out_e * _e(g)).sum().backward()
    _close(_np(out_e), _np(out_t), OUT_TOL, "output")
    for a, b in zip(e_inputs, t_inputs):
        _close(a.grad.numpy(), b.grad.numpy(), GRAD_TOL, "input grad")
    _param_grads_close(tm, em)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_parity(batch_first, norm_first, activation):
    rng = np.random.default_rng(7)
    kw = dict(
        d_model=8,
        nhead=2,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=16,
        dropout=0.0,
        activation=activation,
        batch_first=batch_first,
        norm_first=norm_first,
    )
    tm, em = torch.nn.Transformer(**kw), nn.Transformer(**kw)
    _copy_weights(tm, em)
    assert repr(em) == repr(tm)
    B, S, T = 3, 5, 4
    src = rng.standard_normal((B, S, 8) if batch_first else (S, B, 8)).astype(np.float32)
    tgt = rng.standard_normal((B, T, 8) if batch_first else (T, B, 8)).astype(np.float32)
    kpm = np.zeros((B, S), bool)
    kpm[0, 3:] = True
    tgt_kpm = np.zeros((B, T), bool)
    tgt_kpm[2, 3:] = True
    mask_t = torch.nn.Transformer.generate_square_subsequent_mask(T)
    mask_e = nn.Transformer.generate_square_subsequent_mask(T)
    np.testing.assert_array_equal(mask_e.numpy(), mask_t.numpy())
    t_in = (torch.tensor(src, requires_grad=True), torch.tensor(tgt, requires_grad=True))
    e_in = (_e(src, True), _e(tgt, True))
    kw_t = {
        "tgt_mask": mask_t,
        "src_key_padding_mask": torch.tensor(kpm),
        "memory_key_padding_mask": torch.tensor(kpm),
        "tgt_key_padding_mask": torch.tensor(tgt_kpm),
    }
    kw_e = {
        "tgt_mask": mask_e,
        "src_key_padding_mask": _e(kpm),
        "memory_key_padding_mask": _e(kpm),
        "tgt_key_padding_mask": _e(tgt_kpm),
    }
    for mode in ("train", "eval"):  # dropout=0: both modes must match (eval keeps grad on)
        getattr(tm, mode)()
        getattr(em, mode)()
        tm.zero_grad()
        em.zero_grad()
        for t in t_in + e_in:
            t.grad = None
        _run_both(tm, em, t_in, e_in, kw_t, kw_e, rng)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_with_causal_mask_and_callable_activation(norm_first):
    rng = np.random.default_rng(8)
    kw = dict(
        d_model=8, nhead=4, dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    tl = torch.nn.TransformerEncoderLayer(**kw, activation=torch.nn.functional.silu)
    el = nn.TransformerEncoderLayer(**kw, activation=F.silu)
    tm = torch.nn.TransformerEncoder(tl, 3, norm=torch.nn.LayerNorm(8), enable_nested_tensor=False)
    em = nn.TransformerEncoder(el, 3, norm=nn.LayerNorm(8), enable_nested_tensor=False)
    _copy_weights(tm, em)
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    mask_t = torch.nn.Transformer.generate_square_subsequent_mask(6)
    mask_e = nn.Transformer.generate_square_subsequent_mask(6)
    _run_both(
        tm,
        em,
        (torch.tensor(x, requires_grad=True),),
        (_e(x, True),),
        {"mask": mask_t},
        {"mask": mask_e},
        rng,
    )


def test_decoder_layer_unbatched_and_bool_masks():
    rng = np.random.default_rng(9)
    tl = torch.nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
    el = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
    _copy_weights(tl, el)
    tgt = rng.standard_normal((4, 8)).astype(np.float32)
    mem = rng.standard_normal((6, 8)).astype(np.float32)
    m = np.triu(np.ones((4, 4), bool), 1)
    mm = rng.random((4, 6)) > 0.8
    t_in = (torch.tensor(tgt, requires_grad=True), torch.tensor(mem, requires_grad=True))
    _run_both(
        tl,
        el,
        t_in,
        (_e(tgt, True), _e(mem, True)),
        {"tgt_mask": torch.tensor(m), "memory_mask": torch.tensor(mm)},
        {"tgt_mask": _e(m), "memory_mask": _e(mm)},
        rng,
    )


def test_transformer_dropout_is_active_in_training_only():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3, batch_first=True)
    x = _e(np.random.default_rng(10).standard_normal((2, 5, 8)).astype(np.float32), True)
    a, b = layer(x), layer(x)
    assert not np.allclose(_np(a), _np(b))
    (a.sum() + b.sum()).backward()
    assert all(np.isfinite(p.grad.numpy()).all() for p in layer.parameters())
    layer.eval()
    np.testing.assert_array_equal(_np(layer(x)), _np(layer(x)))


def test_transformer_errors_and_activation_names():
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    model = nn.Transformer(
        d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8
    )
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        model(_e(np.zeros((3, 2, 8), np.float32)), _e(np.zeros((3, 4, 8), np.float32)))
    with pytest.raises(RuntimeError, match="the feature number of src and tgt must be equal"):
        model(_e(np.zeros((3, 2, 6), np.float32)), _e(np.zeros((3, 2, 6), np.float32)))
    # xavier-initialised matrices, as in PyTorch's Transformer._reset_parameters
    w = model.encoder.layers[0].linear1.weight.detach().numpy()
    bound = np.sqrt(6 / (8 + 8))
    assert np.abs(w).max() <= bound


# ---- GPU (CuPy): the fused attention on CUDA matches the CPU -----------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("batch_first", [False, True])
def test_gpu_matches_cpu(batch_first):
    rng = np.random.default_rng(11)
    kw = dict(
        d_model=8,
        nhead=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        dim_feedforward=16,
        dropout=0.0,
        batch_first=batch_first,
    )
    cpu, gpu = nn.Transformer(**kw), nn.Transformer(**kw)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    B, S, T = 3, 5, 4
    src = rng.standard_normal((B, S, 8) if batch_first else (S, B, 8)).astype(np.float32)
    tgt = rng.standard_normal((B, T, 8) if batch_first else (T, B, 8)).astype(np.float32)
    kpm = np.zeros((B, S), bool)
    kpm[0, 3:] = True
    results = []
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        s, t = _e(src).to(dev), _e(tgt).to(dev)
        s.requires_grad = True
        out = model(
            s,
            t,
            tgt_mask=nn.Transformer.generate_square_subsequent_mask(T).to(dev),
            src_key_padding_mask=_e(kpm).to(dev),
        )
        out.sum().backward()
        results.append((out.detach().cpu().numpy(), s.grad.cpu().numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], **OUT_TOL)
    np.testing.assert_allclose(results[1][1], results[0][1], **GRAD_TOL)


# ---- double backward ------------------------------------------------------------------------
def _second_order(lib, fn, arrays, grad_mask):
    """Gradients of a squared-gradient penalty: the second-order gradients through ``fn``."""
    ins = [lib.tensor(a, requires_grad=g) for a, g in zip(arrays, grad_mask)]
    out = fn(*ins)
    out = out[0] if isinstance(out, tuple) else out
    wrt = [t for t in ins if t.requires_grad]
    first = lib.autograd.grad((out**2).sum(), wrt, create_graph=True)
    penalty = sum((g**2).sum() * (k + 1) for k, g in enumerate(first))
    return [g.detach().numpy() for g in lib.autograd.grad(penalty, wrt)]


@pytest.mark.parametrize("case", ["plain", "causal", "float_mask", "bool_mask", "gqa"])
def test_sdpa_double_backward_matches_torch(case):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rng = np.random.default_rng(0)
    heads_kv = 1 if case == "gqa" else 2
    q, k, v = (
        rng.standard_normal(s) for s in ((2, 2, 4, 3), (2, heads_kv, 5, 3), (2, heads_kv, 5, 3))
    )
    mask, kw = None, {}
    if case == "causal":
        k, v, kw = k[:, :, :4], v[:, :, :4], {"is_causal": True}
    elif case == "float_mask":
        mask = rng.standard_normal((4, 5))  # added to the scores, and differentiated
    elif case == "bool_mask":
        mask = rng.random((4, 5)) > 0.3
        mask[:, 0], mask[1] = True, False  # row 1 attends to nothing: zero weights
    elif case == "gqa":
        kw = {"enable_gqa": True}
    arrays = [q, k, v] + ([mask] if mask is not None else [])
    grad_mask = [True, True, True] + ([mask.dtype != bool] if mask is not None else [])

    def run(lib, sdpa):
        def fn(q, k, v, m=None):
            if m is not None and lib is ember and m.dtype == ember.bool:
                m.requires_grad = False
            return sdpa(q, k, v, attn_mask=m, **kw)

        return _second_order(lib, fn, arrays, grad_mask)

    with sdpa_kernel(SDPBackend.MATH):  # torch's CPU flash kernel has no double backward
        want = run(torch, torch.nn.functional.scaled_dot_product_attention)
    got = run(ember, F.scaled_dot_product_attention)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10)


def test_sdpa_double_backward_with_dropout_gradgradchecks():
    from ember.autograd import gradgradcheck

    rng = np.random.default_rng(1)
    ins = [_e(rng.standard_normal(s), True) for s in ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4))]

    def fn(q, k, v):  # the same dropout mask on every call
        ember.manual_seed(0)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)

    assert gradgradcheck(fn, ins)
    # the graph's first-order gradients are those of the fused backward (gradchecked above)
    g = ember.tensor(rng.standard_normal((1, 2, 3, 4)))
    fused = ember.autograd.grad(fn(*ins), ins, g)
    in_graph = ember.autograd.grad(fn(*ins), ins, g, create_graph=True)
    for a, b in zip(fused, in_graph):
        np.testing.assert_allclose(_np(b), _np(a), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "case", ["self", "self_seq_first", "causal_weights", "cross_kdim", "key_padding"]
)
def test_multihead_attention_double_backward_matches_torch(case):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rng = np.random.default_rng(2)
    E, H, B, L, S = 6, 2, 2, 4, 5
    batch_first = case != "self_seq_first"
    kdim = 3 if case == "cross_kdim" else None
    cross = case in ("cross_kdim", "key_padding")
    S = S if cross else L
    x = rng.standard_normal((B, L, E) if batch_first else (L, B, E))
    y = rng.standard_normal((B, S, kdim or E))
    kpm = np.zeros((B, S), bool)
    kpm[0, -1] = True
    state = None
    results = []
    for lib in (torch, ember):
        lib.manual_seed(0)
        mha = lib.nn.MultiheadAttention(
            E, H, batch_first=batch_first, kdim=kdim, vdim=kdim, dtype=lib.float64
        )
        if state is None:
            state = {k: v.detach().numpy().copy() for k, v in mha.state_dict().items()}
        else:
            mha.load_state_dict({k: lib.tensor(v) for k, v in state.items()})
        params = list(mha.parameters())

        def fn(x, y=None, lib=lib, mha=mha):
            kv = y if cross else x
            kwargs = {"need_weights": case == "causal_weights"}
            if case == "causal_weights":
                kwargs["attn_mask"] = lib.tensor(np.triu(np.ones((L, L), bool), 1))
            if case == "key_padding":
                kwargs["key_padding_mask"] = lib.tensor(kpm)
            out, w = mha(x, kv, kv, **kwargs)
            return out if w is None else out + w.sum()

        ins = [lib.tensor(x, requires_grad=True)] + (
            [lib.tensor(y, requires_grad=True)] if cross else []
        )
        with sdpa_kernel(SDPBackend.MATH):
            out = fn(*ins)
            first = lib.autograd.grad((out**2).sum(), ins + params, create_graph=True)
            penalty = sum((g**2).sum() for g in first)
            results.append([g.detach().numpy() for g in lib.autograd.grad(penalty, ins + params)])
    for g, w in zip(results[1], results[0]):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-9)
