"""Session 28 (issue 23): on the small-matrix kernels the LSTM layer's forward runs its input
projection inside the compiled steps, one product a step of ``[x_t, h_t]`` by both weights
stacked (``rnn_support.rows_forward_joint``) instead of one all-steps projection first.

The new path is checked where it switches on and off (the stacked weight's size against
``SMALL_WEIGHT``), against PyTorch and against the path it replaces, at one and two threads
(two row ranges), plain, packed, without bias and with initial states; a float64 gradcheck
covers the layer on it.
"""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.backend import threads
from ember.nn.modules import rnn as rnn_module
from ember.ops import rnn, rnn_support

torch = pytest.importorskip("torch")

from test_rnn_s24 import _lstm_run, enable_row_loops, paired_lstm  # noqa: E402
from test_rnn_s25b import gradcheck_small_layer  # noqa: E402


@pytest.fixture
def joint(monkeypatch):
    """Compiled row loops for float32 and float64 on the small-matrix kernels; returns the list
    of forwards that ran the projection inside the steps."""
    if (
        enable_row_loops(monkeypatch) is None
        or not rnn_support.row_kernels(np, np.float32)[0].SMALL
    ):
        pytest.skip("no compiled row loops on OpenBLAS's small-matrix kernels here")
    monkeypatch.setattr(rnn_support, "ROWS_PER_PART", 1)
    monkeypatch.setattr(rnn_support, "JOINT_STEPS", True)
    monkeypatch.setattr(rnn_module, "bidir_applies", lambda *a: False)
    seen = []
    real = rnn.rows_forward_joint

    def spy(*a):
        seen.append(a[1].shape)  # xh: (T + 1, B, I + H)
        return real(*a)

    monkeypatch.setattr(rnn, "rows_forward_joint", spy)
    return seen


def _loss(out, h, c):
    return out.square().sum() + h.sum() + 2 * c.sum()


# (input, hidden): the stacked weight (4H x (I + H) float32) against SMALL_WEIGHT's lower
# bound, 128 KiB: 12 + 96 -> 162 KiB takes the joint steps; 4 + 64 -> 68 KiB (and the
# recurrent weight alone, 64 KiB) keeps the Elman-sized path
SIZES = {"joint": (12, 96), "below": (4, 64)}
LAYERS = {
    "plain": (dict(batch_first=True), (6, 7), None),
    "packed": (dict(batch_first=True), (5, 6), [6, 5, 3, 3, 1]),
    "nobias_2layer": (dict(bias=False, num_layers=2), (4, 5), None),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_against_torch_and_the_projection_path(joint, monkeypatch, layer, size, n_threads):
    monkeypatch.setattr(threads, "_cached", n_threads)
    (inp, hidden), (kwargs, lead, lengths) = SIZES[size], LAYERS[layer]
    tm, em, x = paired_lstm((*lead, inp), input_size=inp, hidden_size=hidden, **kwargs)
    got = _lstm_run(ember, em, x, lengths, _loss)
    layers = kwargs.get("num_layers", 1)
    assert len(joint) == (layers if size == "joint" else 0)
    ref = _lstm_run(torch, tm, x, lengths, _loss)
    for e, t in zip(got, ref):
        np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    # the all-steps projection first: the same sums but for their order
    em.zero_grad()
    monkeypatch.setattr(rnn_support, "JOINT_STEPS", False)
    joint.clear()
    base = _lstm_run(ember, em, x, lengths, _loss)
    assert not joint
    for a, b in zip(got, base):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("packed, bias", [(False, True), (True, True), (False, False)])
def test_gradcheck(joint, monkeypatch, n_threads, packed, bias):
    assert gradcheck_small_layer(monkeypatch, n_threads, packed, bias)
    assert joint and joint[0] == (5, 3, 2 + 3)  # (T + 1, B, I + H)


def test_reverse_and_projection_keep_the_old_path(joint, monkeypatch):
    """Run in reverse (no shared buffer) or with ``proj_size`` the steps do not project."""
    monkeypatch.setattr(threads, "_cached", 1)
    for kwargs in (dict(bidirectional=True), dict(proj_size=24)):
        tm, em, x = paired_lstm((5, 4, 12), input_size=12, hidden_size=96, **kwargs)
        monkeypatch.setattr(rnn_module, "bidir_applies", lambda *a: False)
        got = _lstm_run(ember, em, x, None, _loss)
        ref = _lstm_run(torch, tm, x, None, _loss)
        for e, t in zip(got, ref):
            np.testing.assert_allclose(e, t, rtol=2e-4, atol=2e-5)
    # the bidirectional layer's forward direction takes the joint steps, its reverse does not;
    # the projected layer neither
    assert joint == [(6, 4, 12 + 96)]
