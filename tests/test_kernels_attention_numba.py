"""The compiled attention row kernels (ops/_numba_attention.py via ops/attention_kernels.py):
the dense softmax and its backward, the causal softmax of the blocked path and of the dense
path (no bias array), split over threads or not (batch chunks). Each path against the NumPy
code it replaces (same process, kernels switched off), against torch, and float64 gradcheck
through the kernels; masked rows, dropout and extreme scores included."""

from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.autograd.gradcheck import gradcheck, gradgradcheck
from ember.ops import attention, attention_causal, attention_chunks, attention_kernels

torch = pytest.importorskip("torch")
pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def kernels_on():
    if attention_kernels.kernels(np, np.zeros(1, np.float32)) is None:
        pytest.skip("numba kernels disabled (EMBER_NUMBA=0)")


def _arrays(shape, seed=0, dtype=np.float32, kv_len=None, spread=1.0):
    r = np.random.default_rng(seed)
    kv = shape if kv_len is None else shape[:-2] + (kv_len, shape[-1])
    return [(r.standard_normal(s) * spread).astype(dtype) for s in (shape, kv, kv, shape)]


def _ember(arrays, mask=None, dropout_p=0.0, seed=None, sdpa=F.scaled_dot_product_attention, **kw):
    """Output and q, k, v gradients of one SDPA call; output gradient ``arrays[3]``."""
    q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays[:3])
    if seed is not None:
        ember.manual_seed(seed)
    m = None if mask is None else ember.tensor(mask)
    out = sdpa(q, k, v, attn_mask=m, dropout_p=dropout_p, **kw)
    out.backward(ember.tensor(arrays[3]))
    return [out.detach().numpy()] + [t.grad.numpy() for t in (q, k, v)]


def _torch(arrays, mask=None, **kw):
    q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays[:3])
    m = None if mask is None else torch.tensor(mask)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw)
    out.backward(torch.tensor(arrays[3]))
    return [out.detach().numpy()] + [t.grad.numpy() for t in (q, k, v)]


def _numpy_path(fn, monkeypatch):
    """``fn()`` with the kernels switched off: the NumPy code they replace."""
    with monkeypatch.context() as m:
        m.setattr(attention_kernels, "_mod", False)
        return fn()


def _close(a, b, tol=2e-5):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


# (shape, kw, note): the shapes where the algorithm switches
_CASES = [
    ((2, 3, 17, 8), {}, "dense, odd row length"),
    ((2, 3, 20, 8), {"is_causal": True}, "dense causal: kernel mask, no bias"),
    ((2, 2, 256, 16), {"is_causal": True}, "blocked causal, two full blocks"),
    ((1, 2, 300, 16), {"is_causal": True}, "blocked causal, last block partial"),
    ((3, 23, 16), {"is_causal": True}, "3-D dense causal"),
    ((2, 3, 17, 8), {"dropout_p": 0.0, "mask": "bool"}, "bool mask: kernel mask, no bias"),
]


@pytest.mark.parametrize("shape, kw, note", _CASES, ids=[c[2] for c in _CASES])
def test_matches_numpy_path_and_torch(shape, kw, note, monkeypatch):
    arrays = _arrays(shape)
    if kw.get("mask") == "bool":  # a padding-style mask, broadcast over the heads
        keep = np.ones(shape[:1] + (1,) + shape[2:3] * 2, dtype=bool)
        keep[0, ..., 11:] = False
        kw = dict(kw, mask=keep)
    got = _ember(arrays, **kw)
    _close(got, _numpy_path(lambda: _ember(arrays, **kw), monkeypatch))
    _close(got, _torch(arrays, **kw), tol=5e-5)


def test_causal_more_queries_than_keys_matches_torch():
    # top-left aligned causal mask (torch's is_causal) with L != S: rows past S see every key
    arrays = _arrays((2, 2, 12, 8), kv_len=7)
    _close(_ember(arrays, is_causal=True), _torch(arrays, is_causal=True), tol=5e-5)


def test_masks_and_dead_rows(monkeypatch):
    arrays = _arrays((2, 2, 9, 8), seed=3)
    keep = np.random.default_rng(4).random((2, 1, 9, 9)) > 0.4
    keep[0, 0, 2] = False  # a row with no key: zero weight (safe softmax)
    fmask = np.where(keep, np.float32(0.5), np.float32(-np.inf))
    for mask in (keep, fmask):
        got = _ember(arrays, mask=mask)
        _close(got, _numpy_path(lambda m=mask: _ember(arrays, mask=m), monkeypatch))
        assert np.all(got[0][0, :, 2] == 0) and np.all(np.isfinite(got[1]))
    live = keep.copy()
    live[0, 0, 2, 0] = True  # torch gives NaN rows where every key is masked
    _close(_ember(arrays, mask=live), _torch(arrays, mask=live), tol=5e-5)


