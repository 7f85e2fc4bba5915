"""Session 25 (issue 23, h2): the LSTM row loops (``ops/_numba_rnn_blas.py``) on OpenBLAS's
small-matrix kernels, which multiply the recurrent weight where it lies instead of packing it
again on every step.

The kernels take a step's products where each row range runs on one thread and the weight's
size is within ``rnn_support.SMALL_WEIGHT``. float64 joins the compiled dtypes so that the
gradcheck runs the double-precision kernels (with the size window opened to its tiny
weights); float32 is compared with PyTorch and with the ``sgemm`` loops at the smallest hidden
size inside the window, at one thread and two (two row ranges), packed, reversed and
bidirectional.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend import threads
from ember.nn.modules import rnn as rnn_module
from ember.ops import rnn_support

torch = pytest.importorskip("torch")

from test_rnn_s24 import _lstm_run, enable_row_loops, gradcheck_layer, paired_lstm  # noqa: E402


def _loss(out, h, c):
    return out.square().sum() + h.sum() + 2 * c.sum()


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


@pytest.fixture
def small(monkeypatch):
    """Enables the compiled row loops for float32 and float64; returns the list of ``small``
    flags the forward and backward loops were called with."""
    rk = enable_row_loops(monkeypatch)
    if rk is None or not rk.SMALL:
        pytest.skip("no compiled row loops or no OpenBLAS small-matrix kernels here")
    flags = []
    fwd, bwd = rk.lstm_forward_rows, rk.lstm_backward_rows

    def spy_fwd(*a):
        flags.append(a[6])
        return fwd(*a)

    def spy_bwd(*a):
        flags.append(a[11])
        return bwd(*a)

    monkeypatch.setattr(rk, "lstm_forward_rows", spy_fwd)
    monkeypatch.setattr(rk, "lstm_backward_rows", spy_bwd)
    return flags


def _setup(monkeypatch, n_threads):
    monkeypatch.setattr(threads, "_cached", n_threads)
    monkeypatch.setattr(rnn_support, "ROWS_PER_PART", 1)
    # the row split of each direction, not the directions on two threads (test_rnn_s24b.py)
    monkeypatch.setattr(rnn_module, "bidir_applies", lambda *a: False)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("reverse, packed", [(False, False), (True, True)])
def test_gradcheck_lstm_small_kernels(small, monkeypatch, n_threads, reverse, packed):
    _setup(monkeypatch, n_threads)
    monkeypatch.setattr(rnn_support, "SMALL_WEIGHT", (0, 1 << 40))
    assert gradcheck_layer(reverse, packed)
    assert small and all(small)


# H96: the smallest hidden size whose weight (4H x H float32, 144 KiB) takes the kernels
CASES = {
    "plain": (dict(input_size=12, hidden_size=96, batch_first=True), (6, 7, 12), None),
    "packed_bi": (
        dict(input_size=6, hidden_size=96, bidirectional=True, batch_first=True),
        (5, 6, 6),
        [6, 5, 3, 3, 1],
    ),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_small_kernels_match_torch_and_sgemm(small, monkeypatch, case, n_threads):
    _setup(monkeypatch, n_threads)
    kwargs, shape, lengths = CASES[case]
    tm, em, x = paired_lstm(shape, **kwargs)
    got = _lstm_run(ember, em, x, lengths, _loss)
    assert small and all(small)
    ref = _lstm_run(torch, tm, x, lengths, _loss)
    for e, t in zip(got, ref):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    em.zero_grad()
    monkeypatch.setattr(rnn_support, "SMALL_GEMM", False)  # the sgemm row loops
    small.clear()
    base = _lstm_run(ember, em, x, lengths, _loss)
    assert small and not any(small)
    for a, b in zip(got, base):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_small_kernel_rule(monkeypatch):
    rk = rnn_support.row_kernels(np, _F32)[0]
    if rk is None or not rk.SMALL:
        pytest.skip("no compiled row loops or no OpenBLAS small-matrix kernels here")

    def w(h):
        return np.empty((4 * h, h), dtype=np.float32)

    monkeypatch.setattr(threads, "_cached", 1)
    one = (rk, [0, 32])
    assert rnn_support._small(one, w(256))
    assert not rnn_support._small(one, w(64))  # 64 KiB: sgemm is as fast or faster
    assert not rnn_support._small(one, w(1024))  # 16 MiB: sgemm's packed stream wins
    monkeypatch.setattr(threads, "_cached", 2)
    assert rnn_support._small((rk, [0, 16, 32]), w(256))  # one thread per row range
    assert not rnn_support._small(one, w(256))  # one range on BLAS's threads
    monkeypatch.setattr(rnn_support, "SMALL_GEMM", False)
    assert not rnn_support._small((rk, [0, 16, 32]), w(256))
