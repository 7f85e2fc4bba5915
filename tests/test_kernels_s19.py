"""Session 19 (issue 23, h7): cross-entropy's lean path, where the compiled kernels check the
targets themselves (``loss_ce_compiled``), against PyTorch and NumPy at the switching shapes:
short rows (``ce_forward_short``), long rows (``ce_forward``) and the row split over threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.ops import _numba_embed_ce, loss_ce_compiled

F = ember.nn.functional

pytestmark = pytest.mark.skipif(not _numba_embed_ce.AVAILABLE, reason="needs numba")

# (rows, classes): short rows, long rows, and enough elements to split over two threads
SHAPES = [(64, 100), (16, _numba_embed_ce.SHORT_ROWS), (1100, 130), (2000, 70)]


def _pair(m, c, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, c)).astype(dtype)
    t = rng.integers(0, c, m)
    return x, t


def _both(x, t, **kw):
    """Loss and input gradient from ember and from torch."""
    ex = ember.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    el = F.cross_entropy(ex, ember.tensor(t), **kw)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), **kw)
    g = np.random.default_rng(1).standard_normal(tuple(tl.shape)).astype(x.dtype)
    el.backward(ember.tensor(g))
    tl.backward(torch.tensor(g))
    return (el.detach().numpy(), ex.grad.numpy()), (tl.detach().numpy(), tx.grad.numpy())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m,c", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(m, c, reduction, threads):
    x, t = _pair(m, c)
    t[::7] = -100  # some rows ignored
    old = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        (el, eg), (tl, tg) = _both(x, t, reduction=reduction)
    finally:
        ember.set_num_threads(old)
    np.testing.assert_allclose(el, tl, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(eg, tg, rtol=2e-5, atol=2e-7)


@pytest.mark.parametrize("m,c", SHAPES[:2])
def test_cross_entropy_weights_and_ignore_inside_range(m, c):
    x, t = _pair(m, c, seed=3)
    w = np.random.default_rng(4).uniform(0.5, 2.0, c).astype(np.float32)
    ignore = int(t[0])  # an ignore_index that is a valid class
    ex = ember.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    el = F.cross_entropy(ex, ember.tensor(t), weight=ember.tensor(w), ignore_index=ignore)
    tl = torch.nn.functional.cross_entropy(
        tx, torch.tensor(t), weight=torch.tensor(w), ignore_index=ignore
    )
    el.backward()
    tl.backward()
    np.testing.assert_allclose(el.item(), tl.item(), rtol=2e-5)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=2e-5, atol=2e-7)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m,c", SHAPES)
@pytest.mark.parametrize("bad", [-1, "c", "c+5"])
def test_out_of_range_target_raises_like_torch(m, c, bad, threads):
    x, t = _pair(m, c)
    value = {"c": c, "c+5": c + 5}.get(bad, bad)
    t[m // 2] = value
    t[m - 1] = value
    with pytest.raises(IndexError, match=f"Target {value} is out of bounds"):
        torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t))
    old = ember.get_num_threads()
    ember.set_num_threads(threads)
    try:
        with pytest.raises(IndexError, match=f"Target {value} is out of bounds"):
            F.cross_entropy(ember.tensor(x, requires_grad=True), ember.tensor(t))
    finally:
        ember.set_num_threads(old)
    # the NumPy path (label smoothing) raises the same before any arithmetic
    with pytest.raises(IndexError, match=f"Target {value} is out of bounds"):
        F.cross_entropy(ember.tensor(x), ember.tensor(t), label_smoothing=0.1)


def test_the_compiled_path_serves_these_calls():
    x, t = _pair(64, 100)
    assert loss_ce_compiled.ce_compiled(np, x, t, None, 0.0) is not None
    assert loss_ce_compiled.ce_compiled(np, x, t, None, 0.1) is None


@pytest.mark.parametrize("m,c", [(6, 9), (5, 140)])
def test_gradcheck_float64(m, c):
    x, t = _pair(m, c, dtype=np.float64, seed=5)
    t[1] = -100
    xt = ember.tensor(x, requires_grad=True)
    tt = ember.tensor(t)
    for reduction in ("mean", "none"):
        assert ember.autograd.gradcheck(
            lambda a, r=reduction: F.cross_entropy(a, tt, reduction=r), (xt,)
        )
    assert ember.autograd.gradgradcheck(lambda a: F.cross_entropy(a, tt), (xt,))


def test_k_dimensional_input_and_target_shape_errors():
    x = np.random.default_rng(6).standard_normal((2, 5, 3, 4)).astype(np.float32)
    t = np.random.default_rng(7).integers(0, 5, (2, 3, 4))
    (el, eg), (tl, tg) = _both(x, t)
    np.testing.assert_allclose(el, tl, rtol=2e-5)
    np.testing.assert_allclose(eg, tg, rtol=2e-5, atol=2e-7)
    with pytest.raises(ValueError, match="Expected input batch_size"):
        F.cross_entropy(ember.randn(4, 3), ember.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="multi-target not supported"):
        F.cross_entropy(ember.randn(4, 3), ember.zeros(4, 2, dtype=ember.int64))


# ---- small dense attention at two threads: batch chunks, one BLAS thread each -----------------
def _sdpa_both(shape, causal=False, masked=False, dtype=np.float32):
    rng = np.random.default_rng(8)
    arrays = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    b, _, L, _ = shape
    keep = np.ones((b, 1, L, L), dtype=bool)
    keep[..., L - L // 4 :] = False
    results = []
    for lib in (ember, torch):
        q, k, v = (lib.tensor(a, requires_grad=True) for a in arrays[:3])
        mask = lib.tensor(keep) if masked else None
        out = lib.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal
        )
        out.backward(lib.tensor(arrays[3]))
        results.append([t.detach().numpy() for t in (out, q.grad, k.grad, v.grad)])
    return results


@pytest.mark.parametrize("kind", ["plain", "masked", "causal"])
def test_small_attention_chunks_at_two_threads(kind):
    from ember.ops import attention_chunks

    shape = (8, 4, 128, 32)
    q = np.empty(shape, np.float32)
    old = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        ranges = attention_chunks._chunks(np, q, q, q)
        assert ranges is not None and len(ranges) >= 2  # at least one chunk per thread
        ours, theirs = _sdpa_both(shape, causal=kind == "causal", masked=kind == "masked")
        ember.set_num_threads(1)
        assert attention_chunks._chunks(np, q, q, q) is None  # one thread: the whole batch
    finally:
        ember.set_num_threads(old)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_large_products_keep_blas_threads():
    from ember.ops import attention_chunks

    q = np.empty((4, 1, 512, 128), np.float32)
    old = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        assert attention_chunks._chunks(np, q, q, q) is None
    finally:
        ember.set_num_threads(old)


def test_small_attention_chunks_gradcheck(monkeypatch):
    from ember.ops import attention_chunks

    monkeypatch.setattr(attention_chunks, "_MIN_BYTES_MT", 1)
    rng = np.random.default_rng(9)
    q, k, v = (
        ember.tensor(rng.standard_normal((3, 2, 5, 4)), requires_grad=True) for _ in range(3)
    )
    old = ember.get_num_threads()
    ember.set_num_threads(2)
    try:
        assert len(attention_chunks._chunks(np, q._data, k._data, v._data)) == 2
        sdpa = ember.nn.functional.scaled_dot_product_attention
        assert ember.autograd.gradcheck(lambda a, b, c: sdpa(a, b, c), (q, k, v))
        assert ember.autograd.gradcheck(lambda a, b, c: sdpa(a, b, c, is_causal=True), (q, k, v))
    finally:
        ember.set_num_threads(old)
