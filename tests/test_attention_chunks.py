"""Dense attention on large batches runs in chunks of the leading axis (ops/attention_chunks):
the chunked results equal the whole-batch ones and per-chunk calls, forward and backward."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import nn
from ember.ops import attention_chunks

torch = pytest.importorskip("torch")


@pytest.fixture
def chunked(monkeypatch):
    """Small thresholds, so cheap shapes run in chunks of one or two batch rows."""
    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 0)
    monkeypatch.setattr(attention_chunks, "_CHUNK_BYTES", 2 * 2 * 8 * 8 * 4)


def _inputs(shape, seed=0, kv_heads=None):
    r = np.random.default_rng(seed)
    kv_shape = shape if kv_heads is None else shape[:1] + (kv_heads,) + shape[2:]
    arrays = [r.standard_normal(s).astype(np.float32) for s in (shape, kv_shape, kv_shape)]
    return arrays


def _run(arrays, mask=None, g=None, **kw):
    """Output and q/k/v (and float mask) gradients of one SDPA call (output gradient ``g``)."""
    q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays)
    m = None
    if mask is not None:
        m = ember.tensor(mask, requires_grad=mask.dtype != bool)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw)
    if g is None:
        g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    out.backward(ember.tensor(g))
    grads = [t.grad.numpy() for t in (q, k, v)]
    if m is not None and m.requires_grad:
        grads.append(m.grad.numpy())
    return [out.detach().numpy()] + grads


CASES = {
    "plain": ({}, None),
    "causal": ({"is_causal": True}, None),
    "bool-mask": ({}, "bool"),
    "float-mask-grad": ({}, "float"),
    "gqa": ({"enable_gqa": True}, None),
    "dropout": ({"dropout_p": 0.3}, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chunked_equals_whole(case, monkeypatch):
    kw, mask_kind = CASES[case]
    shape = (5, 4, 8, 8)
    arrays = _inputs(shape, kv_heads=2 if case == "gqa" else None)
    r = np.random.default_rng(2)
    mask = None
    if mask_kind == "bool":
        mask = r.random((5, 1, 8, 8)) > 0.3
        mask[0, 0, 3] = False  # a row with every key masked: zero weights, as unchunked
    elif mask_kind == "float":
        mask = r.standard_normal((5, 4, 8, 8)).astype(np.float32)

    def call():
        if "dropout_p" in kw:
            ember.manual_seed(7)
        return _run(arrays, mask, **kw)

    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 1 << 60)
    whole = call()
    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 0)
    monkeypatch.setattr(attention_chunks, "_CHUNK_BYTES", 2 * 4 * 8 * 8 * 4)
    assert len(attention_chunks._chunks(np, *arrays[:1] * 3)) == 3
    parts = call()
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_large_batch_equals_per_chunk_calls():
    # default thresholds: (64, 8, 64, 64) float32 scores are 8 MiB, so this call is chunked
    shape = (64, 8, 64, 16)
    arrays = _inputs(shape, seed=3)
    assert attention_chunks._chunks(np, *arrays) is not None
    g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    full = _run(arrays, g=g, is_causal=True)
    for lo in (0, 40):
        part = _run([a[lo : lo + 8] for a in arrays], g=g[lo : lo + 8], is_causal=True)
        for a, b in zip(full, part):
            np.testing.assert_allclose(a[lo : lo + 8], b, rtol=1e-5, atol=1e-6)


def test_chunked_matches_torch(chunked):
    arrays = _inputs((3, 2, 8, 8), seed=4)
    mask = np.random.default_rng(5).random((3, 1, 8, 8)) > 0.2
    ours = _run(arrays, mask)
    q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=torch.tensor(mask))
    g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    out.backward(torch.tensor(g))
    theirs = [out.detach().numpy()] + [t.grad.numpy() for t in (q, k, v)]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_chunked_equals_whole(batch_first, monkeypatch):
    ember.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first)
    x = np.random.default_rng(6).standard_normal((6, 5, 16)).astype(np.float32)

    def call():
        mha.zero_grad()
        t = ember.tensor(x, requires_grad=True)
        out, w = mha(t, t, t)
        (out.sum() + w.sum()).backward()
        return [out.detach().numpy(), t.grad.numpy(), mha.in_proj_weight.grad.numpy()]

    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 1 << 60)
    whole = call()
    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 0)
    monkeypatch.setattr(attention_chunks, "_CHUNK_BYTES", 4 * 5 * 5 * 4)
    parts = call()
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_double_backward_through_chunks(chunked):
    arrays = _inputs((3, 2, 4, 4), seed=8)
    q, k, v = (ember.tensor(a.astype(np.float64), requires_grad=True) for a in arrays)
    assert ember.autograd.gradgradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v)
    )


def test_blocked_causal_path_in_chunks(monkeypatch):
    # L >= 2 * attention_causal.BLOCK takes the blocked causal path; a large batch chunks it
    arrays = _inputs((3, 2, 256, 4), seed=9)
    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 1 << 60)
    whole = _run(arrays, is_causal=True)
    monkeypatch.setattr(attention_chunks, "_MIN_BYTES", 0)
    monkeypatch.setattr(attention_chunks, "_CHUNK_BYTES", 1)
    assert len(attention_chunks._chunks(np, *arrays)) == 3
    parts = _run(arrays, is_causal=True)
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
