"""Session 24 (issue 23, h3): the LSTM recurrence as one compiled loop on NumPy's OpenBLAS
(``ops/_numba_rnn_blas.py``), split by batch rows across threads, and the vectorised
backward cell.

float64 joins the compiled dtypes so that the gradchecks run the kernels (``dgemm`` and the
cells' formulas at full precision); float32 is compared with PyTorch and with the Python step
loop, at one thread (one row range) and two (two ranges, with ``ROWS_PER_PART`` lowered so
that small batches split), with both step orientations (``WIDE_WEIGHT``), packed and reversed.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.autograd.gradcheck import gradcheck
from ember.backend import threads
from ember.nn.modules import rnn as rnn_module
from ember.ops import rnn_support
from ember.ops.rnn import LSTMLayer

torch = pytest.importorskip("torch")

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def enable_row_loops(monkeypatch):
    """The compiled row loops for float32 and float64 (not MKL's loop, which would take the
    steps on Intel): their module, or None where they are unavailable."""
    monkeypatch.setattr(rnn_support, "_COMPILED_DTYPES", (_F32, _F64))
    monkeypatch.setattr(rnn_support, "_numba", None)
    monkeypatch.setattr(rnn_support, "_rows", None)
    monkeypatch.setattr(rnn_support, "_seq", False)
    return rnn_support.row_kernels(np, _F64)[0]


def paired_lstm(shape, **kwargs):
    """(torch LSTM, ember LSTM with the same weights, a float32 input of ``shape``)."""
    torch.manual_seed(0)
    tm = torch.nn.LSTM(**kwargs)
    em = ember.nn.LSTM(**kwargs)
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, em, np.random.default_rng(1).standard_normal(shape).astype(np.float32)


@pytest.fixture
def rows(monkeypatch):
    """Enables the compiled row loops for float32 and float64; returns the list of row
    ranges that ``run_rows`` was given (one entry per forward or backward loop)."""
    if enable_row_loops(monkeypatch) is None:
        pytest.skip("numba or NumPy's OpenBLAS symbols unavailable: no compiled row loops")
    calls = []
    real = rnn_support.run_rows
    monkeypatch.setattr(rnn_support, "run_rows", lambda fn, b: calls.append(list(b)) or real(fn, b))
    return calls


def _setup(monkeypatch, n_threads, wide):
    monkeypatch.setattr(threads, "_cached", n_threads)
    monkeypatch.setattr(rnn_support, "ROWS_PER_PART", 1)
    monkeypatch.setattr(rnn_support, "WIDE_WEIGHT", 1 << 30 if wide else 0)
    # the row split of each direction, not the directions on two threads (test_rnn_s24b.py)
    monkeypatch.setattr(rnn_module, "bidir_applies", lambda *a: False)


def _rand(rng, *shape):
    t = ember.tensor(rng.standard_normal(shape))
    t.requires_grad = True
    return t


def gradcheck_layer(reverse: bool, packed: bool) -> bool:
    """float64 gradcheck of ``LSTMLayer`` on 4 steps, 3 rows, hidden size 3 (``packed``: the
    second row range [1, 3) loses rows mid-sequence)."""
    rng = np.random.default_rng(0)
    T, B, I, H = 4, 3, 2, 3
    x, h0, c0 = _rand(rng, T, B, I), _rand(rng, B, H), _rand(rng, B, H)
    w_ih, w_hh = _rand(rng, 4 * H, I), _rand(rng, 4 * H, H)
    b_ih, b_hh = _rand(rng, 4 * H), _rand(rng, 4 * H)
    bs = [3, 2, 2, 1] if packed else None
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return gradcheck(lambda *a: LSTMLayer.apply(*a, None, bs, reverse), args)


@pytest.mark.parametrize("n_threads, wide", [(1, True), (2, False)])
@pytest.mark.parametrize("reverse, packed", [(False, False), (True, True)])
def test_gradcheck_lstm_rows(rows, monkeypatch, n_threads, wide, reverse, packed):
    _setup(monkeypatch, n_threads, wide)
    assert gradcheck_layer(reverse, packed)
    assert rows and all(len(b) == n_threads + 1 for b in rows)


def _lstm_run(lib, mod, x, lengths, loss_of):
    xt = lib.tensor(x, requires_grad=True)
    inp = xt
    if lengths is not None:
        inp = lib.nn.utils.rnn.pack_padded_sequence(xt, lengths, batch_first=True)
    out, (h, c) = mod(inp)
    if lengths is not None:
        out = lib.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]
    loss_of(out, h, c).backward()
    grads = [xt.grad] + [p.grad for p in mod.parameters()]
    return [a.detach().numpy().copy() for a in (out, h, c, *grads)]


CASES = {
    "plain": (dict(input_size=12, hidden_size=16, batch_first=True), (6, 7, 12), None),
    "bi_2layer": (
        dict(input_size=8, hidden_size=20, num_layers=2, bidirectional=True, batch_first=True),
        (5, 6, 8),
        None,
    ),
    "packed_bi": (
        dict(input_size=6, hidden_size=16, bidirectional=True, batch_first=True),
        (5, 6, 6),
        [6, 5, 3, 3, 1],
    ),
}
LOSSES = {
    "all": lambda out, h, c: out.square().sum() + h.sum() + 2 * c.sum(),
    "final_h": lambda out, h, c: h.square().sum(),  # no gradient reaches the outputs
}


@pytest.mark.parametrize("n_threads, wide", [(1, True), (1, False), (2, True), (2, False)])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_rows_match_torch_and_the_python_loop(rows, monkeypatch, case, loss, n_threads, wide):
    _setup(monkeypatch, n_threads, wide)
    kwargs, shape, lengths = CASES[case]
    tm, em, x = paired_lstm(shape, **kwargs)
    got = _lstm_run(ember, em, x, lengths, LOSSES[loss])
    assert rows and all(len(b) == n_threads + 1 for b in rows)
    ref = _lstm_run(torch, tm, x, lengths, LOSSES[loss])
    for e, t in zip(got, ref):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    em.zero_grad()
    monkeypatch.setattr(rnn_support, "_rows", False)  # the Python step loop
    rows.clear()
    loop = _lstm_run(ember, em, x, lengths, LOSSES[loss])
    assert not rows
    for a, b in zip(got, loop):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_row_bounds_rule(monkeypatch):
    monkeypatch.setattr(threads, "_cached", 1)
    assert rnn_support.row_bounds(5, 1 << 30) == [0, 5]  # one thread: one range, any weight
    monkeypatch.setattr(threads, "_cached", 2)
    assert rnn_support.row_bounds(32, 1 << 18) == [0, 16, 32]
    assert rnn_support.row_bounds(2 * rnn_support.ROWS_PER_PART - 1, 1 << 18) is None
    assert rnn_support.row_bounds(32, rnn_support.ROWS_SPLIT_WEIGHT + 4) is None
    # no split, but products large enough for BLAS's own threads: one range, no Python loop
    assert rnn_support.row_bounds(8, 16 << 20, 1 << 26) == [0, 8]


def test_backward_cell_matches_its_formula():
    kern, kc = rnn_support.cell_kernels(np, np.float32)
    if kern is None:
        pytest.skip("needs numba (the compiled cells)")
    rng = np.random.default_rng(2)
    n, H = 3, 21  # a hidden size with a vector-length remainder
    a = rng.random((n, 4 * H)).astype(np.float32)
    a[:, 2 * H : 3 * H] = 2 * a[:, 2 * H : 3 * H] - 1  # g = tanh(.) lies in (-1, 1)
    tc, c0, dh, dc = (rng.standard_normal((n, H)).astype(np.float32) for _ in range(4))
    dg = np.empty((n, 4 * H), np.float32)
    i, f, g, o = (a[:, k * H : (k + 1) * H].astype(np.float64) for k in range(4))
    d, t = dh.astype(np.float64), tc.astype(np.float64)
    dcv = dc + d * o * (1 - t * t)
    want = np.concatenate(
        [dcv * g * (i - i * i), dcv * c0 * (f - f * f), dcv * i * (1 - g * g), d * t * (o - o * o)],
        axis=1,
    )
    kern.lstm_backward(dh, tc, c0, a, dc, dg, kc)
    np.testing.assert_allclose(dg, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dc, dcv * f, rtol=1e-5, atol=1e-6)