def test_unsafe_softmax_gives_nan_rows(monkeypatch):
    arrays = _arrays((1, 1, 4, 8))
    keep = np.ones((4, 4), dtype=bool)
    keep[1] = False
    kw = {"mask": keep, "safe_softmax": False, "sdpa": attention.scaled_dot_product_attention}
    got = _ember(arrays, **kw)
    want = _numpy_path(lambda: _ember(arrays, **kw), monkeypatch)
    assert np.isnan(got[0][0, 0, 1]).all() and np.isfinite(got[0][0, 0, 0]).all()
    _close([g[0, 0, [0, 2, 3]] for g in got[:1]], [w[0, 0, [0, 2, 3]] for w in want[:1]])


def test_large_scores_do_not_overflow(monkeypatch):
    # scores up to ~1e3: the max is taken out before the exponential
    arrays = _arrays((1, 2, 260, 16), spread=8.0)
    for kw in ({}, {"is_causal": True}):
        got = _ember(arrays, **kw)
        assert all(np.isfinite(g).all() for g in got)
        _close(got, _numpy_path(lambda kw=kw: _ember(arrays, **kw), monkeypatch), tol=1e-3)


def test_nan_and_masked_scores(monkeypatch):
    # a NaN query gives a NaN output row (as torch); -inf scores next to finite ones get exactly
    # zero weight (the kernels flush exp() below the smallest normal float to zero)
    arrays = _arrays((1, 2, 6, 4), seed=8)
    arrays[0][0, 1, 2, 0] = np.nan
    fmask = np.zeros((6, 6), dtype=np.float32)
    fmask[:, 4:] = -np.inf
    fmask[:, 1] = -200.0
    got = _ember(arrays, mask=fmask)
    want = _torch(arrays, mask=fmask)
    assert np.isnan(got[0][0, 1, 2]).all() and np.isnan(want[0][0, 1, 2]).all()
    ok = np.ones(got[0].shape, dtype=bool)
    ok[0, 1, 2] = False
    np.testing.assert_allclose(got[0][ok], want[0][ok], rtol=5e-5, atol=5e-5)
    q, k, v = (ember.tensor(a) for a in _arrays((1, 2, 6, 4), seed=8)[:3])
    _, w = attention.scaled_dot_product_attention(
        q, k, v, attn_mask=ember.tensor(fmask), need_weights=True
    )
    assert np.all(w.numpy()[..., 4:] == 0) and np.all(w.numpy()[..., 1] == 0)


def test_dropout_backward_matches_numpy_path(monkeypatch):
    arrays = _arrays((2, 2, 16, 8), seed=5)
    got = _ember(arrays, dropout_p=0.3, seed=7)
    _close(got, _numpy_path(lambda: _ember(arrays, dropout_p=0.3, seed=7), monkeypatch))


def test_weights_returned_match_numpy_path(monkeypatch):
    q, k, v = (ember.tensor(a) for a in _arrays((2, 3, 6, 4))[:3])

    def run():
        out, w = attention.scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
        return [out.detach().numpy(), w.detach().numpy()]

    _close(run(), _numpy_path(run, monkeypatch))


@pytest.mark.parametrize("kind", ["dense", "causal", "bool-mask"])
def test_batch_chunks_and_threads(kind, monkeypatch):
    # chunks of the leading axis run the kernels on one thread each; whole batches split the
    # kernels' rows over the pool (2 threads)
    arrays = _arrays((4, 2, 256, 8), seed=2)
    kw = {"is_causal": kind == "causal"}
    if kind == "bool-mask":  # one mask per batch row, broadcast over the heads
        kw["mask"] = np.random.default_rng(3).random((4, 1, 256, 256)) > 0.5
    prev = ember.get_num_threads()
    try:
        ember.set_num_threads(2)
        whole = _ember(arrays, **kw)
        with monkeypatch.context() as m:
            m.setattr(attention_chunks, "_MIN_BYTES", 0)
            m.setattr(attention_chunks, "_CHUNK_BYTES", 256 * 256 * 4)
            chunked = _ember(arrays, **kw)
    finally:
        ember.set_num_threads(prev)
    _close(whole, chunked, tol=1e-6)
    _close(whole, _numpy_path(lambda: _ember(arrays, **kw), monkeypatch))
    _close(whole, _torch(arrays, **kw), tol=5e-5)


# ---- float64 gradcheck through the kernels -----------------------------------------------
def _gradcheck(shape, kv_len=None, mask=None, **kw):
    q, k, v = (
        ember.tensor(a, requires_grad=True)
        for a in _arrays(shape, seed=11, dtype=np.float64, kv_len=kv_len)[:3]
    )
    m = None if mask is None else ember.tensor(mask)

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw)

    assert gradcheck(fn, (q, k, v))
    return fn, (q, k, v)


def test_gradcheck_dense_and_masked():
    _gradcheck((1, 2, 5, 3))
    keep = np.ones((5, 5), dtype=bool)
    keep[1] = False
    keep[3, :2] = False
    _gradcheck((1, 2, 5, 3), mask=keep)


def test_gradcheck_causal_dense_and_gradgrad():
    fn, args = _gradcheck((1, 2, 6, 3), kv_len=4, is_causal=True)
    assert gradgradcheck(fn, args)


def test_gradcheck_blocked_causal(monkeypatch):
    monkeypatch.setattr(attention_causal, "BLOCK", 4)  # L = 10: blocks of 4, 4, 2
    _gradcheck((1, 2, 10, 3), is_causal=True)
