"""``ember.func.vmap`` over the nn modules built on fused Functions: RNN/LSTM/GRU (torch.func
refuses them -- "Batching rule not implemented for aten::lstm" -- so they are checked against a
per-sample loop of torch's modules), MultiheadAttention and the Transformer layers (checked
against ``torch.func.vmap``), with batched inputs, batched states/masks and batched parameters
(model ensembling)."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.func import functional_call, grad, stack_module_state, vmap

torch = pytest.importorskip("torch")
tf = pytest.importorskip("torch.func")

V = 3


def _pair(cls_name: str, *args, **kwargs):
    """The same module in ember and torch (torch's initial weights copied into ember's)."""
    torch.manual_seed(0)
    t = getattr(torch.nn, cls_name)(*args, **kwargs).double()
    e = getattr(ember.nn, cls_name)(*args, **kwargs).double()
    e.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    return e, t.eval(), e.eval()


def _close(got, want, tol=1e-9):
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=tol, atol=tol)


def _data(*shape):
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    return ember.tensor(x), torch.tensor(x)


RNN_CASES = [
    ("LSTM", dict(batch_first=True), (V, 2, 5, 3)),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2), (V, 5, 2, 3)),
    ("LSTM", dict(), (V, 5, 3)),  # each sample unbatched
    ("GRU", dict(num_layers=2), (V, 5, 2, 3)),
    ("GRU", dict(bidirectional=True, batch_first=True), (V, 2, 5, 3)),
    ("RNN", dict(nonlinearity="relu"), (V, 5, 2, 3)),
]


@pytest.mark.parametrize("name,kw,shape", RNN_CASES, ids=lambda c: str(c))
def test_rnn_batched_input(name, kw, shape):
    e, t, _ = _pair(name, 3, 4, **kw)
    xe, xt = _data(*shape)
    out, h = vmap(e)(xe)
    for v in range(V):
        o_t, h_t = t(xt[v])
        _close(out[v], o_t)
        for a, b in zip(h if name == "LSTM" else (h,), h_t if name == "LSTM" else (h_t,)):
            _close(a[v], b)


def test_rnn_batched_state_and_shared_input():
    e, t, _ = _pair("GRU", 3, 4)
    xe, xt = _data(5, 2, 3)
    he, ht = _data(V, 1, 2, 4)
    out, h = vmap(e, in_dims=(None, 0))(xe, he)
    for v in range(V):
        o_t, h_t = t(xt, ht[v])
        _close(out[v], o_t)
        _close(h[v], h_t)


def test_lstm_per_sample_grads():
    e, t, _ = _pair("LSTM", 3, 4, batch_first=True)
    xe, xt = _data(V, 2, 5, 3)
    params = {k: p.detach() for k, p in e.named_parameters()}

    def loss(p, x):
        return (functional_call(e, p, (x,))[0] ** 2).sum()

    grads = vmap(grad(loss), in_dims=(None, 0))(params, xe)
    for v in range(V):
        t.zero_grad()
        (t(xt[v])[0] ** 2).sum().backward()
        for k, p in t.named_parameters():
            _close(grads[k][v], p.grad, 1e-8)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_rnn_ensemble(name):
    models = [_pair(name, 3, 4, num_layers=2)[0] for _ in range(V)]
    for i, m in enumerate(models):  # distinct weights per member
        for p in m.parameters():
            p.data.mul_(1 + 0.1 * i)
    params, buffers = stack_module_state(models)
    xe, xt = _data(5, 2, 3)
    out, _ = vmap(lambda p, b: functional_call(models[0], (p, b), (xe,)))(params, buffers)
    for v, m in enumerate(models):
        t = getattr(torch.nn, name)(3, 4, num_layers=2).double()
        t.load_state_dict({k: torch.tensor(p.detach().numpy()) for k, p in m.state_dict().items()})
        _close(out[v], t(xt)[0], 1e-8)


def test_rnn_packed_sequence_is_refused():
    e = ember.nn.LSTM(3, 4)
    x = ember.randn(V, 5, 2, 3)

    def f(x):
        packed = ember.nn.utils.rnn.pack_padded_sequence(x, [5, 3])
        return e(packed)[1][0]

    with pytest.raises(RuntimeError, match="PaddedToPacked|PackedSequence"):
        vmap(f)(x)


MHA_CASES = [
    # (batch_first, per-sample query shape, key_padding_mask, attn_mask, average)
    (True, (2, 4, 8), None, None, True),
    (False, (4, 2, 8), "kpm", None, False),
    (True, (4, 8), None, "mask2d", True),  # each sample unbatched
    (True, (2, 4, 8), None, "mask3d", False),
]


@pytest.mark.parametrize("bf,shape,kpm,mask,avg", MHA_CASES, ids=lambda c: str(c))
def test_multihead_attention_matches_torch_vmap(bf, shape, kpm, mask, avg):
    e, t, _ = _pair("MultiheadAttention", 8, 2, batch_first=bf)
    xe, xt = _data(V, *shape)
    L = shape[-2] if bf or len(shape) == 2 else shape[0]
    B = 1 if len(shape) == 2 else shape[0] if bf else shape[1]
    extra_e, extra_t = {}, {}
    if kpm:
        m = np.zeros((V, B, L), bool)
        m[:, :, -1] = True
        m[1, 0, -2] = True
        extra_e["key_padding_mask"], extra_t["key_padding_mask"] = ember.tensor(m), torch.tensor(m)
    if mask:
        mshape = (V, L, L) if mask == "mask2d" else (V, B * 2, L, L)
        m = np.random.default_rng(1).standard_normal(mshape)
        extra_e["attn_mask"], extra_t["attn_mask"] = ember.tensor(m), torch.tensor(m)
    keys = sorted(extra_e)

    def make(mod, extra_keys):
        def f(x, *masks):
            return mod(x, x, x, average_attn_weights=avg, **dict(zip(extra_keys, masks)))

        return f

    oe, we = vmap(make(e, keys))(xe, *[extra_e[k] for k in keys])
    ot, wt = tf.vmap(make(t, keys))(xt, *[extra_t[k] for k in keys])
    _close(oe, ot, 1e-8)
    _close(we, wt, 1e-8)


def test_multihead_attention_ensemble():
    models = [_pair("MultiheadAttention", 8, 2)[0] for _ in range(V)]
    tmodels = []
    for i, m in enumerate(models):
        for p in m.parameters():
            p.data.mul_(1 + 0.1 * i)
        t = torch.nn.MultiheadAttention(8, 2).double()
        t.load_state_dict({k: torch.tensor(p.detach().numpy()) for k, p in m.state_dict().items()})
        tmodels.append(t)
    xe, xt = _data(4, 2, 8)
    pe, be = stack_module_state(models)
    pt, bt = tf.stack_module_state(tmodels)
    oe, we = vmap(lambda p, b: functional_call(models[0], (p, b), (xe, xe, xe)))(pe, be)
    ot, wt = tf.vmap(lambda p, b: tf.functional_call(tmodels[0], (p, b), (xt, xt, xt)))(pt, bt)
    _close(oe, ot, 1e-8)
    _close(we, wt, 1e-8)


@pytest.mark.parametrize(
    "name", ["TransformerEncoderLayer", "TransformerDecoderLayer", "Transformer"]
)
def test_transformer_layers_match_torch_vmap(name):
    kw = dict(dropout=0.0, batch_first=True)
    if name == "Transformer":
        e, t, _ = _pair(name, 8, 2, 1, 1, 16, **kw)
    else:
        e, t, _ = _pair(name, 8, 2, 16, **kw)
    xe, xt = _data(V, 2, 4, 8)
    if name == "TransformerEncoderLayer":
        oe, ot = vmap(e)(xe), tf.vmap(t)(xt)
    else:
        me, mt = _data(V, 2, 5, 8)
        oe, ot = vmap(e)(xe, me), tf.vmap(t)(xt, mt)
    _close(oe, ot, 1e-8)
