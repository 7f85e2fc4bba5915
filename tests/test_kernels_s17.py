"""Session 17 kernels of issue 23: causal attention block by block per (batch, head) matrix
(matrices over the threads), the short-row cross-entropy forward (one flat exp pass), the
softmax rows' four-chain row max, the LSTM / GRU recurrent weight's tiled scaled transpose,
and the compiled LSTM loop at two threads for few-row batches. Each against torch, against
the code it replaces (same process, switched by a module setting), and split against one
thread (bitwise)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.backend import mkl_gemm, threads
from ember.ops import _numba_embed_ce, attention_causal, attention_kernels, rnn_support

torch = pytest.importorskip("torch")
F, TF = ember.nn.functional, torch.nn.functional


@pytest.fixture
def kernels_on():
    """Skips without the compiled kernels (no numba, or EMBER_NUMBA=0); the other tests run
    the NumPy fallbacks then."""
    if os.environ.get("EMBER_NUMBA", "1") == "0" or not _numba_embed_ce.AVAILABLE:
        pytest.skip("numba kernels disabled or not installed")


def _sdpa(lib, arrays, **kw):
    """Output and q, k, v gradients of one causal SDPA call (output gradient ``arrays[3]``)."""
    q, k, v = (lib.tensor(a, requires_grad=True) for a in arrays[:3])
    out = lib.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
    out.backward(lib.tensor(arrays[3]))
    return [t.detach().numpy() for t in (out, q.grad, k.grad, v.grad)]


# ---- causal attention per matrix ---------------------------------------------------------
@pytest.mark.parametrize(
    "q_shape,kv_shape",
    [
        ((2, 3, 21, 5), (2, 3, 21, 5)),  # 6 blocks of 4, a ragged last one
        ((2, 3, 16, 4), (1, 3, 16, 4)),  # k, v broadcast over the batch
        ((3, 16, 8), (3, 16, 8)),  # no batch axis
    ],
)
def test_causal_blocks_per_matrix_match_torch(q_shape, kv_shape, monkeypatch):
    monkeypatch.setattr(attention_causal, "BLOCK", 4)
    r = np.random.default_rng(1)
    arrays = [r.standard_normal(s).astype(np.float32) for s in (q_shape, kv_shape, kv_shape)]
    arrays.append(r.standard_normal(q_shape[:-1] + (kv_shape[-1],)).astype(np.float32))
    for got, want in zip(_sdpa(ember, arrays), _sdpa(torch, arrays)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_causal_matrices_over_threads_equal_one_thread(monkeypatch):
    monkeypatch.setattr(attention_causal, "BLOCK", 8)
    monkeypatch.setattr(attention_causal, "GROUP_BYTES", 0)  # one matrix a group
    r = np.random.default_rng(2)
    arrays = [r.standard_normal((2, 3, 40, 8)).astype(np.float32) for _ in range(4)]
    one = _sdpa(ember, arrays)
    calls = []
    pool = threads.thread_pool()
    monkeypatch.setattr(threads, "_cached", 2)
    monkeypatch.setattr(pool, "submit", lambda *a: calls.append(a) or type(pool).submit(pool, *a))
    small = _sdpa(ember, arrays)  # 4800 scores: under SPLIT_MIN_SCORES, one thread's loop
    assert not calls
    monkeypatch.setattr(attention_causal, "SPLIT_MIN_SCORES", 0)
    two = _sdpa(ember, arrays)
    assert calls, "the matrices were not shared out over the workers"
    for a, b, c in zip(one, small, two):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_causal_blocks_numpy_softmax_matches_kernels(monkeypatch, kernels_on):
    monkeypatch.setattr(attention_causal, "BLOCK", 4)
    r = np.random.default_rng(3)
    arrays = [r.standard_normal((1, 2, 13, 3)).astype(np.float64) for _ in range(4)]
    kern = _sdpa(ember, arrays)
    monkeypatch.setattr(attention_kernels, "_mod", False)  # the NumPy softmax and its grad
    plain = _sdpa(ember, arrays)
    for a, b in zip(kern, plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ---- softmax rows: the four-chain row max -----------------------------------------------
@pytest.mark.parametrize("d", [1, 3, 7, 130])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_row_kernels_four_chain_max_match_torch(name, d, kernels_on):
    r = np.random.default_rng(d)
    x = (r.standard_normal((9, d)) * 5).astype(np.float32)
    x[1, -1] = 40.0  # the maximum in the scalar tail
    x[2, 0] = np.nan  # NaN first, and NaN later: NaN rows
    x[3, -1] = np.nan
    if d > 1:
        x[4, : d - 1] = -np.inf
    g = r.standard_normal((9, d)).astype(np.float32)
    got = []
    for lib in (ember, torch):
        xt = lib.tensor(x, requires_grad=True)
        y = getattr(lib.nn.functional, name)(xt, dim=-1)
        y.backward(lib.tensor(g))
        got.append((y.detach().numpy(), xt.grad.numpy()))
    for a, b in zip(*got):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- cross-entropy over short rows -------------------------------------------------------
@pytest.mark.parametrize("c", [1, 7, 50, 127])
def test_cross_entropy_short_rows_match_row_kernel_and_torch(c, monkeypatch, kernels_on):
    r = np.random.default_rng(c)
    x = (r.standard_normal((33, c)) * 4).astype(np.float32)
    t = r.integers(0, c, 33)
    t[5] = -100
    if c > 1:
        x[3, 0] = -np.inf  # probability 0 for that class
    x[7] = np.nan  # a NaN row: NaN loss, NaN gradient, as torch's
    w = (r.random(c) + 0.5).astype(np.float32)

    def run(lib):
        xt = lib.tensor(x, requires_grad=True)
        y = lib.nn.functional.cross_entropy(xt, lib.tensor(t), lib.tensor(w), reduction="none")
        y.backward(lib.tensor(np.linspace(0.5, 1.5, 33).astype(np.float32)))
        return y.detach().numpy(), xt.grad.numpy()

    short = run(ember)
    monkeypatch.setattr(_numba_embed_ce, "SHORT_ROWS", 0)  # every row through ce_forward
    rows = run(ember)
    want = run(torch)
    for a, b, tt in zip(short, rows, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a, tt, rtol=1e-5, atol=1e-6)


# ---- recurrent layers --------------------------------------------------------------------
def test_scaled_transpose_is_numpy_bitwise(kernels_on):
    kern, _ = rnn_support.cell_kernels(np, np.float32)
    if kern is None:
        pytest.skip("compiled cells unavailable")
    r = np.random.default_rng(4)
    for shape in ((1024, 256), (130, 70), (64, 1)):
        w = r.standard_normal(shape).astype(np.float32)
        s = r.random(shape[0]).astype(np.float32)
        out = np.empty(shape[::-1], dtype=np.float32)
        kern.scaled_transpose(w, s, out)
        np.testing.assert_array_equal(out, (w * s[:, None]).T)
        np.testing.assert_array_equal(rnn_support.scaled_transpose(np, w, s), out)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_large_recurrent_weight_matches_torch(kind):
    # a (4H or 3H) x 256 weight reaches the tiled transpose (rnn_support._TILED_MIN)
    r = np.random.default_rng(5)
    x = r.standard_normal((3, 2, 16)).astype(np.float32)
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(16, 256)
    em = getattr(ember.nn, kind)(16, 256)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    outs = []
    for lib, m in ((ember, em), (torch, tm)):
        xt = lib.tensor(x, requires_grad=True)
        y = m(xt)[0]
        y.backward(lib.tensor(np.ones(tuple(y.shape), dtype=np.float32)))
        outs.append((y.detach().numpy(), xt.grad.numpy(), m.weight_hh_l0.grad.numpy()))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_lstm_few_rows_two_threads_take_compiled_loop(monkeypatch, kernels_on):
    prev = mkl_gemm.set_enabled(True)
    try:
        if not mkl_gemm.enabled():
            pytest.skip("MKL unavailable")
        # B = 8 rows, H = 1024: 8 * 1024 * 4096 multiply-adds a step, MULTI_FLOPS
        assert 8 * 1024 * 4096 >= mkl_gemm.MULTI_FLOPS
        monkeypatch.setattr(threads, "_cached", 2)
        assert rnn_support.sequence_kernels(np, np.float32, 8 * 1024 * 4096, 8)[0]
        assert rnn_support.sequence_kernels(np, np.float32, 8 * 1024 * 4096)[0] is None
        assert rnn_support.sequence_kernels(np, np.float32, 32 * 1024 * 4 * 1024, 32)[0] is None
        monkeypatch.setattr(threads, "_cached", 1)
        assert rnn_support.sequence_kernels(np, np.float32, 32 * 1024 * 4 * 1024, 32)[0]
    finally:
        mkl_gemm.set_enabled(prev)
